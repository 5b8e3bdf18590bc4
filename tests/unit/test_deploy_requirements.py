"""What fetched wheels need on the host (numpy>=1.20,<2, libgomp1, libatomic1 for onnxruntime)
is installed by deploy's venv step, which fails with a clear line before `current` switches."""

import os
import subprocess
import sys

from deploy.deploy import wheel_requirements
from deploy.render import render

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


def test_satisfied_requirements_pass_without_network(tmp_path):
    # libc6 is installed everywhere; pip is already in the venv: nothing to fetch, so the step
    # goes on to its runner check (which fails here: no runner wheel was installed).
    result = run_venv_step(tmp_path, pip_requirements=["pip"], apt_packages=["libc6"])
    assert result.returncode != 3, result.stderr
    assert "cannot install" not in result.stderr and "apt" not in result.stderr
