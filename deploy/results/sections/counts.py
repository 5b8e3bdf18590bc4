"""The "counted on <cpu>" section of table.md / report.html, from bench.json's `counts` record.

`invoke count --into RESULTS_DIR` puts the records of pi_setup.counting (validated by
deploy.results.schema) into each counted host's bench.json; this module only formats them.
Counts are instructions, not times; a predicted time is in its own column, named as one.
"""

from __future__ import annotations

MIX = ("simd", "fp", "int", "ldst", "branch")
STAGES = ("pre", "infer", "post", "e2e")


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def _mix(mix: dict) -> str:
    total = sum(mix.values()) or 1
    return " ".join(f"{k} {100.0 * mix[k] / total:.0f}%" for k in MIX)


def count_sections(results: list) -> list:
    """One section per host, CPU and size: rows of millions of instructions per frame."""
    sections = []
    for result in results:
        counts = result.data.get("counts") or {}
        groups = {}
        for record in counts.get("records", []):
            if "skipped" in record:
                continue
            groups.setdefault((record["cpu"], record["qemu_cpu"], record["size"]), []).append(
                record
            )
        for (cpu, qemu_cpu, size), records in groups.items():
            study = next((r for r in records if r["variant"] == "study"), None)
            model = next((r["predicted_ms"]["model"] for r in records if r.get("predicted_ms")), "")
            rows = []
            for r in records:
                predicted = r.get("predicted_ms")
                rows.append(
                    {
                        "variant": r["variant"],
                        "stages": [_millions(r[s]) for s in STAGES],
                        "mix": _mix(r["mix"]["e2e"]),
                        "vs_study": f"{r['e2e'] / study['e2e']:.2f}" if study else "",
                        "predicted": (
                            f"{predicted['mid']:.0f} ({predicted['low']:.0f}–{predicted['high']:.0f})"
                            if predicted
                            else ""
                        ),
                    }
                )
            sections.append(
                {
                    "host": result.host,
                    "cpu": cpu,
                    "qemu_cpu": qemu_cpu,
                    "size": size,
                    "rows": rows,
                    "has_study": study is not None,
                    "model": model,
                }
            )
    return sections
