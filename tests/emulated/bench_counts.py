"""The full counted table, every variant (a benchmark script, not a test; tens of minutes).

    sudo python3 tests/emulated/bench_counts.py [--host pi4-emu] [--size 640x480] [--json FILE]

Needs the emulated Pi deployed (`invoke emu-up`, `invoke fetch-ort ...`, `invoke deploy --host
pi4-emu`); prints `invoke count`'s table (instructions per frame per stage, the mix, ours/study,
predicted ms) and, with --json, keeps the records.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="pi4-emu")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--cpu", default="cortex-a72")
    parser.add_argument("--json", default=str(REPO / "results" / "counts.json"))
    args = parser.parse_args()
    argv = [sys.executable, "-m", "invoke", "count", "--host", args.host, "--size", args.size,
            "--cpu", args.cpu, "--json", args.json]  # fmt: skip
    return subprocess.run(argv, cwd=str(REPO)).returncode


if __name__ == "__main__":
    sys.exit(main())
