"""The wheel build recipe: golden render, bash -n, shellcheck, plans, status parsing, and the
detached run / resume / pull / manifest machinery on the local host with the pi-probe package."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.hosts.connection import open_host
from deploy.hosts.inventory import LOCAL_HOST
from pi_setup import build_wheels as bw
from pi_setup import setup_pi
from pi_setup.errors import WheelError
from tests.fixtures.golden import check_golden
from tests.fixtures.pi_probe_repo import make_probe_repo

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "build_wheels_torch.sh"


def torch_script() -> str:
    """What `invoke build-wheels --builder pi4 --print-script` prints for a bullseye Pi 4."""
    return bw.render_script(bw.make_plan(["torch", "torchvision"], jobs=2))


def test_golden_torch_recipe():
    check_golden(GOLDEN.name, torch_script())


def test_torch_recipe_says_what_the_issue_asks():
    script = torch_script()
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    for needle in (
        "libopenblas-dev",
        "libblas-dev",
        "m4",
        "cmake",
        "cython3",
        "python3-yaml",
        "python3-setuptools",
        "libjpeg-dev",
        "libpng-dev",
        "git clone --recursive https://github.com/pytorch/pytorch",
        "checkout --quiet v1.7.0",
        "checkout --quiet v0.8.1",
        "submodule update --init --recursive",
        "USE_CUDA=0",
        "USE_DISTRIBUTED=0",
        "USE_MKLDNN=0",
        "BUILD_TEST=0",
        "MAX_JOBS=2",
        "PYTORCH_BUILD_VERSION=1.7.0",
        "PYTORCH_BUILD_NUMBER=1",
        "BUILD_VERSION=0.8.1",
        "NEED_MB=3584",
        "rerun with --add-swap",
    ):
        assert needle in script, needle
    assert "-mfpu=neon" not in script  # native builder: CMake detects NEON itself
    # torch is built and installed into the build venv before torchvision is built
    torch_install = script.index('stage "$name:install"', script.index("name=torch\n"))
    assert torch_install < script.index("name=torchvision\n")


def test_emulated_and_swap_variants():
    script = bw.render_script(bw.make_plan(["torch"], jobs=4, emulated=True, add_swap=True))
    assert '"CFLAGS=${CFLAGS:-} -mfpu=neon -D__NEON__"' in script
    assert "MAX_JOBS=4" in script and "NEED_MB=6144" in script
    assert "mkswap" in script and "swapon" in script and "rerun with --add-swap" not in script
    buster = bw.render_script(bw.make_plan(["torch"], os_codename="buster"))
    assert "USE_XNNPACK" not in buster and "USE_XNNPACK=0" in torch_script()


@pytest.mark.parametrize(
    "plan",
    [
        bw.make_plan(["torch", "torchvision"]),
        bw.make_plan(["torchvision"], jobs=4, emulated=True, add_swap=True),
        bw.make_plan(["pi-probe"], sources={"pi-probe": "/srv/probe it"}, apt=False),
    ],
    ids=["torch", "emulated-swap", "probe-no-apt"],
)
def test_rendered_scripts_pass_bash_n_and_shellcheck(plan, tmp_path):
    path = tmp_path / "build.sh"
    path.write_text(bw.render_script(plan))
    subprocess.run(["bash", "-n", str(path)], check=True)
    check = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_plan_resolution_and_errors():
    plan = bw.make_plan(["torchvision"])
    assert [p.name for p in plan.packages] == ["torch", "torchvision"]
    plan = bw.make_plan(["torchvision", "torch"])
    assert [p.name for p in plan.packages] == ["torch", "torchvision"]
    with pytest.raises(WheelError, match="unknown package 'tensorflow' .*known: torch"):
        bw.make_plan(["tensorflow"])
    with pytest.raises(WheelError, match="pi-probe: has no default source; give --source"):
        bw.make_plan(["pi-probe"])
    with pytest.raises(WheelError, match="--jobs 0"):
        bw.make_plan(["torch"], jobs=0)
    with pytest.raises(WheelError, match="not being built"):
        bw.make_plan(["torch"], sources={"torchvision": "/x"})
    source = bw.make_plan(["torch"], sources={"torch": "/src/py torch"})
    assert "git clone --recursive '/src/py torch'" in bw.render_script(source)


def test_parse_sources():
    assert bw.parse_sources("/src/probe", ["pi-probe"]) == {"pi-probe": "/src/probe"}
    assert bw.parse_sources("torch=/a,torchvision=https://x/v.git", ["torch", "torchvision"]) == {
        "torch": "/a",
        "torchvision": "https://x/v.git",
    }
    with pytest.raises(WheelError, match="name=DIR"):
        bw.parse_sources("/a", ["torch", "torchvision"])


def test_parse_status():
    out = "\n".join(
        [
            "now 1100",
            "pid 42 no",
            "wheel torch-1.7.0-cp39-cp39-linux_armv7l.whl",
            "state 900 start jobs=2 pid=41",
            "state 901 commit torch aaaa",
            "state 950 failed torch:build rc=1",
            "state 1000 start jobs=2 pid=42",
            "state 1001 stage torch:build",
            "state 1050 built torch seconds=49",
            "state 1051 done torch",
            "state 1052 stage torchvision:clone",
        ]
    )
    status = bw.parse_status(out)
    assert status.state == "interrupted" and status.stage == "torchvision:clone"
    assert status.started == 1000 and status.elapsed == 52
    assert status.commits == {"torch": "aaaa"} and status.seconds == {"torch": 49}
    assert status.done == ("torch",)
    running = bw.parse_status(out.replace("pid 42 no", "pid 42 yes"))
    assert running.state == "running" and running.elapsed == 100
    assert bw.parse_status("now 5\npid none no").state == "not-started"


# --- the machinery, for real, on this machine (connection: local) -----------------------


def _probe_plan(repo: Path, delay: float = 0.0) -> bw.BuildPlan:
    plan = bw.make_plan(["pi-probe"], jobs=2, sources={"pi-probe": str(repo)}, apt=False)
    if delay:
        package = plan.packages[0]
        env = dict(package.env, PI_PROBE_BUILD_DELAY=str(delay))
        plan = bw.replace(plan, packages=(bw.replace(package, env=tuple(sorted(env.items()))),))
    return plan


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_detached_build_interrupt_resume_pull_and_manifest(tmp_path):
    """Builds pi-probe's C extension here: needs gcc and libc6-dev (.ci/run installs them)."""
    repo = make_probe_repo(tmp_path / "repo")
    work = str(tmp_path / "builder")
    wheels = tmp_path / "wheels"
    with open_host(LOCAL_HOST) as conn:
        started = bw.start_build(
            conn, _probe_plan(repo, delay=30), work, local_sources={"pi-probe": repo}
        )
        assert not started.already_running and (Path(work) / "build.pid").exists()
        # the build is detached: this connection returned while it runs
        _wait_for(lambda: bw.read_status(conn, work).stage == "pi-probe:build")
        again = bw.start_build(conn, _probe_plan(repo), work, local_sources={"pi-probe": repo})
        assert again.already_running and again.pid == started.pid
        assert bw.stop_build(conn, work) == started.pid
        _wait_for(lambda: bw.read_status(conn, work).state != "running", timeout=20)
        status = bw.read_status(conn, work)
        assert (status.state, status.stage) == ("interrupted", "pi-probe:build")
        with pytest.raises(WheelError, match="no finished wheel .*interrupted at pi-probe:build"):
            bw.pull_wheels(conn, work, wheels)

        # rerun: resumes with the kept tree and finishes
        bw.start_build(conn, _probe_plan(repo), work, local_sources={"pi-probe": repo})
        status = bw.wait_build(conn, work, timeout=120, poll=0.2)
        assert status.state == "finished", (Path(work) / "build.log").read_text()[-2000:]
        log = (Path(work) / "build.log").read_text()
        assert "keeping the source and build tree" in log
        assert isinstance(status.elapsed, int) and status.elapsed >= 0  # recorded, not timed

        # The gate refuses this x86 wheel before it reaches the wheels folder: one line.
        with pytest.raises(WheelError) as refused:
            bw.pull_wheels(conn, work, wheels, builder={"machine": "x86_64"})
        assert str(refused.value).startswith("gate: pi_probe-0.1.0-cp")
        assert "arch check failed: pi_probe" in str(refused.value)
        assert "EM_X86_64 64-bit, expected ARM 32-bit EABI5 hard-float" in str(refused.value)
        assert "\n" not in str(refused.value)
        assert list(wheels.iterdir()) == []  # nothing added, no scratch left

        # Past the gate (only tests do that: this builder is x86): the manifest bookkeeping.
        pulled = bw.pull_wheels(conn, work, wheels, builder={"machine": "x86_64"}, gate=False)
        assert len(pulled) == 1 and pulled[0].copied
        wheel = pulled[0].path
        assert wheel.name.startswith("pi_probe-0.1.0-cp")
        with zipfile.ZipFile(wheel) as archive:
            assert any(n.startswith("pi_probe") and n.endswith(".so") for n in archive.namelist())
        manifest = json.loads((wheels / "manifest.json").read_text())
        entry = manifest["wheels"][wheel.name]
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert entry["sha256"] == pulled[0].sha256 and entry["size"] == wheel.stat().st_size
        assert entry["source"] == {
            "repo": f"workstation:{repo.resolve()}",
            "ref": "v0.1.0",
            "commit": commit,
        }
        assert entry["builder"] == {"host": "local", "machine": "x86_64"}
        assert isinstance(entry["duration_s"], int)
        assert entry["log"] == f"local:{work}/build.log"

        # a third run skips the finished wheel; a second pull copies nothing
        bw.start_build(conn, _probe_plan(repo), work, local_sources={"pi-probe": repo})
        status = bw.wait_build(conn, work, timeout=60, poll=0.2)
        assert (
            status.state == "finished"
            and "skip pi-probe (wheel exists" in (Path(work) / "build.log").read_text()
        )
        assert not bw.pull_wheels(conn, work, wheels, gate=False)[0].copied
        text = "".join(bw.follow_log(conn, work, poll=0.1, from_start=True))
        assert text.rstrip().endswith("finished")


# --- setup-pi ------------------------------------------------------------------------------


@pytest.mark.parametrize("release", sorted(setup_pi.RUNTIME_APT))
def test_setup_script_per_release_passes_shellcheck(release, tmp_path):
    path = tmp_path / "setup.sh"
    path.write_text(setup_pi.render_setup(release, "/home/pi/retinaface-pi", swap_mb=2048))
    subprocess.run(["bash", "-n", str(path)], check=True)
    check = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    text = path.read_text()
    assert "libgomp1" in text and "libatomic1" in text and "SWAP_MB=2048" in text
    with pytest.raises(WheelError, match="no runtime package list for OS 'jessie'"):
        setup_pi.apt_packages("jessie")


def test_setup_check_mode_changes_nothing_then_creates_the_venv(tmp_path):
    host = replace(LOCAL_HOST, deploy_dir=str(tmp_path / "deploy"))
    with open_host(host) as conn:
        result = setup_pi.setup_host(conn, check=True)
        assert "create venv" in " ".join(result.would) and not result.changed
        assert not (tmp_path / "deploy").exists()
