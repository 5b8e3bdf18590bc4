"""What fetched wheels need on the host (numpy>=1.20,<2, libgomp1, libatomic1 for onnxruntime)
is installed by deploy's venv step, which fails with a clear line before `current` switches.
pip requirements come from the host's own packages or the release's wheelhouse, never an index."""

import os
import subprocess
import sys
import zipfile

from deploy.hosts.facts import parse_facts
from deploy.hosts.scripts import render
from deploy.workflow.push import missing_requirements
from pi_setup.wheelhouse import wheel_requirements

ORT_WHEEL = "onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl"


def test_onnxruntime_wheels_bring_numpy_and_libraries():
    pip, apt = wheel_requirements([ORT_WHEEL, "retinaface_pi_runner-0.1.0-py3-none-any.whl"])
    assert pip == ["numpy>=1.20,<2"]
    assert apt == ["libgomp1", "libatomic1"]
    assert wheel_requirements(["retinaface_pi_runner-0.1.0-py3-none-any.whl"]) == ([], [])


def run_venv_step(tmp_path, **context):
    context.setdefault("share_site", False)
    script = render(
        "deploy_venv.sh.j2",
        deploy_dir=str(tmp_path / "deploy"),
        wheelhouse=str(tmp_path / "wheelhouse"),
        python=sys.executable,
        install=[],
        marker=[],
        create=True,
        **context,
    )
    env = dict(
        os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2"
    )
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_missing_apt_package_that_cannot_be_installed_stops_the_step(tmp_path):
    result = run_venv_step(
        tmp_path, pip_requirements=[], apt_packages=["retinaface-pi-no-such-package"]
    )
    assert result.returncode == 3
    assert "retinaface-pi-no-such-package" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "deploy" / "venv" / ".retinaface-pi-wheels").exists()


def test_an_unsatisfiable_pip_requirement_stops_the_step(tmp_path):
    result = run_venv_step(
        tmp_path, pip_requirements=["retinaface-pi-no-such-dist==9.9"], apt_packages=[]
    )
    assert result.returncode == 3
    assert (
        "cannot install retinaface-pi-no-such-dist==9.9" in result.stderr.strip().splitlines()[-1]
    )
    assert not (tmp_path / "deploy" / "venv" / ".retinaface-pi-wheels").exists()


def pi_facts(numpy_line):
    return parse_facts(
        "pi4-emu",
        "python_tag=cp39\nplatform_tag=linux_armv7l\nemulated=qemu-user\n" + numpy_line,
    )


def test_numpy_for_onnxruntime_comes_from_the_host_or_wheels_dir():
    old, new = pi_facts("numpy=1.19.5\n"), pi_facts("numpy=1.24.2\n")
    assert old.numpy == "1.19.5" and old.emulated == "qemu-user"
    message = missing_requirements("pi4-emu", old, [ORT_WHEEL])
    assert message == (
        f"pi4-emu: {ORT_WHEEL} needs numpy>=1.20,<2; the host has numpy 1.19.5 and wheels/ has "
        "no numpy wheel for cp39-cp39-linux_armv7l that fits (build it: invoke build-wheels "
        "--builder cross --packages numpy); deploy uses no package index"
    )
    shipped = ["numpy-1.24.4-cp39-cp39-linux_armv7l.whl", ORT_WHEEL]
    assert missing_requirements("pi4-emu", old, shipped) is None
    assert missing_requirements("pi4-emu", new, [ORT_WHEEL]) is None
    too_new = ["numpy-2.0.1-cp39-cp39-linux_armv7l.whl", ORT_WHEEL]
    assert "needs numpy>=1.20,<2" in missing_requirements("pi4-emu", old, too_new)
    assert "host has numpy none" in missing_requirements("pi4-emu", pi_facts(""), [ORT_WHEEL])
    assert pi_facts("numpy=1.19.5; rm -rf /\n").numpy is None  # the host is not trusted


def tiny_wheel(folder, name, version):
    """A pure-Python wheel NAME-VERSION in FOLDER (a stand-in for a wheelhouse's numpy)."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def test_requirements_install_from_the_wheelhouse_with_no_index(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    tiny_wheel(wheelhouse, "retinaface_pi_dep", "1.2")
    result = run_venv_step(
        tmp_path, pip_requirements=["retinaface_pi_dep>=1.1,<2"], apt_packages=[]
    )
    assert "cannot install" not in result.stderr, result.stderr
    python = tmp_path / "deploy" / "venv" / "bin" / "python"
    check = subprocess.run(
        [str(python), "-c", "import retinaface_pi_dep as d; print(d.VERSION)"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "1.2"


def test_satisfied_requirements_pass_without_network(tmp_path):
    # libc6 is installed everywhere; pip is already in the venv: nothing to fetch, so the step
    # goes on to its runner check (which fails here: no runner wheel was installed).
    result = run_venv_step(tmp_path, pip_requirements=["pip"], apt_packages=["libc6"])
    assert "cannot install" not in result.stderr and "apt" not in result.stderr
    # It stopped at the runner check, the step after the requirements, and nowhere earlier:
    # either no retinaface in the venv, or one from outside it (this checkout, via the path).
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, result.stderr
    assert "No module named retinaface" in last or last.startswith("retinaface comes from "), last
