"""emu-up / emu-status / emu-down on a real qemu-user armhf root filesystem, and their errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.paths import project_known_hosts
from pi_setup import emulator
from pi_setup.errors import EmulatorError
from pi_setup.rootfs import NAMESPACE_SCRIPT, mirror_url, mounts_under

from .conftest import REPO, _progress, invoke, ssh, ssh_argv


def _no_trace_left(release: str) -> None:
    rel = emulator.release_of(release)
    assert emulator.emulator_pids(rel) == []
    assert mounts_under(emulator.status(rel).rootfs) == []
    # Nothing of the namespace leaks into the host: no mount anywhere below the state root.
    assert mounts_under(emulator.state_root()) == []
    assert emulator._port_open(rel.port) is None


def test_lifecycle_bullseye(bullseye, emulators):
    """down leaves nothing; up (warm) answers over ssh as an armv7l Debian bullseye `pi` host."""
    down = invoke("emu-down", "--release", "bullseye", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "stopped pi4-emu" in down.stdout
    _no_trace_left("bullseye")
    status = invoke("emu-status", timeout=60)
    assert status.returncode == 0, status.stderr
    assert re.search(
        r"pi4-emu\s+bullseye\s+127\.0\.0\.1:2222\s+stopped\s+rootfs ready", status.stdout
    )

    began = time.monotonic()
    up = invoke("emu-up", timeout=1800)
    warm = time.monotonic() - began
    _progress(f"warm `invoke emu-up` (rootfs present): {warm:.1f} s")
    assert up.returncode == 0, up.stderr
    assert "host pi4-emu  address 127.0.0.1  port 2222" in up.stdout
    status = invoke("emu-status", timeout=60)
    assert re.search(r"pi4-emu\s+bullseye\s+127\.0\.0\.1:2222\s+running \(pid \d+\)", status.stdout)

    line = [
        x
        for x in project_known_hosts().read_text().splitlines()
        if x.startswith("[127.0.0.1]:2222 ")
    ]
    assert len(line) == 1 and line[0].split()[1] == "ssh-ed25519"

    # StrictHostKeyChecking=yes with only the project's known_hosts: no trust prompt needed.
    probe = ssh(
        bullseye,
        "uname -m; dpkg --print-architecture; python3 --version; hostname; id -un; sudo -n id -u; "
        "python3 -c 'import numpy, cv2; print(numpy.__version__, cv2.__version__)'",
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split("\n")
    assert lines[0] == "armv7l"
    assert lines[1] == "armhf"
    assert lines[2].startswith("Python 3.9.")
    assert lines[3] == "pi4-emu"
    assert lines[4] == "pi"
    assert lines[5] == "0"
    assert lines[6].split()[0] == "1.19.5" and lines[6].split()[1].startswith("4.5.1")

    # Calling up again while it runs is a no-op that still succeeds.
    again = invoke("emu-up", "--release", "bullseye", timeout=120)
    assert again.returncode == 0, again.stderr


def test_bullseye_has_torch_171(bullseye):
    out = ssh(bullseye, "python3 -c 'import torch; print(torch.__version__)'", timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("1.7.")


def test_trixie_runs_beside_bullseye(bullseye, trixie):
    """Both releases run at once on their own ports; trixie has onnxruntime 1.21 on Python 3.13."""
    out = ssh(
        trixie,
        "uname -m; dpkg --print-architecture; hostname; "
        "python3 -c 'import sys, onnxruntime; print(sys.version_info[:2], onnxruntime.__version__)'",
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[:3] == ["armv7l", "armhf", "pi4-emu-trixie"]
    assert lines[3] == "(3, 13) 1.21" or lines[3].startswith("(3, 13) 1.21.")
    assert ssh(bullseye, "hostname", timeout=120).stdout.strip() == "pi4-emu"
    statuses = {st.release: st for st in emulator.status_all()}
    assert statuses["bullseye"].running and statuses["trixie"].running
    assert statuses["bullseye"].pid != statuses["trixie"].pid


def test_down_kills_sessions_too(trixie):
    """A process left running by an ssh session dies with emu-down; no mount is left."""
    sleeper = subprocess.Popen(
        [*ssh_argv(trixie), "sleep 600"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rel = emulator.release_of("trixie")
        deadline = time.monotonic() + 120
        while len(emulator.emulator_pids(rel)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(emulator.emulator_pids(rel)) >= 3, "the ssh session did not start"
        stopped = emulator.down("trixie")
        assert [st.release for st in stopped] == ["trixie"]
        _no_trace_left("trixie")
        assert sleeper.wait(timeout=60) != 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
    assert emulator.down("trixie") == []


# ---------------------------------------------------------------- errors name the fix


def test_unknown_release_is_one_clear_line():
    out = invoke("emu-up", "--release", "buster", timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "error: unknown emulator release 'buster' (known: bookworm-arm64, bullseye, trixie, "
        "trixie-arm64, trixie-arm64-pi5)"
    )


def test_not_root_names_the_fix(tmp_path):
    code = "from pi_setup import emulator; emulator.up('bullseye')"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    tmp_path.chmod(0o777)
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "EmulatorError: the emulated Pi needs root" in out.stderr
    assert 'sudo env "PATH=$PATH" invoke emu-up' in out.stderr


def test_binfmt_not_mountable_names_the_fix(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "binfmt_misc"
    not_a_dir.write_text("a file, so mount fails\n")
    monkeypatch.setattr(emulator, "BINFMT_DIR", not_a_dir)
    with pytest.raises(
        EmulatorError, match=r"binfmt_misc is not mounted .* could not be mounted"
    ) as err:
        emulator.check_host(0)
    assert f"mount -t binfmt_misc binfmt_misc {not_a_dir}" in str(err.value)


def test_qemu_arm_not_registered_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "status").write_text("enabled\n")  # binfmt_misc "mounted", but no qemu-arm entry
    monkeypatch.setattr(emulator, "BINFMT_DIR", tmp_path)
    with pytest.raises(EmulatorError, match="qemu-arm is not registered") as err:
        emulator.check_host(0)
    assert "apt-get install qemu-user-static binfmt-support" in str(err.value)
    assert "update-binfmts --enable qemu-arm" in str(err.value)


def test_not_enough_disk_names_the_fix(tmp_path):
    with pytest.raises(EmulatorError, match="not enough disk for the emulated Pi") as err:
        emulator.check_host(10**18, [tmp_path / "emu"])
    assert "RETINAFACE_PI_EMU_ROOT" in str(err.value) and str(tmp_path / "emu") in str(err.value)


def test_busy_port_is_refused(bullseye):
    """Starting on a port someone else holds fails clearly instead of hanging."""
    rel = emulator.release_of("bullseye")
    with pytest.raises(EmulatorError, match="port 2222 on 127.0.0.1 is already in use"):
        emulator.start(rel)  # our own running sshd holds the port


def test_namespace_script_is_valid_bash(tmp_path):
    script = tmp_path / "ns.sh"
    script.write_text(NAMESPACE_SCRIPT)
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0


def test_cache_key_follows_the_package_list():
    rel = emulator.release_of("bullseye")
    changed = emulator.Release(rel.name, rel.host, rel.port, rel.base, rel.extra + ("htop",))
    assert emulator.cache_key(rel) == emulator.cache_key(emulator.release_of("bullseye"))
    assert emulator.cache_key(rel) != emulator.cache_key(changed)
    assert emulator.tarball_path(rel).parent == Path(emulator.emu_cache_dir())


def test_mirror_is_read_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("RETINAFACE_PI_MIRROR", raising=False)
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    oneline = tmp_path / "sources.list"
    oneline.write_text(
        "# deb http://old.example/debian bullseye main\ndeb [arch=amd64] http://x.example/debian bookworm main\n"
    )
    other = tmp_path / "cloud.list"
    other.write_text("deb https://packages.example.com/apt cloud-sdk main\n")
    assert mirror_url([other, deb822, oneline]) == "http://mirror.example/debian"
    assert mirror_url([oneline]) == "http://x.example/debian"
    assert mirror_url([other]) == "http://deb.debian.org/debian"
    monkeypatch.setenv("RETINAFACE_PI_MIRROR", "http://local.example/debian")
    assert mirror_url([deb822]) == "http://local.example/debian"


def test_host_key_line_replaces_only_its_own(tmp_path, monkeypatch):
    known = tmp_path / "known_hosts"
    known.write_text(
        "[127.0.0.1]:2222 ssh-ed25519 OLD\n[127.0.0.1]:22222 ssh-ed25519 KEEP1\npi4 ssh-rsa KEEP2\n"
    )
    monkeypatch.setenv("RETINAFACE_PI_KNOWN_HOSTS", str(known))
    monkeypatch.setenv("RETINAFACE_PI_EMU_ROOT", str(tmp_path / "emu"))
    keydir = tmp_path / "emu" / "bullseye" / "rootfs" / "etc" / "ssh"
    keydir.mkdir(parents=True)
    (keydir / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 NEW root@pi4-emu\n")
    assert emulator.record_host_key(emulator.release_of("bullseye")) == known
    assert known.read_text().splitlines() == [
        "[127.0.0.1]:22222 ssh-ed25519 KEEP1",
        "pi4 ssh-rsa KEEP2",
        "[127.0.0.1]:2222 ssh-ed25519 NEW",
    ]


def test_credentials_handler_is_registered_beside_debians(tmp_path, monkeypatch):
    """Without C in qemu-arm's flags, a second handler with the same magic and +OC is written."""
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-arm").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\noffset 0\n"
        "magic 7f454c4601010100000000000000000002002800\n"
        "mask ffffffffffffff00fffffffffffffffffeffffff\n"
    )
    (tmp_path / "register").write_text("")
    monkeypatch.setattr(emulator, "BINFMT_DIR", tmp_path)
    emulator._ensure_credentials()
    line = (tmp_path / "register").read_text()
    name, kind, offset, magic, mask, interpreter, flags = line.split(":")[1:]
    assert (name, kind, offset, flags) == ("retinaface-pi-arm", "M", "0", "CFOP")
    assert (
        magic == "\\x7f\\x45\\x4c\\x46" + "\\x01\\x01\\x01" + "\\x00" * 9 + "\\x02\\x00\\x28\\x00"
    )
    assert mask.startswith("\\xff\\xff") and len(mask) == 20 * 4
    assert interpreter == "/usr/libexec/qemu-binfmt/arm-binfmt-P"
    # Already there (or Debian's has C): nothing is written again.
    (tmp_path / "register").write_text("")
    (tmp_path / "retinaface-pi-arm").write_text("enabled\nflags: POCF\n")
    emulator._ensure_credentials()
    assert (tmp_path / "register").read_text() == ""


def test_sudo_works_inside(bullseye):
    """The pi user's passwordless sudo really becomes root (setuid under qemu needs the C flag)."""
    out = ssh(bullseye, "sudo -n id -u && sudo -n touch /root/.probe && sudo -n ls /root/.probe")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "/root/.probe"]
