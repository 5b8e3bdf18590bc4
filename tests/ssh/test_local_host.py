"""The `local` host runs the same deploy workflow through the same interface, without SSH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deploy.workflow.commands import deploy


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


def test_local_runner_sees_the_packages_of_the_venv_that_runs_invoke(tmp_path, models_dir):
    """A newcomer's invoke runs in a venv; the local host's runner must see that venv's packages.

    `venv/bin/python -m venv` makes a venv of the *base* interpreter: without the shared site
    dirs the runner would miss every package installed only in the newcomer's venv.
    """
    import subprocess
    import sysconfig

    from deploy.workflow.commands import facts

    workstation = tmp_path / "workstation-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(workstation)],
        check=True,
    )
    python = workstation / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert purelib != sysconfig.get_paths()["purelib"]
    (Path(purelib) / "only_in_the_workstation_venv.py").write_text("MARK = 42\n")
    inventory = tmp_path / "inventory.yaml"
    target = tmp_path / "deploy"
    inventory.write_text(
        f"all:\n  hosts:\n    local: {{connection: local, deploy_dir: {target}, python: {python}}}\n"
    )
    done = deploy("local", str(inventory), models_dir=models_dir, log_dir=tmp_path / "logs")
    assert done.reports[0].status == "changed", done.recap()
    runner = target / "venv" / "bin" / "python"
    probe = subprocess.run(
        [
            str(runner),
            "-c",
            "import only_in_the_workstation_venv as m, retinaface, sys; "
            "print(m.MARK, retinaface.__file__.startswith(sys.prefix))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: its retinaface/ would shadow the venv's
    )
    assert probe.stdout.split() == ["42", "True"], probe.stderr
    summary = facts("local", str(inventory)).reports[0].result.summary()
    assert summary["runner"].startswith(f"{runner} ") and str(python) in summary["runner"]


def test_local_host_defaults_to_the_python_that_runs_invoke(tmp_path):
    from deploy.hosts.inventory import load_inventory

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    local: {connection: local}\n")
    assert load_inventory(str(inventory)).select("local")[0].python == sys.executable
