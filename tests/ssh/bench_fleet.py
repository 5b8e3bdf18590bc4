"""Fleet benchmark on loopback sshd (not a test): `python -m tests.ssh.bench_fleet [--sizes 1,4,16]`.

Both paths to the same hosts: `invoke deploy` (deploy.workflow.commands.deploy, in this process) and the
bundle's playbook run by `ansible-playbook`, each with 10 hosts at once (--forks 10). Per fleet
size: cold deploy (empty hosts), no-op redeploy, one changed model. Prints wall time, time per
host and the client's CPU (this process for invoke deploy; ansible-playbook and its ssh children
for Ansible). Every sshd runs on this machine too, so the hosts' work competes with the client
for the same cores: read the growth from 1 to 16 hosts as an upper bound for a real fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy.workflow.bundle import write_bundle
from deploy.workflow.commands import deploy
from deploy.workflow.release import MODELS_DIR, build_runner_wheel, ensure_models
from tests.ssh.sshd import Sshd, keygen

FORKS = 10


def changed_models(root: Path) -> Path:
    """A copy of build/models whose fp32.onnx differs (new doc string), manifest updated."""
    import onnx

    from retinaface.files import sha256_file

    dest = root / "models-changed"
    shutil.copytree(MODELS_DIR, dest)
    model = onnx.load(str(dest / "fp32.onnx"))
    model.doc_string = "bench_fleet: changed"
    onnx.save(model, str(dest / "fp32.onnx"))
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["models"]["fp32"]["sha256"] = sha256_file(dest / "fp32.onnx")
    manifest["models"]["fp32"]["bytes"] = (dest / "fp32.onnx").stat().st_size
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4,16", help="fleet sizes, comma separated")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    ensure_models(MODELS_DIR)
    root = Path(tempfile.mkdtemp(prefix="rf-fleet-"))
    os.environ["HOME"] = str(root / "home")
    (root / "home").mkdir()
    os.environ.pop("SSH_AUTH_SOCK", None)
    known = root / "known_hosts"
    os.environ["RETINAFACE_PI_KNOWN_HOSTS"] = str(known)
    key = keygen(root / "id_ed25519")
    servers = [Sshd(root / f"srv{i}", key.with_suffix(".pub")).start() for i in range(max(sizes))]
    known.write_text("".join(server.known_hosts_line for server in servers))
    empty_wheels = root / "wheels"
    empty_wheels.mkdir()
    runner = build_runner_wheel()
    changed = changed_models(root)
    started = time.perf_counter()
    bundles = {
        "base": write_bundle([], root / "bundles", MODELS_DIR, empty_wheels, runner_wheel=runner),
        "changed": write_bundle([], root / "bundles", changed, empty_wheels, runner_wheel=runner),
    }
    bundle_s = (time.perf_counter() - started) / 2
    ansible_env = dict(
        os.environ,
        ANSIBLE_SSH_ARGS=f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=60s",
        ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )

    def inventory(path_name: str, n: int) -> Path:
        lines = [
            "all:",
            f"  vars: {{address: 127.0.0.1, user: root, key_file: {key}, python: {sys.executable}}}",
            "  hosts:",
        ]
        lines += [
            f"    h{i}: {{port: {servers[i].port}, deploy_dir: {root / f'dep-{path_name}-{n}-{i}'}}}"
            for i in range(n)
        ]
        path = root / f"inventory-{path_name}-{n}.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run_invoke(inv: Path, models: Path) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        result = deploy("all", str(inv), models_dir=models, wheels_dir=empty_wheels,
                        log_dir=root / "logs", forks=FORKS)  # fmt: skip
        if result.exit_code:
            raise SystemExit(result.recap())
        return time.perf_counter() - start, time.process_time() - cpu

    def run_ansible(inv: Path, which: str) -> tuple[float, float]:
        start, cpu = time.perf_counter(), children_cpu()
        result = subprocess.run(
            ["ansible-playbook", "-i", str(inv), str(bundles[which].playbook), "--forks",
             str(FORKS)],
            capture_output=True, text=True, env=ansible_env, timeout=3600,
        )  # fmt: skip
        if result.returncode:
            raise SystemExit(result.stdout[-3000:] + result.stderr[-2000:])
        return time.perf_counter() - start, children_cpu() - cpu

    rows = []
    load = os.getloadavg()[0]
    try:
        run_invoke(inventory("warm", 1), MODELS_DIR)  # imports, runner wheel
        for n in sizes:
            for path_name in ("invoke", "ansible"):
                inv = inventory(path_name, n)
                for scenario, models, which in (
                    ("cold", MODELS_DIR, "base"),
                    ("no-op", MODELS_DIR, "base"),
                    ("new model", changed, "changed"),
                ):
                    if path_name == "invoke":
                        wall, cpu = run_invoke(inv, models)
                    else:
                        wall, cpu = run_ansible(inv, which)
                    rows.append((path_name, n, scenario, wall, cpu))
                    print(f"{path_name:8} {n:3} hosts {scenario:10} {wall:7.1f} s wall "
                          f"{wall / n:6.2f} s/host {cpu:7.1f} s client CPU", flush=True)  # fmt: skip
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"bundle written in {bundle_s:.1f} s (once per release, on the client)")
    print(f"load average at start: {load:.1f} on {os.cpu_count()} CPUs, shared with other work")
    print("| path | hosts | scenario | wall s | s per host | client CPU s | wall vs 1 host |")
    print("|---|---:|---|---:|---:|---:|---:|")
    base = {(p, s): w for p, n, s, w, _ in rows if n == min(sizes)}
    for path_name, n, scenario, wall, cpu in rows:
        growth = wall / base[(path_name, scenario)]
        print(f"| {path_name} | {n} | {scenario} | {wall:.1f} | {wall / n:.2f} | {cpu:.1f} | "
              f"{growth:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
