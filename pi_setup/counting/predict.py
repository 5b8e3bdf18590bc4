"""A predicted Pi 4 time from counted instructions: a stated model, labelled as a prediction.

Model: t = N x CPI / f, one cycles-per-instruction factor for the whole pipeline, f = 1.5 GHz
(Pi 4 Model B's default clock), fitted to the one published Pi 4 measurement of a pipeline we
can count exactly: the study's ONNX pipeline, 520-570 ms per frame on a 32-bit Pi 4 (onnxruntime
1.9.1 armv7l), counted here as `--variants study` (1.8.1 armv7l, the same community build line).
The study does not say how many threads it ran. Both readings bound the fit:
  1 thread:  CPI = t x f / (pre + infer + post)
  4 threads: CPI = t x f / (pre + infer / S + post), S = 167 / 96 = 1.74, MNN's published
             1 -> 4 thread speed-up of this network's fp32 inference at 640x480 on a Pi 4.
The band is the lowest and highest CPI over both readings and 520-570 ms. It is a model: cycles
per instruction differ by instruction class and kernel, so it ranks variants of the same mix
better than it predicts absolute times; only for Cortex-A72 (Pi 4) and 640x480-like work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PI4_HZ = 1.5e9
STUDY_MS = (520.0, 570.0)  # the study's "ONNX" row, Pi 4, 32-bit
MNN_THREAD_SPEEDUP = 167.0 / 96.0  # MNN fp32 640x480 Pi 4: 1 thread 167 ms, 4 threads 96 ms
MODEL_NAME = "1 CPI factor at 1.5 GHz, fitted to the study's 520-570 ms"


@dataclass(frozen=True)
class CpiFit:
    low: float
    high: float

    @property
    def mid(self) -> float:
        return (self.low * self.high) ** 0.5

    def ms(self, instructions: int) -> tuple:
        """(low, mid, high) predicted milliseconds for INSTRUCTIONS on one Pi 4 core."""
        return tuple(instructions * cpi / PI4_HZ * 1e3 for cpi in (self.low, self.mid, self.high))

    def describe(self) -> str:
        return (
            f"predicted ms = instructions x CPI / 1.5 GHz, CPI {self.low:.2f}-{self.high:.2f} "
            f"(fitted to the study's {STUDY_MS[0]:.0f}-{STUDY_MS[1]:.0f} ms on a Pi 4, 1 or 4 "
            f"threads; 4 threads scaled by MNN's {MNN_THREAD_SPEEDUP:.2f}x); a prediction, "
            "not a measurement"
        )


def fit(study_pre: int, study_infer: int, study_post: int) -> CpiFit:
    """The CPI band from the study pipeline's counted stages (instructions per frame)."""
    one = study_pre + study_infer + study_post
    four = study_pre + study_infer / MNN_THREAD_SPEEDUP + study_post
    cpis = [ms / 1e3 * PI4_HZ / n for ms in STUDY_MS for n in (one, four)]
    return CpiFit(min(cpis), max(cpis))


def fit_from_records(records: list) -> Optional[CpiFit]:
    """The fit from a study record counted on cortex-a72 at 640x480 among RECORDS, if any."""
    for r in records:
        if r["variant"] == "study" and r["cpu"] == "cortex-a72" and r["size"] == "640x480":
            return fit(r["pre"], r["infer"], r["post"])
    return None


# The fit of the study pipeline as counted on the emulated bullseye Pi (pi4-emu, 640x480,
# onnxruntime 1.8.1 armv7l, qemu-arm cortex-a15 model; see README "Counted"): used when a run
# of `invoke count` does not count the study itself.
# Counted 2026-12-04: e2e 990.8 M (pre 61.3, infer 723.9, post 205.6), CPI band 0.79-1.25.
STUDY_COUNTED = (61_321_998, 723_927_622, 205_551_602)  # (pre, infer, post) per frame


def default_fit() -> Optional[CpiFit]:
    return fit(*STUDY_COUNTED) if STUDY_COUNTED else None


def attach(records: list) -> Optional[CpiFit]:
    """Add `predicted_ms` {low, mid, high, model} to each counted Cortex-A72 record."""
    band = fit_from_records(records) or default_fit()
    if band is None:
        return None
    for r in records:
        if "skipped" not in r and r["cpu"] == "cortex-a72":
            low, mid, high = band.ms(r["e2e"])
            r["predicted_ms"] = {"low": round(low, 1), "mid": round(mid, 1),
                                 "high": round(high, 1), "model": MODEL_NAME}  # fmt: skip
    return band
