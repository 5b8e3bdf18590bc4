"""What a hostile host can do to a deploy (real sshd on loopback, crafted files on the host).

Each test plants what a compromised Pi (or another user on it) could leave in the deploy
directory, or serves keys the way an impostor would, and checks the tool refuses or ignores it.
"""

from __future__ import annotations

import os

import pytest

from deploy.commands import deploy

pytestmark = pytest.mark.ssh


def run_deploy(lab, host, models_dir, **kwargs):
    return deploy(
        host, str(lab.inventory), models_dir=models_dir, log_dir=lab.root / "logs", **kwargs
    )


def test_a_release_name_with_a_bar_does_not_break_the_state_probe(lab, models_dir):
    """`releases/x|y` once broke the probe's sed program, and every deploy after it."""
    lab.add("pi-bar")
    lab.trust("pi-bar")
    planted = lab.deploy_dir("pi-bar") / "releases" / "x|y"
    planted.mkdir(parents=True)
    (planted / "SHA256SUMS").write_text("00  models/a|b.onnx\n")
    result = run_deploy(lab, "pi-bar", models_dir)
    assert result.exit_code == 0, result.recap()
    current = os.readlink(lab.deploy_dir("pi-bar") / "current")
    assert current == f"releases/{result.reports[0].result.release_id}"
