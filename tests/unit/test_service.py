"""The systemd unit of the live stream: rendered, verified by systemd-analyze, ExecStart run as is.

This machine runs no systemd (PID 1 is not systemd), so `install`/`start` cannot happen here;
what can: `systemd-analyze verify` on the rendered unit, and its ExecStart line started directly
(from a deploy-shaped folder) and stopped with SIGTERM, as systemd would.
"""

import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from deploy.errors import DeployError
from deploy.workflow.service import StreamSettings, exec_start, render_unit
from tests.fixtures.video import make_video
from tests.paths import REPO

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


@pytest.fixture
def deploy_dir(tmp_path, models_dir):
    """A folder shaped like a deploy: venv/bin/python, current -> releases/r1 with models/."""
    root = tmp_path / "retinaface-pi"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").symlink_to(sys.executable)
    models = root / "releases" / "r1" / "models"
    models.mkdir(parents=True)
    shutil.copy(models_dir / "fp32-opt.onnx", models)
    (root / "current").symlink_to("releases/r1")
    (root / "live").mkdir()
    return root


def verify(unit_text, folder):
    path = folder / "retinaface-stream.service"
    path.write_text(unit_text)
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=120
    )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_rendered_unit_passes_systemd_analyze_verify(deploy_dir, tmp_path):
    settings = StreamSettings(source="/dev/video0", http="0.0.0.0:8080", jsonl=True)
    unit = render_unit(settings, str(deploy_dir), getpass.getuser(), "pi4")
    result = verify(unit, tmp_path)
    # verify exits 0 even for unknown keys: any line it prints is a finding.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
    fields = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert fields["WorkingDirectory"] == f"{deploy_dir}/current"
    assert fields["Restart"] == "on-failure" and fields["User"] == getpass.getuser()
    assert fields["NoNewPrivileges"] == "yes" and fields["ProtectSystem"] == "strict"
    assert fields["ReadWritePaths"] == f"{deploy_dir}/live" and fields["PrivateTmp"] == "yes"
    assert fields["StandardOutput"] == "journal"
    assert fields["ExecStart"].split()[:4] == [
        f"{deploy_dir}/venv/bin/python",
        "-m",
        "retinaface.runner",
        "stream",
    ]


def test_verify_finds_a_broken_unit(deploy_dir, tmp_path):
    """The check above can fail: a unit whose ExecStart does not exist is reported."""
    unit = render_unit(StreamSettings(), str(deploy_dir), getpass.getuser(), "pi4")
    result = verify(unit.replace(f"{deploy_dir}/venv/bin/python", "/nonexistent/python"), tmp_path)
    assert "/nonexistent/python is not executable" in result.stderr


def test_exec_start_line_serves_the_stream_and_stops_on_sigterm(deploy_dir, tmp_path):
    """The unit's own ExecStart words, run from its WorkingDirectory, as systemd would start them."""
    video = make_video(deploy_dir / "faces.avi", frames_per_photo=5, fps=10)
    port = free_port()
    settings = StreamSettings(source=str(video), http=f"127.0.0.1:{port}", jsonl=True)
    unit = render_unit(settings, str(deploy_dir), getpass.getuser(), "pi4")
    line = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    workdir = re.search(r"^WorkingDirectory=(.*)$", unit, re.M).group(1)
    assert shlex.split(line) == exec_start(settings, str(deploy_dir))
    env = dict(os.environ, PYTHONPATH=str(REPO))  # the venv's runner wheel, here the repo
    proc = subprocess.Popen(
        shlex.split(line), cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        metrics = {"frames": 0}
        while metrics["frames"] < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    metrics = json.loads(r.read())
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
        assert metrics["frames"] >= 2 and metrics["model"] == "fp32-opt.onnx"
        proc.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err  # 0: Restart=on-failure leaves a clean stop alone
    assert b"stopped by SIGTERM" in out
    lines = (deploy_dir / "live" / "faces.jsonl").read_text().splitlines()
    assert lines and all("faces" in json.loads(line) for line in lines)


@pytest.mark.parametrize(
    "settings, needle",
    [
        (StreamSettings(source="rtsp://admin:secret@cam/live"), "user:password@"),
        (StreamSettings(source="/home/pi/my video.mp4"), "no spaces"),
        (StreamSettings(source="/home/pi/%h.mp4"), "no spaces, %"),
        (StreamSettings(source="/tmp/clip.mp4"), "PrivateTmp"),
        (StreamSettings(model="../../etc/x"), "--model"),
        (StreamSettings(http="0.0.0.0:99999"), "--http"),
        (StreamSettings(size="640x480;rm"), "--size"),
        (StreamSettings(backend="tensorrt"), "--backend"),
    ],
)
def test_unsafe_values_never_reach_the_unit(settings, needle):
    with pytest.raises(DeployError) as error:
        settings.validate()
    assert needle in str(error.value)


def test_service_task_bad_source_is_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "service", "install", "--source", "rtsp://u:p@cam/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --source 'rtsp://u:p@cam/x'")
