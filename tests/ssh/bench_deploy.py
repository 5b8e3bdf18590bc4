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

from deploy.commands import deploy
from deploy.release import MODELS_DIR, ensure_models
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

    def timed(hosts: str) -> float:
        start = time.perf_counter()
        result = deploy(hosts, str(inventory), log_dir=root / "logs")
        elapsed = time.perf_counter() - start
        if result.exit_code:
            raise SystemExit(result.recap())
        return elapsed

    def wipe() -> None:
        for i in range(args.hosts):
            shutil.rmtree(root / f"dep{i}", ignore_errors=True)

    rows = {"cold 1 host": [], "no-op 1 host": [], f"cold {args.hosts} hosts": [],
            f"no-op {args.hosts} hosts": []}  # fmt: skip
    try:
        timed("h0")  # warm the runner wheel build and Python imports
        for _ in range(args.repeat):
            wipe()
            rows["cold 1 host"].append(timed("h0"))
            rows["no-op 1 host"].append(timed("h0"))
            wipe()
            rows[f"cold {args.hosts} hosts"].append(timed(fleet))
            rows[f"no-op {args.hosts} hosts"].append(timed(fleet))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rows.items()}
    for name, value in median.items():
        print(f"{name:>16}: {value:6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in rows[name])})")
    cold = median["cold 1 host"]
    print(f"no-op / cold (1 host): {median['no-op 1 host'] / cold:.1%}  (target <= 15 %)")
    print(
        f"{args.hosts} hosts / 1 host (cold): {median[f'cold {args.hosts} hosts'] / cold:.2f}x"
        "  (target <= 1.5x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
