"""`runner ros` against `runner stream` on the same frames (not a test):
`python -m tests.ros.bench_ros [--rounds 3] [--frames 60] [--rate 30] [--model fp32-opt]`.

The same 640x480 frames (a video of the shared photographs, as bench-stream makes it) go to
`runner stream --source VIDEO --loop` and, as sensor_msgs/Image bgr8 published by the replay
node, to `runner ros` on a real rosmaster on loopback; both arrive at --rate Hz (the video's
frame rate, the replay's rate), faster than inference. Each
command stops itself after --frames processed frames and prints its own FPS; rounds alternate
the two so a changing machine load hits both. Needs Debian's ROS packages (tests/ros).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from retinaface.bench import stream_bench as bench_stream
from tests.fixtures.ros import RosMaster, ros_python_path
from tests.paths import IMAGES, REPO

TOOL = REPO / "tests" / "fixtures" / "ros_tool.py"
FPS = re.compile(r"(\d+) frames processed \(([0-9.]+) fps\), (\d+) dropped")


def closing_fps(proc: subprocess.CompletedProcess, what: str) -> tuple:
    found = FPS.search(proc.stdout)
    if proc.returncode != 0 or not found:
        raise SystemExit(
            f"{what} failed ({proc.returncode}): {proc.stdout[-500:]}{proc.stderr[-1500:]}"
        )
    return float(found.group(2)), int(found.group(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60, help="processed frames per run")
    parser.add_argument("--rate", type=float, default=30.0, help="replay rate, Hz")
    parser.add_argument("--model", default="fp32-opt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from deploy.workflow.release import MODELS_DIR, ensure_models

    ensure_models(MODELS_DIR)
    model = MODELS_DIR / f"{args.model}.onnx"
    root = Path(tempfile.mkdtemp(prefix="rf-ros-bench-"))
    video = bench_stream.make_video(
        root / "faces.avi", bench_stream.photo_paths(IMAGES), frames_per_photo=5, fps=args.rate
    )
    frames = []
    for number, frame in enumerate(bench_stream.read_all(video)):
        frames.append(root / f"frame{number:03d}.png")  # lossless: the very frames stream decodes
        cv2.imwrite(str(frames[-1]), frame)
    master = RosMaster(root)
    env = dict(master.env, PYTHONPATH=f"{REPO}{os.pathsep}{ros_python_path(root / 'ros-python')}")
    common = [
        "--model",
        str(model),
        "--threads",
        str(args.threads),
        "--max-frames",
        str(args.frames),
    ]
    results = {"stream": [], "ros": []}
    try:
        for _ in range(args.rounds):
            stream = subprocess.run(
                [sys.executable, "-m", "retinaface.runner", "stream", "--source", str(video), "--loop", *common],
                cwd=REPO, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            results["stream"].append(closing_fps(stream, "runner stream"))
            replay = subprocess.Popen(
                [sys.executable, str(TOOL), "replay", "--topic", "/bench/image", "--rate",
                 str(args.rate), "--cycles", "0", *map(str, frames)],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            try:
                node = subprocess.run(
                    [sys.executable, "-m", "retinaface.runner", "ros", "--image-topic",
                     "/bench/image", *common],
                    cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                )  # fmt: skip
            finally:
                os.killpg(replay.pid, signal.SIGTERM)
                replay.wait(30)
            results["ros"].append(closing_fps(node, "runner ros"))
            print(f"round: stream {results['stream'][-1]}, ros {results['ros'][-1]} (fps, dropped)")
    finally:
        master.stop()
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.frames} frames per run, model {model.name}, "
        f"{args.threads} threads, replay {args.rate} Hz"
    )
    for name, runs in results.items():
        print(
            f"{name}: median {statistics.median(f for f, _ in runs):.2f} fps of {[f for f, _ in runs]}"
        )
    ratio = statistics.median(f for f, _ in results["ros"]) / statistics.median(
        f for f, _ in results["stream"]
    )
    print(f"ros / stream: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
