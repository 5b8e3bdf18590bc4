"""The same release through Ansible: `invoke bundle`'s playbook run by the real `ansible-playbook`
(ansible-core from PyPI) against loopback sshd hosts, host keys checked.

First run deploys, second run changes nothing, a host that is down or whose key is not trusted
shows in Ansible's recap, and the host layout is what `invoke deploy` makes, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.workflow.bundle import write_bundle
from deploy.workflow.commands import deploy
from deploy.workflow.release import build_runner_wheel
from tests.ssh.conftest import tree_snapshot

pytestmark = pytest.mark.ssh


def ansible_playbook(lab, playbook: Path, limit: str, *extra: str) -> tuple[int, str, dict]:
    """Run ansible-playbook on the lab inventory; (exit code, output, recap per host)."""
    env = dict(
        os.environ,
        ANSIBLE_SSH_ARGS=(
            f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes "
            "-o ControlMaster=auto -o ControlPersist=30s -o ConnectTimeout=10"
        ),
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_LOCAL_TEMP=str(lab.root / "ansible-local"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(lab.inventory), str(playbook), "--limit", limit, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    output = result.stdout + result.stderr
    recap = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            recap[match.group(1)] = {
                key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))
            }
    return result.returncode, output, recap


def layout(root: Path) -> dict:
    """The deploy directory as `invoke deploy` leaves it: every entry but the venv's insides and
    deploy.json's time stamp, with contents, modes and link targets (mtimes left out)."""
    out = {}
    for key, entry in tree_snapshot(root).items():
        if key.startswith("venv/") and key != "venv/.retinaface-pi-wheels":
            continue
        if entry[0] == "file":
            data = (root / key).read_bytes()
            if key.endswith("/deploy.json"):
                record = json.loads(data)
                record.pop("deployed_at")
                data = json.dumps(record, sort_keys=True).encode()
            out[key] = ("file", entry[1], data)
        else:
            out[key] = entry[:2]
    return out


def test_playbook_deploys_like_invoke_deploy_and_is_idempotent(lab, models_dir, tmp_path):
    for name in ("pi-a", "pi-b", "pi-untrusted"):
        lab.add(name)
    lab.add("pi-down", start=False)
    for name in ("pi-a", "pi-b", "pi-down"):
        lab.trust(name)
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()

    # The reference: invoke deploy's layout on pi-a, then pi-a is wiped for Ansible.
    first = deploy(
        "pi-a",
        str(lab.inventory),
        models_dir=models_dir,
        wheels_dir=wheels,
        log_dir=lab.root / "logs",
    )
    assert first.exit_code == 0, first.recap()
    reference = layout(lab.deploy_dir("pi-a"))
    assert any(key.startswith("releases/") for key in reference)
    shutil.rmtree(lab.deploy_dir("pi-a"))

    bundle = write_bundle(
        [], lab.root / "bundles", models_dir, wheels, runner_wheel=build_runner_wheel()
    )
    assert bundle.release_id == first.reports[0].result.release_id
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle.path)
    assert check.returncode == 0

    code, output, recap = ansible_playbook(lab, bundle.playbook, "fleet")
    assert code == 4, output  # some host unreachable
    for name in ("pi-a", "pi-b"):
        assert recap[name]["failed"] == 0 and recap[name]["unreachable"] == 0, output
        assert recap[name]["changed"] >= 4, (
            output
        )  # upload, unpack, deploy.json, commit, venv, switch
    assert recap["pi-down"]["unreachable"] == 1, output
    assert recap["pi-untrusted"]["unreachable"] == 1, output
    assert "Host key verification failed" in output
    assert not lab.deploy_dir("pi-untrusted").exists() and not lab.deploy_dir("pi-down").exists()

    assert layout(lab.deploy_dir("pi-a")) == reference  # byte for byte, as invoke deploy made it
    runner = lab.deploy_dir("pi-b") / "venv" / "bin" / "python"
    probe = subprocess.run(
        [str(runner), "-B", "-m", "retinaface.runner", "--help"], capture_output=True, timeout=120
    )
    assert probe.returncode == 0

    before = {name: tree_snapshot(lab.deploy_dir(name)) for name in ("pi-a", "pi-b")}
    code, output, recap = ansible_playbook(lab, bundle.playbook, "pi-a,pi-b")
    assert code == 0, output
    for name in ("pi-a", "pi-b"):
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, output
        assert tree_snapshot(lab.deploy_dir(name)) == before[name]  # not a file touched

    # And invoke deploy sees the playbook's release as its own: nothing to do.
    again = deploy(
        "pi-a,pi-b",
        str(lab.inventory),
        models_dir=models_dir,
        wheels_dir=wheels,
        log_dir=lab.root / "logs",
    )
    assert [r.status for r in again.reports] == ["ok", "ok"], again.recap()
