"""Published reference numbers (ms per frame on a Pi 4) and where each was published: shown
beside the measured ones, marked, never in a measured column."""

from __future__ import annotations

from dataclasses import dataclass

PUBLISHED_MARK = "published, not measured here"


@dataclass(frozen=True)
class Published:
    """One published Pi 4 number (ms per frame) and where it was published."""

    source: str
    short: str  # the row label in the variant tables
    runtime: str
    size: str
    threads: str
    values: dict  # our variant name -> "520–570" (text: ranges stay ranges)
    note: str = ""
    url: str = ""  # where the number was published (none for the study's own table)


PUBLISHED = (
    Published(
        "the original study (Pi 4, armv7l)",
        "study",
        "PyTorch 1.7 / ONNX Runtime 1.9.1",
        "not stated",
        "default",
        {"torch": "3,700–4,200", "fp32": "520–570", "fp32-opt": "490–530"},
        'its "ONNX optimized" file was the unoptimized model saved again',
    ),
    Published(
        "MNN, RetinaFace mnet0.25 (MXNet weights)",
        "MNN",
        "MNN",
        "640×480",
        "4",
        {"mnn-fp32": "96", "mnn-int8": "61"},
        "1/2/3/4 threads: fp32 167/116/105/96, int8 183/102/76/61",
        "https://github.com/Charrin/RetinaFace-Cpp/issues/31",
    ),
    Published(
        "MNN, RetinaFace mnet0.25 (MXNet weights), 32-bit Raspbian",
        "MNN",
        "MNN",
        "320×240",
        "4",
        {"mnn-int8": "15"},
        "int8 46 ms on 1 thread",
        "https://github.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/blob/master/README_EN.md",
    ),
    Published(
        "ncnn, RetinaFace mnet0.25",
        "ncnn",
        "ncnn",
        "320×240",
        "?",
        {"ncnn-fp32": "~35"},
        "64-bit OS",
        "https://github.com/Qengineering/Face-Recognition-Raspberry-Pi-64-bits",
    ),
    Published(
        "YuNet (libfacedetection), a different detector",
        "YuNet",
        "libfacedetection",
        "640×480",
        "1 / 4",
        {},
        "640×480: 404.6 / 125.5 ms; 320×240: 105.7 / 33.0 ms",
        "https://github.com/ShiqiYu/libfacedetection#cnn-based-face-detection-on-arm-linux-raspberry-pi-4-b",
    ),
)
