"""Runs INSIDE the emulated Pi's Python under the counting qemu: one variant, N frames, markers.

Python 3.7+, stdlib + numpy (+ the variant's runtime). Not shipped: run.py hands this file and
the workstation's checkout (for the `retinaface` package) to the guest Python by host path,
which qemu's -L prefix falls back to. The frame is the photograph resized to WxH once before any
marker (what a camera at WxH delivers); then per frame, as `runner bench` times it:
pre = Detector.preprocess, infer = Detector.infer, post = Detector.postprocess, each preceded
by a marker write (its length is the code the plugin reports), and an END marker after post.
`--study` runs the study's pipeline instead (retinaface.tools.bench_local.StudyPipeline: numpy
pre-processing, the Python-loop PriorBox, numpy decode, py_cpu_nms) on its unoptimized export.
"""

import argparse
import contextlib
import json
import os
import site
import sys

PRE, INFER, POST, END = 1, 2, 3, 4
CODES = {"pre": PRE, "infer": INFER, "post": POST}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--site", default="")
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--study", action="store_true")
    args = parser.parse_args()
    if args.site:  # the deployed venv's packages (onnxruntime, our numpy) before Debian's
        sys.path.insert(0, args.site)
        site.addsitedir(args.site)
    sys.path.insert(0, args.repo)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, args.fd)

    def mark(code):
        os.write(args.fd, b"m" * code)

    import cv2

    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    frame = cv2.resize(cv2.imread(args.image, cv2.IMREAD_COLOR), (width, height))
    if args.study:
        run = study_frame(args.model, mark)
    else:
        run = our_frame(args.model, args.backend, (width, height), mark)
    faces = [run(frame) for _ in range(args.frames)]
    sys.stdout.write(json.dumps({"faces": faces}) + "\n")


def our_frame(model, backend, size, mark):
    from retinaface.detector import Detector

    detector = Detector(model, backend=backend, size=size, threads=1, spinning=False)
    if backend == "torch":
        detector.backend.torch.set_num_threads(1)

    def run(frame):
        mark(PRE)
        blob = detector.preprocess(frame)
        mark(INFER)
        outputs = detector.infer(blob)
        mark(POST)
        faces = detector.postprocess(outputs, blob.shape, frame.shape)
        mark(END)
        return len(faces)

    return run


def study_frame(model, mark):
    from retinaface.tools.bench_local import StudyPipeline

    study = StudyPipeline(model, 1)

    @contextlib.contextmanager
    def timer(stage):
        mark(CODES[stage])
        yield

    def run(frame):
        found = study(frame, timer)
        mark(END)
        return int(found)

    return run


if __name__ == "__main__":
    main()
