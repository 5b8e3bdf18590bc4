"""The stream runs (--stream) and the telemetry traces during the runs."""

from __future__ import annotations

from deploy.results.sections.sweep import cells, finite_number, size_label, threads_label
from deploy.results.svg import sparkline

STREAM_GOAL = 0.9  # stream FPS / (1000 / single-frame e2e ms): capture must overlap inference


def stream_rows(result) -> list:
    """Per cell measured with --stream: single-frame e2e and FPS, stream FPS, their ratio."""
    out = []
    for variant, size, threads, record in cells(result):
        stream = record.get("stream")
        if not isinstance(stream, dict):
            continue
        numbers = {
            key: finite_number(stream.get(key))
            for key in ("e2e_ms", "single_frame_fps", "stream_fps", "ratio", "busy_share")
        }
        if any(value is None or value < 0 for value in numbers.values()):
            continue  # a record a host got wrong is left out, not printed
        dropped = stream.get("stream_dropped")
        frames = stream.get("stream_frames")
        counts_ok = all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**9
            for v in (dropped, frames)
        )
        out.append(
            {
                "variant": variant,
                "setting": f"{size_label(size)}, {threads_label(threads)}",
                "e2e_ms": f"{numbers['e2e_ms']:.1f}",
                "single_fps": f"{numbers['single_frame_fps']:.2f}",
                "stream_fps": f"{numbers['stream_fps']:.2f}",
                "ratio": f"{numbers['ratio']:.2f}×",
                "meets_goal": numbers["ratio"] >= STREAM_GOAL,
                "busy": f"{numbers['busy_share']:.2f}",
                "frames": f"{frames} ({dropped} dropped)" if counts_ok else "?",
            }
        )
    return out


def trace_rows(result) -> list:
    """Per cell with samples: count, temperature range, throttle bits seen, and a sparkline."""
    out = []
    for key in result.variants:
        record = result.variant(key)
        tele = record.get("telemetry") if isinstance(record, dict) else None
        trace = tele.get("trace") if isinstance(tele, dict) else None
        if not isinstance(trace, list) or not trace:
            continue
        temps = [t for t in (finite_number(s.get("temperature_c")) for s in trace if isinstance(s, dict))]
        temps = [t for t in temps if t is not None and -50 < t < 150]
        bits = sorted(
            {
                s["throttled"]
                for s in trace
                if isinstance(s, dict)
                and isinstance(s.get("throttled"), int)
                and not isinstance(s.get("throttled"), bool)
                and 0 <= s["throttled"] < 2**32
            }
        )
        if not temps and not bits:
            continue  # nothing readable on this host (no thermal zone, no firmware file)
        out.append(
            {
                "cell": key,
                "samples": len(trace),
                "temperature": (
                    f"{min(temps):.1f}–{max(temps):.1f} °C" if temps else "temperature unknown"
                ),
                "throttled": ", ".join(f"0x{b:x}" for b in bits) or "unknown",
                "spark": sparkline(temps),
            }
        )
    return out
