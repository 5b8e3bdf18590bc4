"""What the runtime executed (--profile): operator types and their share per variant."""

from __future__ import annotations

from deploy.results.sections.sweep import OP_NAME, cells, finite_number, size_label, threads_label


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
            count, share = stats.get("count"), finite_number(stats.get("share"))
            if not isinstance(count, int) or isinstance(count, bool) or share is None:
                continue
            rows.append((name, count, f"{100 * share:.1f} %"))
        kind = profile.get("kind")
        kind = kind if kind in ("integer", "mixed", "fallback", "float") else "unknown"
        seen.add(variant)
        out.append(
            {
                "variant": variant,
                "setting": f"{size_label(size)}, {threads_label(threads)}",
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
