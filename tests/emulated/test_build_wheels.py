"""A real wheel build on the emulated Pi through the build-wheels machinery.

The pi-probe C extension (tests/fixtures/pi_probe, made a local git repository here) is sent to
pi4-emu as a git bundle, built by the rendered recipe (apt build deps, detached setsid run, log,
state markers), interrupted mid-build and resumed, pulled into a wheels directory with the
manifest, then deployed to pi4-emu, where it imports and runs.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import replace

from deploy.hosts.connection import open_host
from deploy.hosts.inventory import load_inventory
from pi_setup import build_wheels as bw
from pi_setup.rootfs import CHROOT_ENV, in_namespace
from tests.fixtures.pi_probe_repo import make_probe_repo

from .conftest import REPO, ssh

WORK = "~/retinaface-pi-build-test"
WHEEL = "pi_probe-0.1.0-cp39-cp39-linux_armv7l.whl"


def _note(message: str) -> None:
    sys.__stderr__.write(f"\n[build {time.strftime('%H:%M:%S')}] {message}")
    sys.__stderr__.flush()


def _provision_if_sudo_is_broken(st) -> None:
    """Under qemu-user, sudo needs binfmt's C (credentials) flag; without it the recipe's apt
    step cannot become root. Then install the same packages as root from outside, the way the
    emulator installs its own packages, and let the recipe find them present."""
    if ssh(st, "sudo -n true").returncode == 0:
        return  # the recipe installs them itself
    packages = " ".join(dict.fromkeys(bw.BASE_APT + bw.PI_PROBE.apt))
    missing = ssh(
        st,
        f"for p in {packages}; do dpkg-query -W -f='${{Status}}' $p 2>/dev/null "
        f"| grep -q 'install ok installed' || echo $p; done",
    ).stdout.split()
    if not missing:
        return
    _note(f"sudo does not work in pi4-emu (binfmt without C): apt-get install {missing} as root")
    script = "apt-get update -q && apt-get install -y -q --no-install-recommends " + " ".join(
        missing
    )
    argv = in_namespace(st.rootfs, st.host, ["/bin/sh", "-c", script])
    done = subprocess.run(
        argv, env=CHROOT_ENV, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _with_delay(plan: bw.BuildPlan, seconds: int) -> bw.BuildPlan:
    """The same plan, with the probe's setup.py sleeping first (a known point to interrupt)."""
    package = plan.packages[0]
    env = dict(package.env, PI_PROBE_BUILD_DELAY=str(seconds))
    return replace(plan, packages=(replace(package, env=tuple(sorted(env.items()))),))


def _wait_for_stage(host, stage: str, timeout: float) -> bw.BuildStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open_host(host) as conn:  # a fresh connection each time: the build must not care
            status = bw.read_status(conn, WORK)
        if status.stage == stage or status.state != "running":
            return status
        time.sleep(3)
    raise AssertionError(f"stage {stage} not reached in {timeout} s")


def _elf_header(data: bytes) -> tuple:
    """(class, endianness, machine) of an ELF file: (1, 1, 40) is 32-bit little-endian ARM."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    machine = struct.unpack("<H", data[18:20])[0]
    return data[4], data[5], machine


def test_probe_wheel_built_on_emulated_pi_resumes_pulls_and_deploys(bullseye, tmp_path):
    host = load_inventory().select("pi4-emu")[0]
    repo = make_probe_repo(tmp_path / "pi_probe")
    wheels = tmp_path / "wheels"

    _provision_if_sudo_is_broken(bullseye)
    with open_host(host) as conn:
        conn.run(f"rm -rf {WORK}", timeout=120)
        info = bw.probe_builder(conn)
        assert (info.dpkg_arch, info.machine, info.os_codename) == ("armhf", "armv7l", "bullseye")
        assert info.emulated, "qemu-user: /proc/cpuinfo is the host's"
        plan = bw.plan_for_builder(info, ["pi-probe"], jobs=2, sources={"pi-probe": str(repo)})
        script = bw.render_script(plan)
        assert "-mfpu=neon" in script and "gcc" in script and "python3-dev" in script
        first = bw.start_build(conn, _with_delay(plan, 600), WORK, {"pi-probe": repo})
    # The connection is gone; the build goes on (apt installs gcc and python3-dev first).
    _note(f"build started on pi4-emu (pid {first.pid}); waiting for the compile stage")
    status = _wait_for_stage(host, "pi-probe:build", timeout=1800)
    assert (status.state, status.stage) == ("running", "pi-probe:build"), status

    with open_host(host) as conn:
        assert bw.stop_build(conn, WORK) == first.pid
        deadline = time.monotonic() + 60
        while bw.read_status(conn, WORK).state == "running" and time.monotonic() < deadline:
            time.sleep(1)
        status = bw.read_status(conn, WORK)
        assert (status.state, status.stage) == ("interrupted", "pi-probe:build"), status
        assert not status.wheels

        _note("interrupted in the compile stage; resuming")
        again = bw.start_build(conn, plan, WORK, {"pi-probe": repo})
        assert not again.already_running and again.pid != first.pid
        status = bw.wait_build(conn, WORK, timeout=1200, poll=3)
        log = conn.run(f"cat {WORK}/build.log", timeout=60).stdout
        assert status.state == "finished", log[-3000:]
        assert "keeping the source and build tree" in log
        assert status.wheels == (WHEEL,)

        pulled = bw.pull_wheels(conn, WORK, wheels, builder=bw.builder_facts(conn))

    assert [p.path.name for p in pulled] == [WHEEL]
    with zipfile.ZipFile(pulled[0].path) as archive:
        (so_name,) = [n for n in archive.namelist() if n.endswith(".so")]
        assert so_name == "pi_probe.cpython-39-arm-linux-gnueabihf.so"
        assert _elf_header(archive.read(so_name)) == (1, 1, 40)  # ELF 32-bit LSB, ARM
    manifest = json.loads((wheels / "manifest.json").read_text())
    entry = manifest["wheels"][WHEEL]
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert entry["sha256"] == pulled[0].sha256 and entry["size"] == pulled[0].size
    assert entry["source"]["commit"] == commit and entry["source"]["ref"] == "v0.1.0"
    assert entry["builder"]["host"] == "pi4-emu" and entry["builder"]["arch"] == "armhf"
    assert entry["builder"]["os_codename"] == "bullseye"
    assert entry["emulated"] is True and isinstance(entry["duration_s"], int)
    assert entry["log"].startswith("pi4-emu:/") and entry["log"].endswith("/build.log")
    # the pull went through the wheel gate (ELF checks, install and self-check on pi4-emu's root)
    assert entry["gate"]["target"] == "bullseye" and entry["gate"]["self_check"] == "42 32"

    # build-status from the command line, like a user
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "build-status", "--builder", "pi4-emu"]
        + ["--work-dir", WORK],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "pi4-emu: finished; stage finished" in result.stdout
    assert f"finished: {WHEEL}" in result.stdout

    # deploy picks the wheel (tag cp39-cp39-linux_armv7l matches pi4-emu) and installs it
    from deploy.workflow.commands import deploy

    outcome = deploy("pi4-emu", wheels_dir=wheels)
    assert outcome.exit_code == 0, outcome.recap()
    check = ssh(
        bullseye,
        "~/retinaface-pi/venv/bin/python -c "
        "'import pi_probe; print(pi_probe.add(2, 40), pi_probe.bits(), pi_probe.__file__)'",
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[:2] == ["42", "32"]
    assert "/retinaface-pi/venv/" in check.stdout


def test_cli_build_wheels_follow_pulls_into_wheels_dir(bullseye, tmp_path):
    """`invoke build-wheels --follow` as a user runs it: starts, streams the log, pulls."""
    repo = make_probe_repo(tmp_path / "pi_probe")
    work = "~/retinaface-pi-build-cli"
    wheels = tmp_path / "wheels"
    ssh(bullseye, f"rm -rf {work}")
    argv = [sys.executable, "-m", "invoke", "build-wheels", "--builder", "pi4-emu"]
    argv += ["--packages", "pi-probe", "--source", str(repo), "--follow"]
    argv += ["--work-dir", work, "--wheels-dir", str(wheels)]
    result = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "stage pi-probe:build" in result.stdout  # the streamed log
    assert "pi4-emu: started on emulated bullseye cp39" in result.stdout
    assert f"{wheels / WHEEL}" in result.stdout
    manifest = json.loads((wheels / "manifest.json").read_text())
    assert manifest["wheels"][WHEEL]["source"]["repo"] == f"workstation:{repo.resolve()}"


def test_fetch_ort_takes_os_and_python_from_emulated_pi_facts(bullseye, tmp_path):
    """--host pi4-emu → facts say bullseye / cp39 / armhf → the cp39 wheel of the lock.
    Served from loopback with the test lock: nothing off this machine is contacted."""
    from tests.fixtures.fake_ort_wheel import NAME, serve_fixture_wheel

    with serve_fixture_wheel() as httpd:
        port = httpd.server_address[1]
        argv = [sys.executable, "-m", "invoke", "fetch-ort", "--host", "pi4-emu"]
        argv += ["--lock", str(REPO / "tests/fixtures/ort_lock.yaml")]
        argv += ["--mirror", f"http://127.0.0.1:{port}/good", "--wheels-dir", str(tmp_path)]
        result = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert NAME == "onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl"
    assert f"pi4-emu: {tmp_path / NAME}" in result.stdout
    assert httpd.requests == [(f"/good/bullseye/{NAME}", None)]


def test_setup_pi_on_emulated_pi_is_idempotent(bullseye):
    from pi_setup.setup_pi import setup_pi

    # Work to do whatever ran before: no venv (a deploy fixture that comes later sees the venv's
    # wheel marker gone and deploys again).
    gone = ssh(bullseye, "rm -rf ~/retinaface-pi/venv")
    assert gone.returncode == 0, gone.stderr
    (checked,) = setup_pi("pi4-emu", check=True)
    assert any(line.startswith("create venv ") for line in checked.would), checked.would
    (first,) = setup_pi("pi4-emu")
    assert not first.would
    assert len(first.changed) == len(checked.would)  # check mode predicted exactly this
    assert any(line.startswith("created venv ") for line in first.changed), first.changed
    (second,) = setup_pi("pi4-emu")
    assert not second.changed and not second.would
    assert any(line.startswith("apt packages") for line in second.ok)
    assert any(line.startswith("venv ") for line in second.ok)
    check = ssh(bullseye, "dpkg-query -W -f='${Status}\\n' libgomp1 libatomic1")
    assert check.stdout.count("install ok installed") == 2
