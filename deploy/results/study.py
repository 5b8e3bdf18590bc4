"""The study's own table layout: PyTorch / ONNX / ONNX optimized / INT8, min–max ms per frame,
beside the study's published Pi 4 numbers."""

from __future__ import annotations

from typing import Optional

from deploy.results.published import PUBLISHED, PUBLISHED_MARK
from deploy.results.sections.sweep import cells, finite_number, fmt_ms, size_label, threads_label

STUDY_ROWS = (("torch", "PyTorch"), ("fp32", "ONNX"), ("fp32-opt", "ONNX optimized"))


STUDY_INT8 = ("int8", "ONNX INT8")


def study_table(results: list) -> str:
    """The study's table: rows PyTorch / ONNX / ONNX optimized / ONNX INT8, min–max ms per
    frame (end to end) per host and setting, beside the study's published Pi 4 numbers."""
    study = PUBLISHED[0]
    lines = ["# Study layout: ms per frame, min–max (end to end)", ""]
    for result in results:
        settings = list(dict.fromkeys((c[1], c[2]) for c in cells(result)))
        for size, threads in settings:
            lines += [
                f"## {_md(result.host)}: {size_label(size)}, {threads_label(threads)}",
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
        low, high = finite_number(record["stages"]["e2e"]["min"]), finite_number(record["stages"]["e2e"]["max"])
    except (KeyError, TypeError):
        return "?"
    if low is None or high is None:
        return "?"
    text = f"{fmt_ms(low)}–{fmt_ms(high)}"
    return text if record.get("valid") is True else text + " ⚠"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
