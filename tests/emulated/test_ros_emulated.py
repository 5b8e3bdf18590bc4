"""`runner ros` on the emulated bullseye Pi, as a user sets it up: `invoke deploy`, `invoke
setup-pi --ros` (Debian bullseye's armhf ROS packages), then the `invoke service install --ros`
unit's ExecStart line run over SSH (no systemd under qemu-user), against a rosmaster on the Pi,
fed by a replay publisher on the Pi, heard by a listener on the Pi. Its detections match x86.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

from deploy.workflow.service import StreamSettings, render_unit
from retinaface.detector import Detector
from retinaface.imageio import read_image
from tests.fixtures.ros import free_port

from .conftest import IMAGES, REPO, invoke, ssh, ssh_argv
from .test_runner_emulated import DEPLOY_DIR, REMOTE, assert_same_clear_faces
from .test_stream_emulated import MODEL

NAMES = ("group.jpg", "selfie.jpg")  # pi4_emu_deployed puts them in ~/REMOTE/images


def test_ros_node_from_the_deploy_on_the_emulated_pi(pi4_emu_deployed, build_models, tmp_path):
    pi = pi4_emu_deployed
    setup = invoke("setup-pi", "--host", pi.host, "--ros", timeout=3600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert f"{pi.host}: ok: the venv imports Debian's rospy" in setup.stdout, setup.stdout
    again = invoke("setup-pi", "--host", pi.host, "--ros", "--check", timeout=600)
    assert again.returncode == 0 and "would:" not in again.stdout, again.stdout  # idempotent

    home = ssh(pi, 'printf "%s" "$HOME"').stdout.strip()
    deploy_dir = f"{home}/{DEPLOY_DIR}"
    work = f"{home}/{REMOTE}/ros"
    tool = (REPO / "tests" / "fixtures" / "ros_tool.py").read_bytes()
    up = subprocess.run(
        ssh_argv(pi) + [f"rm -rf {work} && mkdir -p {work} && cat > {work}/ros_tool.py"],
        input=tool, capture_output=True, timeout=300,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr.decode()

    port = free_port()  # the emulated Pi shares this machine's loopback
    settings = StreamSettings(
        ros=True, model=MODEL, backend="opencv", master_uri=f"http://127.0.0.1:{port}"
    )
    unit = render_unit(settings.validate(), deploy_dir, "pi", pi.host)
    exec_line = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    workdir = re.search(r"^WorkingDirectory=(.*)$", unit, re.M).group(1)
    env = " ".join(re.findall(r"^Environment=(.*)$", unit, re.M)) + " ROS_IP=127.0.0.1"
    assert f"ROS_MASTER_URI=http://127.0.0.1:{port}" in env
    images = " ".join(f"{home}/{REMOTE}/images/{name}" for name in NAMES)
    # One detached script: master, listener, the unit's node, replay; pids kept to stop them.
    script = f"""
export {env}
cd {shlex.quote(workdir)}
rosmaster --core -p {port} > {work}/master.log 2>&1 & echo $! > {work}/master.pid
python3 {work}/ros_tool.py listen --out {work}/heard.jsonl --faces /retinaface/faces \\
    --stats /retinaface/stats > {work}/listen.log 2>&1 & echo $! > {work}/listen.pid
(exec {exec_line}) > {work}/node.out 2> {work}/node.err & echo $! > {work}/node.pid
python3 {work}/ros_tool.py replay --topic /camera/image_raw --rate 0.5 --cycles 0 \\
    --wait 1800 {images} > {work}/replay.log 2>&1 & echo $! > {work}/replay.pid
wait $(cat {work}/node.pid); echo $? > {work}/node.rc
"""
    started = ssh(
        pi,
        f"cat > {work}/run.sh && (nohup bash {work}/run.sh > {work}/run.log 2>&1 < /dev/null &)",
        timeout=120, input=script,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr

    def heard():
        text = ssh(pi, f"cat {work}/heard.jsonl 2>/dev/null", timeout=120).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    try:
        deadline = time.monotonic() + 1800
        records = []
        while time.monotonic() < deadline:
            records = [r["data"] for r in heard() if r["topic"] == "/retinaface/faces"]
            if {r["frame_id"].split("#")[0] for r in records} == set(NAMES):
                break
            time.sleep(10)
        logs = ssh(pi, f"tail -n 20 {work}/*.log {work}/node.err", timeout=120).stdout
        assert {r["frame_id"].split("#")[0] for r in records} == set(NAMES), logs
        stop = ssh(
            pi,
            f"kill -TERM $(cat {work}/node.pid); "
            # the frame in inference finishes first: tens of seconds under qemu on a loaded host
            f"for i in $(seq 600); do test -s {work}/node.rc && break; sleep 0.5; done; "
            f"cat {work}/node.rc {work}/node.out; cat {work}/node.err >&2",
            timeout=600,
        )
        assert stop.stdout.splitlines()[0] == "0", stop.stdout + stop.stderr + logs
        assert "stopped by SIGTERM" in stop.stdout, stop.stdout
        assert "reading /camera/image_raw (sensor_msgs/Image)" in stop.stdout
    finally:
        ssh(
            pi,
            f"for p in node replay listen master; do kill -TERM $(cat {work}/$p.pid 2>/dev/null) "
            "2>/dev/null; done; sleep 2; "
            f"for p in node replay listen master; do kill -KILL $(cat {work}/$p.pid 2>/dev/null) "
            "2>/dev/null; done; true",
            timeout=120,
        )
    stats = [r["data"] for r in heard() if r["topic"] == "/retinaface/stats"]
    assert stats and stats[-1]["backend"] == "opencv" and stats[-1]["model"] == MODEL + ".onnx"
    detector = Detector(str(build_models / (MODEL + ".onnx")), backend="opencv")
    for record in records:
        name = record["frame_id"].split("#")[0]
        want = detector.detect(read_image(IMAGES / name))
        assert want, f"{name}: no face on x86, the comparison would prove nothing"
        # The Pi's JPEG decoder and OpenCV 4.5.1 made these frames: clear faces must match.
        assert_same_clear_faces(record["faces"], want, f"{name} on the Pi", min_iou=0.8)
