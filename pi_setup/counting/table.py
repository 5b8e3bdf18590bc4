"""The printed table of counted instructions (millions per frame), with the mix and predictions."""

from __future__ import annotations

from typing import Optional

from pi_setup.counting.marks import MIX, STAGES
from pi_setup.counting.predict import MODEL_NAME, CpiFit


def _m(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def mix_text(mix: dict) -> str:
    total = sum(mix.values()) or 1
    return " ".join(f"{k} {100.0 * mix[k] / total:.0f}%" for k in MIX)


def format_counts(records: list, fit: Optional[CpiFit] = None) -> str:
    """Markdown-style table per host and CPU; ours/study ratio; predicted ms in its own column."""
    lines = []
    groups = {}
    for r in records:
        groups.setdefault((r["host"], r["cpu"], r["qemu_cpu"], r["size"]), []).append(r)
    for (host, cpu, qemu_cpu, size), rows in groups.items():
        study = next((r for r in rows if r["variant"] == "study"), None)
        lines.append(
            f"## {host}: instructions per frame on {cpu} (qemu -cpu {qemu_cpu}), {size}, "
            "1 thread, counted under qemu — not a time"
        )
        lines.append("")
        head = "| variant | pre M | infer M | post M | e2e M | e2e mix |"
        rule = "|---|---:|---:|---:|---:|---|"
        if study:
            head += " e2e ours / study |"
            rule += "---:|"
        predicted = fit is not None and cpu == "cortex-a72"
        if predicted:
            head += f" predicted ms (model: {MODEL_NAME}) |"
            rule += "---:|"
        lines += [head, rule]
        for r in rows:
            cells = [r["variant"]] + [_m(r[s]) for s in STAGES] + [mix_text(r["mix"]["e2e"])]
            if study:
                cells.append(f"{r['e2e'] / study['e2e']:.2f}")
            if predicted:
                low, mid, high = fit.ms(r["e2e"])
                cells.append(f"{mid:.0f} ({low:.0f}-{high:.0f})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if fit is not None:
        lines.append(fit.describe())
    return "\n".join(lines).rstrip() + "\n"
