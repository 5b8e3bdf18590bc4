"""Deploy benchmark on loopback sshd (not a test): `python -m tests.ssh.bench_deploy [--hosts 4]`.

Measures a cold deploy (empty host: upload, venv, pip) vs a no-op redeploy on one host, and a
cold deploy to a fleet of N hosts vs one. Servers, keys, HOME and known_hosts live in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from deploy.workflow.commands import deploy
from deploy.workflow.release import MODELS_DIR, ensure_models
from tests.ssh.sshd import Sshd, keygen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=4, help="fleet size")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    args = parser.parse_args()

    ensure_models(MODELS_DIR)
    root = Path(tempfile.mkdtemp(prefix="rf-bench-"))
    os.environ["HOME"] = str(root / "home")
    (root / "home").mkdir()
    os.environ.pop("SSH_AUTH_SOCK", None)
    known = root / "known_hosts"
    os.environ["RETINAFACE_PI_KNOWN_HOSTS"] = str(known)
    key = keygen(root / "id_ed25519")
    servers = [Sshd(root / f"srv{i}", key.with_suffix(".pub")).start() for i in range(args.hosts)]
    known.write_text("".join(server.known_hosts_line for server in servers))
    inventory = root / "inventory.yaml"
    lines = [
        "all:",
        f"  vars: {{address: 127.0.0.1, user: root, key_file: {key}, python: {sys.executable}}}",
        "  hosts:",
    ]
    lines += [
        f"    h{i}: {{port: {s.port}, deploy_dir: {root / f'dep{i}'}}}"
        for i, s in enumerate(servers)
    ]
    inventory.write_text("\n".join(lines) + "\n")
    fleet = ",".join(f"h{i}" for i in range(args.hosts))

    cpu: dict = {}

    def timed(hosts: str, models: Path = MODELS_DIR, name: str = "") -> float:
        start = time.perf_counter()
        used = time.process_time()
        result = deploy(hosts, str(inventory), models_dir=models, log_dir=root / "logs")
        elapsed = time.perf_counter() - start
        cpu.setdefault(name, []).append(time.process_time() - used)
        if result.exit_code:
            raise SystemExit(result.recap())
        return elapsed

    def changed_models(index: int) -> Path:
        """A copy of build/models whose fp32.onnx differs (new doc string), manifest updated."""
        import json

        import onnx

        from retinaface.files import sha256_file

        dest = root / f"models-{index}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(MODELS_DIR, dest)
        model = onnx.load(str(dest / "fp32.onnx"))
        model.doc_string = f"bench {index}"
        onnx.save(model, str(dest / "fp32.onnx"))
        manifest = json.loads((dest / "manifest.json").read_text())
        manifest["models"]["fp32"]["sha256"] = sha256_file(dest / "fp32.onnx")
        manifest["models"]["fp32"]["bytes"] = (dest / "fp32.onnx").stat().st_size
        (dest / "manifest.json").write_text(json.dumps(manifest))
        return dest

    def wipe() -> None:
        for i in range(args.hosts):
            shutil.rmtree(root / f"dep{i}", ignore_errors=True)

    n = args.hosts
    rows = {"cold 1 host": [], "no-op 1 host": [], "new model 1 host": [],
            f"cold {n} hosts": [], f"no-op {n} hosts": [], f"new model {n} hosts": []}  # fmt: skip
    load = os.getloadavg()[0]
    try:
        timed("h0")  # warm the runner wheel build and Python imports
        for rep in range(args.repeat):
            for hosts, label, index in (
                ("h0", "1 host", 2 * rep),
                (fleet, f"{n} hosts", 2 * rep + 1),
            ):
                wipe()
                for kind, models in (("cold", MODELS_DIR), ("no-op", MODELS_DIR),
                                     ("new model", changed_models(index))):  # fmt: skip
                    name = f"{kind} {label}"
                    rows[name].append(timed(hosts, models, name))
        # The fleet mechanism alone: a command that waits (no CPU) on 1 host vs all hosts.
        from deploy.hosts.fleet import run_on
        from deploy.hosts.inventory import load_inventory

        hosts = load_inventory(inventory).select(fleet)
        for label, chosen in (("1 host", hosts[:1]), (f"{n} hosts", hosts)):
            start = time.perf_counter()
            result = run_on(chosen, lambda conn: conn.run("sleep 2").exited)
            assert result.exit_code == 0, result.recap()
            rows.setdefault(f"sleep 2 s {label}", []).append(time.perf_counter() - start)
            cpu.setdefault(f"sleep 2 s {label}", []).append(0.0)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rows.items()}
    for name, value in median.items():
        runs = ", ".join(f"{v:.2f}" for v in rows[name])
        client = statistics.median(cpu[name])
        print(f"{name:>19}: {value:6.2f} s wall, {client:5.2f} s client CPU  (runs: {runs})")
    print(f"load average at start: {load:.1f} on {os.cpu_count()} CPUs (servers share them)")
    cold = median["cold 1 host"]
    print(f"no-op / cold (1 host): {median['no-op 1 host'] / cold:.1%}  (target <= 15 %)")
    for kind in ("cold", "no-op", "new model", "sleep 2 s"):
        ratio = median[f"{kind} {n} hosts"] / median[f"{kind} 1 host"]
        print(f"{n} hosts / 1 host ({kind}): {ratio:.2f}x  (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
