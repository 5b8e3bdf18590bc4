"""`invoke bundle`'s output, without hosts: reproducible archive, digests, a playbook Ansible
accepts, and host scripts that stay one word per value whatever the inventory holds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile

import yaml

from deploy.hosts.scripts import render
from deploy.workflow.bundle import HOST_SCRIPTS, write_bundle
from deploy.workflow.release import build_runner_wheel


def fake_models(folder):
    folder.mkdir()
    (folder / "fp32.onnx").write_bytes(b"not really onnx")
    digest = hashlib.sha256(b"not really onnx").hexdigest()
    manifest = {"models": {"fp32": {"file": "fp32.onnx", "sha256": digest, "bytes": 15}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bundle_is_complete_reproducible_and_accepted_by_ansible(tmp_path):
    models = fake_models(tmp_path / "models")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    runner = build_runner_wheel(tmp_path / "runner")
    bundle = write_bundle([], tmp_path / "out", models, wheels, runner_wheel=runner)
    root = bundle.path
    assert root.name == bundle.release_id and not list((tmp_path / "out").glob(".*"))
    check = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=root)
    assert check.returncode == 0
    for name in HOST_SCRIPTS:
        assert (root / "templates" / name).is_file()
    with tarfile.open(root / "files" / f"release-{bundle.release_id}.tar") as archive:
        names = sorted(member.name for member in archive.getmembers() if member.isfile())
        sums = archive.extractfile("SHA256SUMS").read().decode()
    assert names == sorted(
        ["SHA256SUMS", "models/fp32.onnx", "models/manifest.json", "probe.jpg",
         f"wheelhouse/{runner.name}"]
    )  # fmt: skip
    variables = yaml.safe_load((root / "bundle.yml").read_text())
    assert variables["rfpi_release"] == bundle.release_id
    assert sorted(line.split("  ")[1] for line in sums.splitlines()) == sorted(
        line.split(" ", 1)[1] for line in variables["rfpi_have"]
    )
    assert variables["rfpi_wheels"] == [runner.name]

    # Same inputs, same bytes: a second writer elsewhere produces the identical archive.
    again = write_bundle([], tmp_path / "again", models, wheels, runner_wheel=runner)
    tar = f"files/release-{bundle.release_id}.tar"
    assert (again.path / tar).read_bytes() == (root / tar).read_bytes()

    env = dict(os.environ, HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "atmp"))
    inventory = tmp_path / "hosts"
    inventory.write_text("pi ansible_host=127.0.0.1\n")
    syntax = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", str(inventory), str(bundle.playbook)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


def test_unpack_script_quotes_every_value(tmp_path):
    marker = tmp_path / "MARKER"
    hostile = f"{tmp_path}/x$(touch {marker})'\"; touch {marker}"
    for action in ("unpack", "commit"):
        script = render(
            "bundle_unpack.sh.j2", deploy_dir=hostile, release_id=hostile, action=action
        )
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
        subprocess.run(["bash"], input=script, text=True, capture_output=True, timeout=30)
        assert not marker.exists()
