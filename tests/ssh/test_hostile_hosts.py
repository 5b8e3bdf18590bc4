"""What a hostile host can do to a deploy (real sshd on loopback, crafted files on the host).

Each test plants what a compromised Pi (or another user on it) could leave in the deploy
directory, or serves keys the way an impostor would, and checks the tool refuses or ignores it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.hosts.connection import open_host
from deploy.hosts.errors import UnknownHostKeyError
from deploy.hosts.inventory import load_inventory
from deploy.workflow.commands import deploy
from deploy.workflow.remote_bench import BenchOptions, remote_bench
from tests.paths import REPO
from tests.ssh.sshd import keygen
from tests.ssh.test_deploy_ssh import changed_models

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


@pytest.mark.parametrize(
    "plant, words",
    [
        ("releases-link", "releases is a symlink where a directory belongs"),
        ("dir-link", "retinaface-pi is a symlink where a directory belongs"),
        ("current-dir", "current is not a symlink"),
    ],
)
def test_a_planted_layout_is_refused_and_left_alone(lab, models_dir, plant, words):
    """`releases` planted as a symlink once sent the release elsewhere and pruned files there."""
    lab.add("pi-lay")
    lab.trust("pi-lay")
    where = lab.deploy_dir("pi-lay")
    victim = lab.root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    if plant == "releases-link":
        where.mkdir(parents=True)
        (where / "releases").symlink_to(victim)
    elif plant == "dir-link":
        where.parent.mkdir(parents=True)
        where.symlink_to(victim)
    else:
        (where / "current").mkdir(parents=True)
    result = run_deploy(lab, "pi-lay", models_dir)
    report = result.reports[0]
    assert (report.status, result.exit_code) == ("failed", 2), report.message
    assert words in report.message and "\n" not in report.message
    assert "not made by deploy" in report.message
    assert sorted(os.listdir(victim)) == ["precious.txt"]
    assert not (lab.root / "hosts" / "pi-lay" / "retinaface-pi" / "venv").exists()


def test_prune_touches_only_release_ids(lab, models_dir, tmp_path):
    """An entry named " " with keep_releases 1 once made the prune `rm -rf "$dir/releases/"`."""
    lab.add("pi-prune")
    lab.trust("pi-prune")
    text = lab.inventory.read_text().replace(
        "    user: root", "    user: root\n    keep_releases: 1"
    )
    lab.inventory.write_text(text)
    where = lab.deploy_dir("pi-prune")
    first = run_deploy(lab, "pi-prune", models_dir)
    assert first.exit_code == 0, first.recap()
    old = first.reports[0].result.release_id
    for name in (" ", "not-ours", "-rf", "a\nb"):
        (where / "releases" / name).mkdir()
        (where / "releases" / name / "file").write_text("not the deploy's\n")
        os.utime(where / "releases" / name, (1, 1))  # oldest: first in line for the prune
    second = run_deploy(lab, "pi-prune", changed_models(models_dir, tmp_path / "m2"))
    assert second.exit_code == 0, second.recap()
    new = second.reports[0].result.release_id
    assert second.reports[0].result.pruned == [old]
    assert sorted(os.listdir(where / "releases")) == sorted([" ", "-rf", "a\nb", "not-ours", new])
    assert (where / "releases" / " " / "file").is_file()
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=where / "current", capture_output=True
    )
    assert check.returncode == 0, check.stdout


def test_facts_from_a_host_print_no_escape_sequence(lab, tmp_path):
    """What the host's interpreter prints reaches `invoke facts`; its escapes must stay inert."""
    lab.add("pi-esc")
    lab.trust("pi-esc")
    fake = tmp_path / "fake-python3"
    fake.write_text(
        "#!/bin/bash\ncat > /dev/null\n"
        "printf 'python_version=3.9.2\\033[2J\\033[HFAKE: all targets met\\007\\n'\n"
        "printf 'python_tag=cp39\\nplatform_tag=linux_armv7l\\n'\n"
    )
    fake.chmod(0o755)
    lab.inventory.write_text(
        lab.inventory.read_text().replace(f"python: {sys.executable}", f"python: {fake}")
    )
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "facts", "--host", "pi-esc"]
        + ["--inventory", str(lab.inventory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "3.9.2\\x1b[2J\\x1b[HFAKE: all targets met\\x07 at" in result.stdout


def test_trust_host_refuses_an_impostor_key_of_another_type(lab, client_env, tmp_path):
    """ed25519 on record, the server offers only ECDSA: `--yes` once recorded the impostor."""
    server = lab.add("pi-imp", start=False)
    server.host_key = server.root / "ssh_host_ecdsa_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(server.host_key)], check=True
    )
    server.start()
    genuine = keygen(tmp_path / "genuine_ed25519")
    kind, b64 = genuine.with_suffix(".pub").read_text().split()[:2]
    client_env.parent.mkdir(parents=True)
    client_env.write_text(f"[127.0.0.1]:{server.port} {kind} {b64}\n")
    before = client_env.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "trust-host", "--host", "pi-imp", "--yes"]
        + ["--inventory", str(lab.inventory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HOST KEY CHANGED" in lines[0], result.stderr
    assert "ecdsa-sha2-nistp256" in lines[0] and "records ssh-ed25519" in lines[0]
    assert client_env.read_text() == before


RELAY = """import socket, sys, threading
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def pump():
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
threading.Thread(target=pump, daemon=True).start()
while True:
    data = sys.stdin.buffer.read1(65536)
    if not data:
        break
    sock.sendall(data)
"""


def jump_lab(lab, tmp_path, how: str):
    """A target reachable only as the ssh_config alias `pi-behind`, via ProxyJump or ProxyCommand."""
    jump = lab.add("jump")
    target = lab.add("target")
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    if how == "jump":
        # `localhost`: Fabric drops a hop whose name equals the target's (127.0.0.1).
        route = f"    HostName 127.0.0.1\n    ProxyJump root@localhost:{jump.port}\n"
    else:
        relay = tmp_path / "relay.py"
        relay.write_text(RELAY)
        route = (
            f"    HostName pi.invalid\n    ProxyCommand {sys.executable} {relay} {target.port}\n"
        )
    (home / ".ssh" / "config").write_text(
        f"Host pi-behind\n{route}\nHost *\n    IdentityFile {lab.client_key}\n"
    )
    lab.inventory.write_text(
        "all:\n  hosts:\n"
        f"    pi-behind: {{address: pi-behind, port: {target.port}, user: root,"
        f" key_file: {lab.client_key}, deploy_dir: {lab.deploy_dir('pi-behind')}}}\n"
    )
    return jump, target


def trust_cli(lab, name):
    return subprocess.run(
        [sys.executable, "-m", "invoke", "trust-host", "--host", name, "--yes"]
        + ["--inventory", str(lab.inventory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unknown_proxyjump_host_is_refused(lab, tmp_path, client_env):
    """Fabric built the jump hop with AutoAddPolicy: an impostor jump host was never noticed."""
    jump_lab(lab, tmp_path, "jump")
    lab.trust("target")  # the target is known, the jump host is not
    host = load_inventory(str(lab.inventory)).select("pi-behind")[0]
    with pytest.raises(UnknownHostKeyError) as error:
        open_host(host).close()
    message = str(error.value)
    jump = lab.servers["jump"]
    assert f"jump host root@localhost:{jump.port}" in message and "unknown host key" in message
    before = client_env.read_text()
    refused = trust_cli(lab, "pi-behind")  # trust-host goes the same way: refused too
    assert refused.returncode == 1 and "jump host root@localhost" in refused.stderr
    assert client_env.read_text() == before

    with open(client_env, "a") as known:  # once the jump host is known, the same route works
        known.write(jump.known_hosts_line.replace("[127.0.0.1]", "[localhost]"))
    with open_host(host) as conn:
        assert conn.run("echo via-jump").stdout.strip() == "via-jump"


def test_trust_host_fetches_the_key_through_proxycommand(lab, tmp_path, client_env):
    """trust-host opened a raw socket to `pi.invalid` and ignored the configured ProxyCommand."""
    _, target = jump_lab(lab, tmp_path, "command")
    result = trust_cli(lab, "pi-behind")
    assert result.returncode == 0, result.stderr
    kind, b64 = target.host_key.with_suffix(".pub").read_text().split()[:2]
    assert client_env.read_text() == f"[pi.invalid]:{target.port} {kind} {b64}\n"
    host = load_inventory(str(lab.inventory)).select("pi-behind")[0]
    with open_host(host) as conn:
        assert conn.run("echo via-command").stdout.strip() == "via-command"


HOSTILE_RUNNER = """

_real_run_bench = run_bench


def run_bench(config, progress=None, snapshot=telemetry.snapshot):  # noqa: F811 - the attack
    result = _real_run_bench(config, progress, snapshot)
    result["variants"]["fp32"]["stages"]["e2e"]["p90"] = float("inf")
    result["host"]["versions"] = ["onnxruntime", "1.8"]
    return result
"""


def test_a_crafted_bench_json_fails_only_its_host(lab, models_dir, tmp_path):
    """`"p90": Infinity` and a list for host.versions once crashed remote-bench: no report."""
    for name in ("pi-good", "pi-evil"):
        lab.add(name)
        lab.trust(name)
    assert run_deploy(lab, "fleet", models_dir).exit_code == 0
    installed = list(
        (lab.deploy_dir("pi-evil") / "venv").glob("lib/python*/site-packages/retinaface/bench/run.py")
    )
    assert len(installed) == 1
    installed[0].write_text(installed[0].read_text() + HOSTILE_RUNNER)
    run = remote_bench(
        "fleet",
        str(lab.inventory),
        BenchOptions(
            runs=2, warmup=0, windows=1, min_time_s=0.0, size=(320, 240), variants=["fp32"]
        ),
        out_root=tmp_path / "results",
        models_dir=models_dir,
        log_dir=lab.root / "logs",
    )
    reports = {report.host: report for report in run.fleet.reports}
    assert reports["pi-good"].status == "ok", reports["pi-good"].message
    evil = reports["pi-evil"]
    assert evil.status == "failed" and "\n" not in evil.message
    assert evil.message.startswith("pi-evil: bad bench.json from the host: ")
    assert "not JSON (Infinity is not a number JSON allows)" in evil.message
    assert run.report is not None and "## pi-good" in run.report.markdown
    assert "pi-evil" not in run.report.markdown
    assert not (run.results_dir / "pi-evil" / "bench.json").exists()
    assert "recap: ok=1, changed=0, failed=1" in run.fleet.recap()
