"""The stream unit's sandbox and the camera URL's secrets (issue 21 items 8 and 9):
`systemd-analyze security --offline=yes` rates the rendered unit at most 4.0, the sandbox
writes only live/, and a URL's query string stays out of the world-readable unit (in a 0600
EnvironmentFile) and out of /metrics."""

import re
import shutil
import stat
import subprocess

import pytest

from deploy.hosts.connection import open_host
from deploy.hosts.inventory import LOCAL_HOST
from deploy.workflow.service import ENV_FILE, StreamSettings, render_unit, write_env
from retinaface.live.sources import display_source

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SECRET_URL = "rtsp://cam.local:554/live?user=admin&pwd=hunter2"


def _fields(unit):
    out = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def _exposure(unit, tmp_path):
    path = tmp_path / "retinaface-stream.service"
    path.write_text(unit)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@pytest.mark.parametrize("source", ["/dev/video0", SECRET_URL])
def test_systemd_analyze_rates_the_unit_at_most_4(source, tmp_path):
    unit = render_unit(
        StreamSettings(source=source, http="0.0.0.0:8080", jsonl=True),
        "/home/pi/retinaface-pi",
        "pi",
        "pi4",
    )
    assert _exposure(unit, tmp_path) <= 4.0


def test_the_rating_can_fail(tmp_path):
    """The check above can fail: the unit as it was (no sandbox beyond ProtectSystem) is 8+."""
    unit = render_unit(StreamSettings(), "/home/pi/retinaface-pi", "pi", "pi4")
    kept = (
        "[Unit]",
        "[Service]",
        "[Install]",
        "Description=",
        "User=",
        "ExecStart=",
        "WorkingDirectory=",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "PrivateTmp=",
        "WantedBy=",
        "Restart",
    )
    old = "\n".join(line for line in unit.splitlines() if line.startswith(kept))
    assert _exposure(old, tmp_path) > 8.0


def test_the_sandbox_writes_only_live_and_hides_homes():
    unit = render_unit(StreamSettings(jsonl=True), "/home/pi/retinaface-pi", "pi", "pi4")
    fields = _fields(unit)
    assert fields["ReadWritePaths"] == ["/home/pi/retinaface-pi/live"]
    assert fields["BindReadOnlyPaths"] == ["/home/pi/retinaface-pi"]  # venv/, releases/ too
    assert fields["ProtectHome"] == ["tmpfs"]  # ~/.ssh is not there
    assert fields["TasksMax"] and fields["MemoryMax"] and fields["SystemCallFilter"]
    assert fields["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]
    assert fields["CapabilityBoundingSet"] == [""]


def test_a_secret_in_the_url_stays_out_of_the_unit(tmp_path):
    unit = render_unit(StreamSettings(source=SECRET_URL), "/home/pi/retinaface-pi", "pi", "pi4")
    assert "hunter2" not in unit and "admin" not in unit
    fields = _fields(unit)
    assert fields["Description"] == [
        "retinaface-pi live face detection on rtsp://cam.local:554/live?…"
    ]
    assert fields["EnvironmentFile"] == [f"/home/pi/retinaface-pi/{ENV_FILE}"]
    assert "--source ${RETINAFACE_SOURCE} " in fields["ExecStart"][0]
    path = tmp_path / "retinaface-stream.service"
    path.write_text(unit.replace("/home/pi/retinaface-pi/venv/bin/python", shutil.which("python3")))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True)
    assert "EnvironmentFile" not in result.stderr and "RETINAFACE_SOURCE" not in result.stderr


def test_the_environment_file_is_written_0600_and_removed_for_a_plain_source(tmp_path):
    deploy_dir = tmp_path / "retinaface-pi"
    deploy_dir.mkdir()
    with open_host(LOCAL_HOST) as conn:
        write_env(conn, StreamSettings(source=SECRET_URL), str(deploy_dir))
        env = deploy_dir / ENV_FILE
        assert env.read_text() == f"RETINAFACE_SOURCE={SECRET_URL}\n"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        assert sorted(p.name for p in deploy_dir.iterdir()) == [ENV_FILE]  # no temp left
        write_env(conn, StreamSettings(source="/dev/video0"), str(deploy_dir))
        assert not env.exists()


def test_metrics_show_the_url_without_its_query():
    assert display_source(SECRET_URL) == "rtsp://cam.local:554/live?…"
    assert display_source("rtsp://u:p@cam/live") == "rtsp://cam/live"
    assert display_source("/dev/video0") == "/dev/video0"
