"""Sweep, profile and telemetry-trace sections of the benchmark report, and the study layout.

A sweep is one run over variant x size x threads cells (`invoke remote-bench --threads 1,2
--size 320x240,640x480`): a table per size with a row per thread count, a chart of end-to-end
latency against threads per variant, the fastest cell per variant and, with --target-fps, the
cheapest cell that reaches it. Everything read here comes from a host's bench.json, so each
field is checked (type, finite number, plain name) and anything else counts as absent.
"""

from __future__ import annotations

import math
import re
from typing import Optional

from retinaface.errors import ModelError

OP_NAME = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
STUDY_ROWS = (("torch", "PyTorch"), ("fp32", "ONNX"), ("fp32-opt", "ONNX optimized"))
STUDY_INT8 = ("int8", "ONNX INT8")
STREAM_GOAL = 0.9  # stream FPS / (1000 / single-frame e2e ms): capture must overlap inference
SERIES_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


# --- flags --------------------------------------------------------------------------------


def parse_sweep(size_text: str, threads_text: Optional[str], target_fps: Optional[str]) -> tuple:
    """(sizes, thread counts, target FPS) from `320x240,640x480`, `1,2,4` and `10`."""
    from retinaface.detector import parse_size

    sizes = []
    for part in [p.strip() for p in str(size_text).split(",") if p.strip()]:
        try:
            size = parse_size(part)
        except ValueError as error:
            raise ModelError(f"--size {part!r}: {error}") from None
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise ModelError("--size is empty")
    threads: list = []
    if threads_text:
        for part in [p.strip() for p in str(threads_text).split(",") if p.strip()]:
            if not part.isdigit() or int(part) < 1:
                raise ModelError(f"--threads {part!r}: not a whole number of 1 or more")
            if int(part) not in threads:
                threads.append(int(part))
    fps = None
    if target_fps is not None:
        try:
            fps = float(target_fps)
        except ValueError:
            raise ModelError(f"--target-fps {target_fps!r}: not a number") from None
        if not math.isfinite(fps) or fps <= 0:
            raise ModelError(f"--target-fps {target_fps!r}: must be above 0")
    return sizes, threads or [None], fps


# --- reading cells safely -------------------------------------------------------------------


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _cell_of(record: dict) -> Optional[tuple]:
    """(variant, (w, h), threads|None) of a record, or None when it carries no valid cell."""
    cell = record.get("cell")
    if not isinstance(cell, dict):
        return None
    variant, size, threads = cell.get("variant"), cell.get("size"), cell.get("threads")
    if not isinstance(variant, str) or not OP_NAME.match(variant.replace("-", "_")):
        return None
    if not (isinstance(size, list) and len(size) == 2):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100000 for v in size):
        return None
    if threads is not None and (not isinstance(threads, int) or not 0 < threads < 1024):
        return None
    return variant, (size[0], size[1]), threads


def _measured(record: dict) -> Optional[dict]:
    """{"p50", "fps", "valid"} of an ok record with finite numbers, else None."""
    if record.get("status") != "ok":
        return None
    try:
        p50 = _number(record["stages"]["e2e"]["p50"])
    except (KeyError, TypeError):
        return None
    fps = _number(record.get("fps"))
    if p50 is None or fps is None:
        return None
    return {"p50": p50, "fps": fps, "valid": record.get("valid") is True}


def cells(result) -> list:
    """[(variant, size, threads, record)] of one host's result, in the run's order."""
    out = []
    for key in result.variants:
        record = result.variant(key)
        if isinstance(record, dict):
            cell = _cell_of(record)
            if cell:
                out.append((*cell, record))
    return out


def is_sweep(result) -> bool:
    found = cells(result)
    return len({c[1] for c in found}) > 1 or len({c[2] for c in found}) > 1


def sweep_setting(sizes: list, counts: list) -> tuple:
    """("320×240, 640×480", "1, 2") for a sweep's setup line (odd entries are left out)."""
    size_text = ", ".join(
        f"{s[0]}×{s[1]}"
        for s in sizes
        if isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) for v in s)
    )
    count_text = ", ".join(
        "default" if c is None else str(c) for c in counts if c is None or isinstance(c, int)
    )
    return size_text or "?", count_text or "?"


def _threads_label(threads: Optional[int]) -> str:
    return "runtime default" if threads is None else f"{threads} thread{'s' if threads > 1 else ''}"


def _size_label(size: tuple) -> str:
    return f"{size[0]}x{size[1]}"


def _fmt_ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


# --- the sweep section ----------------------------------------------------------------------


def sweep_section(result, target_fps: Optional[float] = None) -> dict:
    """Tables per size (rows: threads, columns: variants), a chart per size, best lines."""
    found = cells(result)
    variants = list(dict.fromkeys(c[0] for c in found))
    sizes = list(dict.fromkeys(c[1] for c in found))
    threads = list(dict.fromkeys(c[2] for c in found))
    by_key = {(c[0], c[1], c[2]): c[3] for c in found}
    tables = []
    for size in sizes:
        rows = []
        for count in threads:
            texts = []
            for variant in variants:
                record = by_key.get((variant, size, count))
                m = _measured(record) if record else None
                if record is None:
                    texts.append("—")
                elif m is None:
                    texts.append(str(record.get("status", "?"))[:20])
                else:
                    text = f"{_fmt_ms(m['p50'])} ms ({m['fps']:.1f} FPS)"
                    texts.append(text if m["valid"] else text + " ⚠")
            rows.append((_threads_label(count), texts))
        tables.append(
            {
                "size": _size_label(size),
                "rows": rows,
                "chart": threads_chart(variants, threads, size, by_key),
            }
        )
    return {
        "host": result.host,
        "variants": variants,
        "tables": tables,
        "best": best_lines(found, target_fps),
    }


def best_lines(found: list, target_fps: Optional[float]) -> list:
    """Per variant: its fastest valid cell; with a target, the cheapest valid cell reaching it
    (fewest threads, then the largest input)."""
    lines = []
    for variant in dict.fromkeys(c[0] for c in found):
        measured = []
        for v, size, threads, record in found:
            m = _measured(record) if v == variant else None
            if m and m["valid"]:
                measured.append((size, threads, m))
        if not measured:
            lines.append(f"{variant}: no valid cell")
            continue
        size, threads, m = min(measured, key=lambda item: item[2]["p50"])
        line = (
            f"{variant}: fastest {_fmt_ms(m['p50'])} ms ({m['fps']:.1f} FPS) at "
            f"{_size_label(size)}, {_threads_label(threads)}"
        )
        if target_fps is not None:
            reaching = [item for item in measured if item[2]["fps"] >= target_fps]
            if reaching:
                size, threads, m = min(
                    reaching, key=lambda item: (item[1] or 0, -(item[0][0] * item[0][1]))
                )
                line += (
                    f"; reaches {target_fps:g} FPS with {_threads_label(threads)} at "
                    f"{_size_label(size)} ({m['fps']:.1f} FPS)"
                )
            else:
                line += f"; no cell reaches {target_fps:g} FPS"
        lines.append(line)
    return lines


def threads_chart(variants: list, threads: list, size: tuple, by_key: dict) -> dict:
    """Geometry of a line chart: end-to-end p50 (y) against thread count (x), one line per
    variant; every point labelled with its value, everything inside the SVG box."""
    width, left, right, top, bottom = 680, 60, 180, 20, 40
    series, peak = [], 0.0
    for index, variant in enumerate(variants):
        points = []
        for position, count in enumerate(threads):
            record = by_key.get((variant, size, count))
            m = _measured(record) if record else None
            if m:
                points.append((position, m["p50"], m["valid"]))
                peak = max(peak, m["p50"])
        if points:
            series.append(
                {"name": variant, "color": SERIES_COLORS[index % len(SERIES_COLORS)], "raw": points}
            )
    height = 260
    plot_w, plot_h = width - left - right, height - top - bottom
    if not series:
        return {"empty": True, "width": width, "height": 60}
    from deploy.results.report import _nice_max  # the same axis rounding as the latency chart

    scale = _nice_max(peak)
    step = plot_w / max(1, len(threads) - 1) if len(threads) > 1 else 0
    for index, item in enumerate(series):
        item["points"] = []
        for position, value, valid in item.pop("raw"):
            x = left + (step * position if len(threads) > 1 else plot_w / 2)
            y = top + plot_h * (1 - value / scale)
            # Alternate labels above and below the line so close series stay readable.
            label_y = y - 5 if index % 2 == 0 else min(y + 15, top + plot_h - 2)
            item["points"].append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "label_y": round(label_y, 1),
                    "label": _fmt_ms(value) + ("" if valid else " ⚠"),
                }
            )
        item["path"] = " ".join(f"{p['x']},{p['y']}" for p in item["points"])
    x_ticks = [
        {
            "x": round(left + (step * i if len(threads) > 1 else plot_w / 2), 1),
            "label": "default" if t is None else str(t),
        }
        for i, t in enumerate(threads)
    ]
    y_ticks = [
        {"y": round(top + plot_h * (1 - i / 4), 1), "label": _fmt_ms(scale * i / 4) if i else "0"}
        for i in range(5)
    ]
    legend = [
        {"name": s["name"], "color": s["color"], "y": top + 14 + 18 * i}
        for i, s in enumerate(series)
    ]
    return {
        "empty": False,
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_right": width - right,
        "axis_y": top + plot_h,
        "legend_x": width - right + 16,
        "series": series,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "legend": legend,
        "size": _size_label(size),
    }


# --- what the runtime executed (--profile) ----------------------------------------------------


def profile_rows(result) -> list:
    """Per variant (its first profiled cell): verdict and operator types with their share."""
    out, seen = [], set()
    for variant, size, threads, record in cells(result):
        profile = record.get("profile")
        if variant in seen or not isinstance(profile, dict):
            continue
        ops = profile.get("ops")
        if not isinstance(ops, dict):
            continue
        rows = []
        for name, stats in ops.items():
            if not isinstance(name, str) or not OP_NAME.match(name) or not isinstance(stats, dict):
                continue
            count, share = stats.get("count"), _number(stats.get("share"))
            if not isinstance(count, int) or isinstance(count, bool) or share is None:
                continue
            rows.append((name, count, f"{100 * share:.1f} %"))
        kind = profile.get("kind")
        kind = kind if kind in ("integer", "mixed", "fallback", "float") else "unknown"
        seen.add(variant)
        out.append(
            {
                "variant": variant,
                "setting": f"{_size_label(size)}, {_threads_label(threads)}",
                "kind": kind,
                "verdict": _verdict_text(kind, rows),
                "ops": rows[:25],
            }
        )
    return out


def _verdict_text(kind: str, rows: list) -> str:
    """The verdict rebuilt from validated numbers (a host's own sentence is not printed)."""
    counts = {name: count for name, count, _ in rows}
    integer = sum(c for n, c in counts.items() if n.startswith("QLinear") or n.endswith("Integer"))
    conv = sum(counts.get(n, 0) for n in ("Conv", "FusedConv", "NchwcConv"))
    qdq = sum(counts.get(n, 0) for n in ("QuantizeLinear", "DequantizeLinear"))
    return {
        "integer": f"INT8 ran as integer kernels ({integer} integer nodes, {qdq} Q/DQ)",
        "mixed": f"INT8 ran partly as integer kernels ({integer} integer nodes, "
        f"{conv} float convolutions, {qdq} Q/DQ)",
        "fallback": f"INT8 fell back to float ({conv} float convolutions between {qdq} Q/DQ nodes)",
        "float": "float model (no quantized operator executed)",
    }.get(kind, "unknown")


# --- stream against single frame (--stream) -------------------------------------------------


def stream_rows(result) -> list:
    """Per cell measured with --stream: single-frame e2e and FPS, stream FPS, their ratio."""
    out = []
    for variant, size, threads, record in cells(result):
        stream = record.get("stream")
        if not isinstance(stream, dict):
            continue
        numbers = {
            key: _number(stream.get(key))
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
                "setting": f"{_size_label(size)}, {_threads_label(threads)}",
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


# --- telemetry during the runs ----------------------------------------------------------------


def trace_rows(result) -> list:
    """Per cell with samples: count, temperature range, throttle bits seen, and a sparkline."""
    out = []
    for key in result.variants:
        record = result.variant(key)
        tele = record.get("telemetry") if isinstance(record, dict) else None
        trace = tele.get("trace") if isinstance(tele, dict) else None
        if not isinstance(trace, list) or not trace:
            continue
        temps = [t for t in (_number(s.get("temperature_c")) for s in trace if isinstance(s, dict))]
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
                "spark": _sparkline(temps),
            }
        )
    return out


def _sparkline(values: list, width: int = 160, height: int = 24) -> str:
    """SVG polyline points of a temperature trace (empty for fewer than two samples)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 4) / (len(values) - 1)
    return " ".join(
        f"{2 + i * step:.1f},{2 + (height - 4) * (1 - (v - low) / span):.1f}"
        for i, v in enumerate(values)
    )


def extra_sections(results: list, target_fps: Optional[float] = None) -> dict:
    """The sweep, profile and trace context for the templates (empty lists when absent)."""
    profiles = [{"host": r.host, "rows": profile_rows(r)} for r in results]
    traces = [{"host": r.host, "rows": trace_rows(r)} for r in results]
    streams = [{"host": r.host, "rows": stream_rows(r)} for r in results]
    return {
        "streams": [item for item in streams if item["rows"]],
        "sweeps": [sweep_section(r, target_fps) for r in results if is_sweep(r)],
        "profiles": [item for item in profiles if item["rows"]],
        "traces": [item for item in traces if item["rows"]],
    }


# --- the study's layout -------------------------------------------------------------------------


def study_table(results: list) -> str:
    """The study's table: rows PyTorch / ONNX / ONNX optimized / ONNX INT8, min–max ms per
    frame (end to end) per host and setting, beside the study's published Pi 4 numbers."""
    from deploy.results.report import PUBLISHED, PUBLISHED_MARK

    study = PUBLISHED[0]
    lines = ["# Study layout: ms per frame, min–max (end to end)", ""]
    for result in results:
        settings = list(dict.fromkeys((c[1], c[2]) for c in cells(result)))
        for size, threads in settings:
            lines += [
                f"## {_md(result.host)}: {_size_label(size)}, {_threads_label(threads)}",
                "",
                f"| model | measured here | study Pi 4 ({PUBLISHED_MARK}) |",
                "|---|---:|---:|",
            ]
            for variant, label in (*STUDY_ROWS, STUDY_INT8):
                record = next(
                    (
                        c[3]
                        for c in cells(result)
                        if c[0] == variant and c[1] == size and c[2] == threads
                    ),
                    None,
                )
                lines.append(
                    f"| {label} | {_min_max(record)} | {study.values.get(variant, 'no result')} |"
                )
            lines.append("")
    lines.append(
        "The study's own numbers are min–max per frame on a Pi 4 (armv7l), input size and threads "
        "not stated; its 'optimized' model was the unoptimized one saved again."
    )
    return "\n".join(lines) + "\n"


def _min_max(record: Optional[dict]) -> str:
    if not isinstance(record, dict):
        return "not run"
    if record.get("status") != "ok":
        return str(record.get("status", "?"))[:20]
    try:
        low, high = _number(record["stages"]["e2e"]["min"]), _number(record["stages"]["e2e"]["max"])
    except (KeyError, TypeError):
        return "?"
    if low is None or high is None:
        return "?"
    text = f"{_fmt_ms(low)}–{_fmt_ms(high)}"
    return text if record.get("valid") is True else text + " ⚠"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
