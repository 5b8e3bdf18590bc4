"""Run one test tier N times in a row and print the pass/fail counts of each run (flake rate).

    python3 tests/repeat.py --tier ssh --times 5 [--only FILE …] [--log-dir DIR] [-- PYTEST ARGS]

Each run is a fresh `python3 -m pytest tests/<tier>`; its counts come from pytest's JUnit XML,
its full output goes to DIR/run-<i>.log. Exit 0 only if every run passed with no skip.
The emulated and cross tiers share the emulated Pis: wrap them in `flock /work/logs/emulated.lock`
(or your machine's lock) when others use the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "ssh", "newcomer", "cross", "emulated")


@dataclass(frozen=True)
class RunCounts:
    tests: int
    failed: int
    errors: int
    skipped: int
    exit_code: int

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and self.tests > 0
            and not (self.failed or self.errors or self.skipped)
        )


def counts_from_junit(path: Path, exit_code: int) -> RunCounts:
    """The totals of pytest's JUnit XML (one <testsuite>, inside <testsuites> since pytest 5)."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {
        key: sum(int(s.get(key, 0)) for s in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }
    return RunCounts(
        total["tests"], total["failures"], total["errors"], total["skipped"], exit_code
    )


def run_once(paths: list, extra: list, log: Path) -> RunCounts:
    with tempfile.TemporaryDirectory(prefix="retinaface-pi-repeat.") as scratch:
        junit = Path(scratch) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider",
                f"--junitxml={junit}", *extra]  # fmt: skip
        with open(log, "w") as out:
            code = subprocess.run(
                argv, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT
            ).returncode
        if not junit.is_file():  # pytest could not even collect: count the run as one error
            return RunCounts(0, 0, 1, 0, code)
        return counts_from_junit(junit, code)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", required=True, choices=TIERS)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--only", nargs="+", help="these files of the tier instead of all of it")
    parser.add_argument("--log-dir", help="where run-<i>.log go (default: a new temp folder)")
    args, extra = parser.parse_known_args(argv)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if args.times < 1:
        print(f"--times must be at least 1, not {args.times}", file=sys.stderr)
        return 2
    tier_dir = REPO / "tests" / args.tier
    paths = [f"tests/{args.tier}"]
    if args.only:
        outside = [p for p in args.only if tier_dir not in (REPO / p).resolve().parents]
        if outside:
            print(f"--only: not in tests/{args.tier}: {', '.join(outside)}", file=sys.stderr)
            return 2
        paths = args.only
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix=f"retinaface-pi-repeat-{args.tier}."))
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(1, args.times + 1):
        counts = run_once(paths, extra, log_dir / f"run-{index}.log")
        runs.append(counts)
        passed = counts.tests - counts.failed - counts.errors - counts.skipped
        print(f"run {index}/{args.times}: {passed} passed, {counts.failed} failed, "
              f"{counts.errors} errors, {counts.skipped} skipped (exit {counts.exit_code})", flush=True)  # fmt: skip
    good = sum(run.ok for run in runs)
    print(f"{args.tier}: {good} of {len(runs)} runs passed; "
          f"{sum(r.failed for r in runs)} failures, {sum(r.errors for r in runs)} errors, "
          f"{sum(r.skipped for r in runs)} skips in all; logs in {log_dir}")  # fmt: skip
    return 0 if good == len(runs) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
