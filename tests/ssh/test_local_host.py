"""The `local` host runs the same deploy workflow through the same interface, without SSH."""

from __future__ import annotations

import os
import sys

from deploy.commands import deploy


def test_local_host_deploy_and_noop(tmp_path, models_dir):
    inventory = tmp_path / "inventory.yaml"
    target = tmp_path / "deploy"
    inventory.write_text(
        "all:\n  hosts:\n"
        f"    local: {{connection: local, deploy_dir: {target}, python: {sys.executable}}}\n"
    )
    first = deploy(None, str(inventory), models_dir=models_dir, log_dir=tmp_path / "logs")
    assert first.reports[0].status == "changed", first.recap()
    release = first.reports[0].result.release_id
    assert os.readlink(target / "current") == f"releases/{release}"
    assert (target / "venv" / "bin" / "python").exists()
    again = deploy("local", str(inventory), models_dir=models_dir, log_dir=tmp_path / "logs")
    assert again.reports[0].status == "ok" and again.reports[0].result.bytes_sent == 0

    # A venv whose pip step never finished (no marker) is made afresh on the next deploy.
    (target / "venv" / ".retinaface-pi-wheels").unlink()
    (target / "venv" / "bin" / "pip").unlink()
    repair = deploy("local", str(inventory), models_dir=models_dir, log_dir=tmp_path / "logs")
    outcome = repair.reports[0].result
    assert repair.reports[0].status == "changed", repair.recap()
    assert outcome.venv_created and outcome.uploaded == [] and not outcome.switched
    assert (target / "venv" / "bin" / "pip").exists()
