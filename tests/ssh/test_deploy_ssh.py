"""Deploy over real SSH (OpenSSH sshd on 127.0.0.1): first deploy, no-op, changed model, host keys,
an unreachable fleet member, a server killed mid-upload, --check, and the runner on the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.hosts.connection import open_host
from deploy.hosts.errors import ChangedHostKeyError
from deploy.hosts.inventory import load_inventory
from deploy.hosts.trust import trust_host
from deploy.workflow.commands import deploy
from retinaface.files import sha256_file
from tests.paths import REPO
from tests.ssh.conftest import tree_snapshot

pytestmark = pytest.mark.ssh


def run_deploy(lab, host, models_dir, **kwargs):
    return deploy(
        host, str(lab.inventory), models_dir=models_dir, log_dir=lab.root / "logs", **kwargs
    )


def changed_models(models_dir: Path, dest: Path, note: str = "changed") -> Path:
    """A copy of the models whose fp32.onnx differs (a new doc string), manifest updated."""
    import onnx

    shutil.copytree(models_dir, dest)
    model = onnx.load(str(dest / "fp32.onnx"))
    model.doc_string = f"retinaface-pi test: {note}"
    onnx.save(model, str(dest / "fp32.onnx"))
    manifest = json.loads((dest / "manifest.json").read_text())
    entry = manifest["models"]["fp32"]
    entry["sha256"] = sha256_file(dest / "fp32.onnx")
    entry["bytes"] = (dest / "fp32.onnx").stat().st_size
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def current_release(deploy_dir: Path) -> str:
    return os.readlink(deploy_dir / "current").split("/")[-1]


def release_intact(deploy_dir: Path, release: str) -> bool:
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"],
        cwd=deploy_dir / "releases" / release,
        capture_output=True,
    )
    return check.returncode == 0


def test_first_deploy_then_noop_then_changed_model(lab, models_dir):
    lab.add("pi-a")
    lab.trust("pi-a")
    where = lab.deploy_dir("pi-a")

    first = run_deploy(lab, "pi-a", models_dir)
    report = first.reports[0]
    assert (report.status, first.exit_code) == ("changed", 0), report.message
    outcome = report.result
    release = current_release(where)
    assert release == outcome.release_id and outcome.previous is None
    assert release_intact(where, release)
    manifest = json.loads((models_dir / "manifest.json").read_text())
    for entry in manifest["models"].values():
        shipped = where / "current" / "models" / entry["file"]
        assert sha256_file(shipped) == entry["sha256"]
    assert (where / "current" / "probe.jpg").read_bytes() == (
        REPO / "deploy" / "assets" / "probe.jpg"
    ).read_bytes()
    wheel = where / "current" / "wheelhouse" / outcome.uploaded[-1].split("/")[-1]
    assert wheel.name.startswith("retinaface_pi_runner-") and wheel.name.endswith(
        "-py3-none-any.whl"
    )
    record = json.loads((where / "current" / "deploy.json").read_text())
    assert record["release"] == release and record["host"] == "pi-a"
    assert record["files"]["models/fp32.onnx"]["sha256"] == manifest["models"]["fp32"]["sha256"]
    assert outcome.venv_created and outcome.installed == [wheel.name]
    venv_python = where / "venv" / "bin" / "python"
    out = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import retinaface.runner, sys; print(retinaface.runner.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=str(lab.root),
        check=True,
    ).stdout
    assert out.startswith(str(where / "venv"))
    assert (lab.root / "logs" / "pi-a.log").read_text().count("upload") >= 6

    # A redeploy with nothing changed: zero bytes, nothing written.
    before = tree_snapshot(where)
    again = run_deploy(lab, "pi-a", models_dir)
    report = again.reports[0]
    assert report.status == "ok", report.message
    assert report.result.bytes_sent == 0 and report.result.metadata_bytes == 0
    assert report.result.uploaded == [] and "0 bytes sent" in report.message
    assert tree_snapshot(where) == before

    # One model changes: only it (and the manifest that describes it) is sent.
    changed = changed_models(models_dir, lab.root / "models-changed")
    third = run_deploy(lab, "pi-a", changed)
    outcome = third.reports[0].result
    assert third.reports[0].status == "changed"
    assert outcome.uploaded == ["models/fp32.onnx", "models/manifest.json"]
    assert outcome.bytes_sent == sum(
        (changed / name).stat().st_size for name in ("fp32.onnx", "manifest.json")
    )
    # every model file but fp32.onnx (ncnn's .bin companions included), the wheel, the probe
    files = sum(1 + len(e.get("companions") or []) for e in manifest["models"].values())
    assert len(outcome.linked) == files - 1 + 2
    assert outcome.installed == []  # same runner wheel: pip is not run again
    assert current_release(where) == outcome.release_id != release
    assert release_intact(where, outcome.release_id) and release_intact(where, release)


def test_keeps_the_newest_releases(lab, models_dir, tmp_path):
    lab.add("pi-k")
    lab.trust("pi-k")
    lab.write_inventory()
    text = lab.inventory.read_text().replace(
        "    user: root", "    user: root\n    keep_releases: 2"
    )
    lab.inventory.write_text(text)
    ids = []
    for index in range(3):
        models = changed_models(models_dir, tmp_path / f"m{index}", note=str(index))
        result = run_deploy(lab, "pi-k", models)
        assert result.exit_code == 0, result.recap()
        ids.append(result.reports[0].result.release_id)
    assert result.reports[0].result.pruned == [ids[0]]
    assert sorted(os.listdir(lab.deploy_dir("pi-k") / "releases")) == sorted(ids[1:])


def test_unknown_host_key_is_refused_and_nothing_is_written(lab, models_dir):
    server = lab.add("pi-new")
    result = run_deploy(lab, "pi-new", models_dir)
    report = result.reports[0]
    assert (report.status, result.exit_code) == ("unreachable", 4)
    assert (
        "unknown host key" in report.message and "invoke trust-host --host pi-new" in report.message
    )
    assert not lab.deploy_dir("pi-new").exists()
    assert "Accepted publickey" not in server.log.read_text()  # refused before logging in


def invoke_cli(lab, *args, timeout=300):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args, "--inventory", str(lab.inventory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_trust_host_cli_then_deploy_works(lab, models_dir, client_env):
    lab.add("pi-t")
    declined = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "trust-host",
            "--host",
            "pi-t",
            "--inventory",
            str(lab.inventory),
        ],
        cwd=REPO,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert declined.returncode == 0 and "declined" in declined.stdout
    assert not client_env.exists()
    done = invoke_cli(lab, "trust-host", "--host", "pi-t", "--yes")
    assert done.returncode == 0, done.stderr
    assert "SHA256:" in done.stdout and "recorded" in done.stdout
    line = client_env.read_text()
    assert line == lab.servers["pi-t"].known_hosts_line
    again = invoke_cli(lab, "trust-host", "--host", "pi-t", "--yes")
    assert "already-trusted" in again.stdout and client_env.read_text() == line
    result = run_deploy(lab, "pi-t", models_dir)
    assert result.exit_code == 0, result.recap()


def test_changed_host_key_is_refused(lab, models_dir, client_env):
    server = lab.add("pi-c")
    lab.trust("pi-c")
    assert run_deploy(lab, "pi-c", models_dir).exit_code == 0
    before = tree_snapshot(lab.deploy_dir("pi-c"))
    server.stop()
    server.regenerate_host_key()
    server.start()
    result = run_deploy(lab, "pi-c", models_dir)
    report = result.reports[0]
    assert (report.status, result.exit_code) == ("unreachable", 4)
    assert "HOST KEY CHANGED" in report.message and "ssh-keygen -R" in report.message
    assert tree_snapshot(lab.deploy_dir("pi-c")) == before
    known = client_env.read_text()
    host = load_inventory(lab.inventory).hosts["pi-c"]
    with pytest.raises(ChangedHostKeyError):
        trust_host(host, lambda result: True)
    assert client_env.read_text() == known  # trust-host never replaces a recorded key


def test_fleet_with_one_host_down_exits_4(lab, models_dir):
    for name in ("pi-1", "pi-2", "pi-3"):
        lab.add(name)
        lab.trust(name)
    lab.servers["pi-2"].stop()
    done = invoke_cli(lab, "deploy", "--host", "fleet")
    assert done.returncode == 4, done.stdout + done.stderr
    rows = {
        line.split()[0]: line.split()[1]
        for line in done.stdout.splitlines()
        if line.startswith("pi-")
    }
    assert rows == {"pi-1": "changed", "pi-2": "unreachable", "pi-3": "changed"}
    assert "unreachable=1" in done.stdout
    for name in ("pi-1", "pi-3"):
        assert release_intact(lab.deploy_dir(name), current_release(lab.deploy_dir(name)))
    assert not lab.deploy_dir("pi-2").exists()


def test_sshd_killed_mid_upload_keeps_previous_release(lab, models_dir):
    server = lab.add("pi-x")
    lab.trust("pi-x")
    where = lab.deploy_dir("pi-x")
    first = run_deploy(lab, "pi-x", models_dir)
    assert first.exit_code == 0
    old = current_release(where)
    before = tree_snapshot(where / "releases" / old)

    changed = changed_models(models_dir, lab.root / "models-changed")
    seen = []

    def progress_for(host):
        def update(done, total):
            seen.append((done, total))
            if 64 * 1024 <= done < total and server.proc is not None:
                server.kill()  # the host vanishes in the middle of the upload

        return update

    broken = run_deploy(lab, "pi-x", changed, progress_for=progress_for)
    report = broken.reports[0]
    assert (report.status, broken.exit_code) == ("unreachable", 4), report.message
    assert "connection lost" in report.message
    assert any(64 * 1024 <= done < total for done, total in seen)
    assert current_release(where) == old
    assert tree_snapshot(where / "releases" / old) == before and release_intact(where, old)

    server.start()  # same port, same host key
    rerun = run_deploy(lab, "pi-x", changed)
    outcome = rerun.reports[0].result
    assert rerun.exit_code == 0, rerun.recap()
    assert current_release(where) == outcome.release_id != old
    assert release_intact(where, outcome.release_id)
    leftovers = list((where / "releases").rglob("*.part-*"))
    assert leftovers == []
    assert not (where / ".deploy.lock").exists()  # the lost run's lock was taken over, then dropped


def test_concurrent_deploys_to_one_host_take_turns(lab, models_dir, tmp_path):
    import threading

    lab.add("pi-cc")
    lab.trust("pi-cc")
    variants = [changed_models(models_dir, tmp_path / f"m{i}", note=str(i)) for i in range(2)]
    results = [None, None]

    def one(index):
        results[index] = run_deploy(lab, "pi-cc", variants[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert [r.exit_code for r in results] == [0, 0], [r.recap() for r in results]
    where = lab.deploy_dir("pi-cc")
    ids = {r.reports[0].result.release_id for r in results}
    assert current_release(where) in ids and len(ids) == 2
    for release in ids:
        assert release_intact(where, release)
    assert not (where / ".deploy.lock").exists()


def test_check_changes_nothing(lab, models_dir):
    lab.add("pi-fresh")
    lab.add("pi-old")
    lab.trust("pi-fresh")
    lab.trust("pi-old")
    assert run_deploy(lab, "pi-old", models_dir).exit_code == 0
    changed = changed_models(models_dir, lab.root / "models-changed")
    before = tree_snapshot(lab.deploy_dir("pi-old"))
    result = run_deploy(lab, "pi-fresh,pi-old", changed, check=True)
    fresh, old = result.reports
    assert result.exit_code == 0
    assert fresh.status == "changed" and "would create venv" in fresh.message
    assert not lab.deploy_dir("pi-fresh").exists()
    assert old.status == "changed" and old.result.uploaded == [
        "models/fp32.onnx",
        "models/manifest.json",
    ]
    assert "would send 2 file(s)" in old.message
    assert tree_snapshot(lab.deploy_dir("pi-old")) == before


@pytest.mark.parametrize(
    "extra, words",
    [
        ("        pi-bad: {port: 99999}\n", ["pi-bad", "port", "99999"]),
        ("        pi-bad: {port: 22, ansible_password: hunter2}\n", ["pi-bad", "ansible_password"]),
        ("        pi-bad: {port: 22, deploy_dri: /x}\n", ["pi-bad", "deploy_dri", "'deploy_dir'"]),
        (
            "        pi-bad: {port: 22, address: 'root@127.0.0.1:22'}\n",
            ["pi-bad", "root@127.0.0.1:22", "bare host name"],
        ),
    ],
)
def test_bad_inventory_is_one_clear_line(lab, extra, words):
    lab.add("pi-ok", start=False)
    lab.write_inventory(extra=extra)
    done = invoke_cli(lab, "deploy", "--host", "fleet")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    for word in [str(lab.inventory)] + words:
        assert word in done.stderr


def test_unknown_host_name_lists_known_ones(lab):
    lab.add("pi-ok", start=False)
    done = invoke_cli(lab, "facts", "--host", "pi-nope")
    assert done.returncode == 1 and "pi-nope" in done.stderr and "pi-ok" in done.stderr


def test_facts_over_ssh(lab):
    lab.add("pi-f")
    lab.trust("pi-f")
    done = invoke_cli(lab, "facts", "--host", "pi-f")
    assert done.returncode == 0, done.stderr
    for word in ("arch: amd64", "python: 3.", "cp3", "ram:", "disk free:", "pi model:"):
        assert word in done.stdout


def test_runner_detect_over_ssh_matches_local(lab, models_dir, tmp_path):
    lab.add("pi-r")
    lab.trust("pi-r")
    result = run_deploy(lab, "pi-r", models_dir)
    assert result.exit_code == 0, result.recap()
    where = lab.deploy_dir("pi-r")
    host = load_inventory(lab.inventory).hosts["pi-r"]
    with open_host(host) as conn:
        remote_json = f"{where}/detect.json"
        conn.run(
            f"{where}/venv/bin/python -m retinaface.runner detect --model {where}/current/models/fp32.onnx"
            f" --image {where}/current/probe.jpg --json {remote_json}",
            timeout=300,
        )
        conn.get(remote_json, tmp_path / "remote.json")
    remote = json.loads((tmp_path / "remote.json").read_text())
    local_json = tmp_path / "local.json"
    subprocess.run(
        [
            sys.executable, "-m", "retinaface.runner", "detect",
            "--model", str(models_dir / "fp32.onnx"),
            "--image", str(REPO / "deploy" / "assets" / "probe.jpg"),
            "--json", str(local_json),
        ],
        cwd=REPO,
        check=True,
        timeout=300,
    )  # fmt: skip
    local = json.loads(local_json.read_text())
    assert len(remote["faces"]) == len(local["faces"]) > 0
    for theirs, ours in zip(remote["faces"], local["faces"]):
        assert theirs["box"] == pytest.approx(ours["box"], abs=0.5)
        assert theirs["score"] == pytest.approx(ours["score"], abs=1e-4)
