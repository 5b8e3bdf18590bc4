"""`invoke report --compare`: per host and variant deltas of two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from deploy.results.model import HostResult, load_results, ms_text
from deploy.results.render import render
from deploy.results.sections.tables import variant_columns


def compare(new_dir: Path, old_dir: Path) -> str:
    """Markdown deltas of end-to-end p50/p90 and FPS for every host and variant in both runs."""
    new = {r.host: r for r in load_results(new_dir)}
    old = {r.host: r for r in load_results(old_dir)}
    rows = []
    for host in [h for h in new if h in old]:
        for name in variant_columns([new[host], old[host]]):
            a, b = new[host].variant(name), old[host].variant(name)
            row = {"host": host, "variant": name, "p50": "", "p90": "", "fps": "", "note": ""}
            if not a or not b or a["status"] != "ok" or b["status"] != "ok":
                row["note"] = f"new: {_state(a)}, old: {_state(b)}"
                rows.append(row)
                continue
            for key in ("p50", "p90"):
                va, vb = a["stages"]["e2e"][key], b["stages"]["e2e"][key]
                row[key] = f"{ms_text(va)} vs {ms_text(vb)} ({_delta(va, vb)})"
            row["fps"] = f"{a['fps']:.1f} vs {b['fps']:.1f}"
            notes = [] if a["valid"] and b["valid"] else ["invalid run(s) ⚠"]
            notes += _config_diff(new[host], old[host])
            row["note"] = "; ".join(notes)
            rows.append(row)
    only = sorted(set(new) ^ set(old))
    return render(
        "compare.md.j2",
        new=str(new_dir),
        old=str(old_dir),
        rows=rows,
        only=[(h, "new" if h in new else "old") for h in only],
    )


def _delta(a: float, b: float) -> str:
    if b == 0:
        return "n/a"
    return f"{a - b:+.1f} ms, {100.0 * (a - b) / b:+.1f} %"


def _state(record: Optional[dict]) -> str:
    return record["status"] if record else "absent"


def _config_diff(a: HostResult, b: HostResult) -> list:
    """Settings that differ between two runs (their numbers are then not like for like)."""
    out = []
    for key in ("size", "threads", "runs", "warmup"):
        va, vb = a.data["config"].get(key), b.data["config"].get(key)
        if va != vb:
            out.append(f"{key} {va} vs {vb}")
    return out
