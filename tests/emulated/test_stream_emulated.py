"""`runner stream` on the emulated Pi: the service unit's ExecStart line, run directly over SSH.

The emulated Pi has no systemd (qemu-user in a chroot, no PID 1 of its own), so the unit cannot
be installed there; the test renders the unit for the host as `invoke service` would, runs its
ExecStart words from its WorkingDirectory, reads /metrics and /snapshot.jpg through a real SSH
port forward, compares the JSON lines with x86 `detect` on the same frames, and stops it with
SIGTERM as `systemctl stop` would.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np

from deploy.workflow.service import StreamSettings, render_unit
from retinaface.detector import Detector
from tests.fixtures.video import make_video, read_frames

from .conftest import ssh, ssh_argv
from .test_runner_emulated import DEPLOY_DIR, assert_same_clear_faces

MODEL = "fp32-static-640x480"  # bullseye has no onnxruntime: OpenCV 4.5.1 DNN runs this one


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.status, reply.read()


def test_exec_start_line_streams_on_the_emulated_pi(pi4_emu_deployed, build_models, tmp_path):
    pi = pi4_emu_deployed
    home = ssh(pi, 'printf "%s" "$HOME"').stdout.strip()
    deploy_dir = f"{home}/{DEPLOY_DIR}"
    video = make_video(tmp_path / "faces.avi", frames_per_photo=5, fps=10)
    remote_video = f"{deploy_dir}/live/faces.avi"
    up = subprocess.run(
        ssh_argv(pi) + [f"mkdir -p {deploy_dir}/live && cat > {remote_video}"],
        input=video.read_bytes(),
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr.decode()

    pi_port = _free_port()  # the emulated Pi shares this machine's loopback
    settings = StreamSettings(
        source=remote_video, http=f"127.0.0.1:{pi_port}", model=MODEL, backend="opencv", jsonl=True
    )
    unit = render_unit(settings, deploy_dir, "pi", pi.host)
    exec_line = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    workdir = re.search(r"^WorkingDirectory=(.*)$", unit, re.M).group(1)
    jsonl = f"{deploy_dir}/live/faces.jsonl"
    # Detached like a service; the wrapper records its pid and, at the end, its exit code.
    live = f"{deploy_dir}/live"
    wrapper = f"{exec_line} & echo $! > {live}/pid; wait $!; echo $? > {live}/rc"
    start = (
        f"rm -f {jsonl} {live}/rc {live}/pid && cd {shlex.quote(workdir)} && "
        f"(nohup sh -c {shlex.quote(wrapper)} > {live}/out 2>&1 < /dev/null &) && "
        f"for i in $(seq 20); do test -s {live}/pid && break; sleep 0.5; done; cat {live}/pid"
    )
    started = ssh(pi, start, timeout=120)
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    assert pid.isdigit(), started.stdout

    local_port = _free_port()
    forward = subprocess.Popen(
        ssh_argv(pi)[:-1]
        + ["-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{pi_port}", ssh_argv(pi)[-1]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        metrics = {"frames": 0}
        deadline = time.monotonic() + 900
        while metrics["frames"] < 2 and time.monotonic() < deadline:
            time.sleep(2)
            try:
                metrics = json.loads(_get(f"http://127.0.0.1:{local_port}/metrics")[1])
            except OSError:
                log = ssh(pi, f"cat {live}/out {live}/rc 2>/dev/null").stdout
                assert "error" not in log, log
        assert metrics["frames"] >= 2, metrics
        assert metrics["backend"] == "opencv" and metrics["model"] == MODEL + ".onnx"
        status, jpeg = _get(f"http://127.0.0.1:{local_port}/snapshot.jpg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and image.shape == (480, 640, 3)
    finally:
        forward.terminate()
        forward.wait(timeout=30)

    stop = ssh(
        pi,
        f"kill -TERM {pid}; for i in $(seq 60); do test -s {live}/rc && break; sleep 0.5; done; "
        f"cat {live}/rc {live}/out",
        timeout=120,
    )
    assert stop.stdout.splitlines()[0] == "0", stop.stdout + stop.stderr
    assert "stopped by SIGTERM" in stop.stdout
    lines = ssh(pi, f"cat {jsonl}").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 2
    frames = read_frames(video)
    detector = Detector(str(build_models / (MODEL + ".onnx")), backend="opencv")
    compared = 0
    for record in records:
        # --loop (a file in a service replays) numbers frames on across rewinds.
        want = detector.detect(frames[record["frame"] % len(frames)])
        where = f"frame {record['frame']}"
        compared += assert_same_clear_faces(record["faces"], want, where, min_iou=0.8)
    assert compared > 0, (
        f"no clearly detected face in {len(records)} streamed frames: nothing compared"
    )
