"""The plugin's output, parsed: cumulative counts at markers -> instructions per frame per stage.

insn_count.c writes a header line, then `mark CODE TOTAL SIMD FP INT LDST BRANCH` each time the
guest writes CODE bytes to the marker fd, and `exit 0 ...` when the program ends. The guest
(guest.py) marks every frame as PRE, INFER, POST (a stage begins) and END (the frame is done).
Per frame = (count after the last frame - count after the first) / (frames - 1) per stage: the
first frame (caches, first-run allocations) and the start-up cancel, as by hand with 3 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

PRE, INFER, POST, END = 1, 2, 3, 4
FRAME = (PRE, INFER, POST, END)
STAGES = ("pre", "infer", "post", "e2e")
MIX = ("simd", "fp", "int", "ldst", "branch")
FIELDS = ("total",) + MIX
MAX_BYTES = 4 << 20  # a few lines per frame: anything bigger is not our plugin's output


class MarksError(ValueError):
    """The plugin's output is not what insn_count.c writes; the message names the line."""


@dataclass(frozen=True)
class Mark:
    kind: str  # "mark" or "exit"
    code: int
    counts: Tuple[int, ...]  # FIELDS, cumulative


def parse(text: str) -> Tuple[str, List[Mark]]:
    """(target, marks) of the plugin's output TEXT."""
    if len(text) > MAX_BYTES:
        raise MarksError(f"plugin output of {len(text)} bytes is larger than {MAX_BYTES}")
    lines = text.splitlines()
    if not lines:
        raise MarksError("plugin output is empty (did qemu load the plugin?)")
    head = lines[0].split()
    if len(head) != 3 + len(MIX) or head[:2] != ["insn_count", "1"] or tuple(head[3:]) != MIX:
        raise MarksError(f"line 1: not an insn_count 1 header: {lines[0][:80]!r}")
    marks = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if len(words) != 2 + len(FIELDS) or words[0] not in ("mark", "exit"):
            raise MarksError(f"line {number}: expected 'mark|exit CODE {' '.join(FIELDS)}'")
        if not all(w.isdigit() and len(w) <= 20 for w in words[1:]):
            raise MarksError(f"line {number}: counts are not whole numbers: {line[:80]!r}")
        values = tuple(int(w) for w in words[2:])
        if values[0] != sum(values[1:]):
            raise MarksError(f"line {number}: the mix does not add up to the total")
        if marks and any(a < b for a, b in zip(values, marks[-1].counts)):
            raise MarksError(f"line {number}: a cumulative count went down")
        marks.append(Mark(words[0], int(words[1]), values))
    return head[2], marks


def per_frame(marks: List[Mark], frames: int) -> Dict[str, Dict[str, int]]:
    """{stage: {total, simd, fp, int, ldst, branch}} per frame, frames 2..FRAMES averaged."""
    if frames < 2:
        raise MarksError("per-frame counts need at least 2 frames (the first one is dropped)")
    codes = [m for m in marks if m.kind == "mark"]
    if [m.code for m in codes] != list(FRAME) * frames:
        got = " ".join(str(m.code) for m in codes[:12])
        raise MarksError(
            f"expected {frames} frames of markers {FRAME}, got {len(codes)} markers ({got} ...)"
        )
    sums = {stage: [0] * len(FIELDS) for stage in STAGES}
    for f in range(1, frames):
        at = {m.code: m.counts for m in codes[4 * f : 4 * f + 4]}
        spans = {"pre": (PRE, INFER), "infer": (INFER, POST), "post": (POST, END),
                 "e2e": (PRE, END)}  # fmt: skip
        for stage, (start, stop) in spans.items():
            for i in range(len(FIELDS)):
                sums[stage][i] += at[stop][i] - at[start][i]
    out = {}
    for stage, values in sums.items():
        # Each class rounded on its own; the total is their sum, so the mix adds up exactly.
        mix = {name: int(round(values[i] / (frames - 1))) for i, name in enumerate(FIELDS) if i}
        out[stage] = {"total": sum(mix.values()), **mix}
    return out
