"""One host's pulled bench.json as the tables see it (HostResult), loading a results folder, and
the cell formatting every table shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deploy.errors import DeployError
from deploy.paths import RESULTS_DIR
from deploy.results.schema import check_bench, read_bench

STAGE_NAMES = {
    "pre": "pre-process",
    "infer": "inference",
    "post": "post-process",
    "e2e": "end to end",
}


EMULATED_WARNING = (
    "EMULATED: an ARM userland under qemu-user on an x86 CPU; these timings are not a Pi's "
    "and not proportional to one"
)


@dataclass
class HostResult:
    """One host's pulled bench.json."""

    host: str
    path: Path
    data: dict

    @property
    def variants(self) -> list:
        return list(self.data["order"])

    def variant(self, name: str) -> Optional[dict]:
        return self.data["variants"].get(name)

    @property
    def emulated(self) -> bool:
        """Measured on an emulated Pi (deploy's facts: ARM userland on an x86 CPU, qemu-user)."""
        facts = self.data.get("facts") or {}
        return isinstance(facts, dict) and facts.get("emulated") not in (None, "no")

    @property
    def label(self) -> str:
        """The host's name as every table shows it: emulated timings say so."""
        return f"{self.host} (emulated)" if self.emulated else self.host


def validate_result(data: dict, path: Path) -> None:
    """Check a bench.json against the runner's schema; the error names the file and field."""
    check_bench(data, path)


def load_result(path: Path, host: Optional[str] = None) -> HostResult:
    """One bench.json, read size-capped and validated (deploy.results.schema)."""
    path = Path(path)
    data = read_bench(path)
    return HostResult(host or data.get("inventory_host") or path.parent.name, path, data)


def load_results(results_dir: Path) -> list:
    """Every `<host>/bench.json` under a results folder (or the one in a host folder), by host."""
    results, failures = collect_results(results_dir)
    if failures:
        raise DeployError(failures[0])
    return results


def collect_results(results_dir: Path) -> tuple:
    """(results, failure lines): a bad host file is one line, the other hosts still load."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DeployError(f"{results_dir}: no such results folder")
    if (results_dir / "bench.json").is_file():
        return [load_result(results_dir / "bench.json")], []
    found = sorted(results_dir.glob("*/bench.json"))
    if not found:
        raise DeployError(f"{results_dir}: no <host>/bench.json inside")
    results, failures = [], []
    for path in found:
        try:
            results.append(load_result(path))
        except DeployError as error:
            failures.append(str(error))
    return results, failures


def latest_results(root: Path = RESULTS_DIR) -> Path:
    """The newest results/<stamp> folder."""
    stamps = sorted(p for p in Path(root).glob("*") if p.is_dir() and any(p.glob("*/bench.json")))
    if not stamps:
        raise DeployError(f"{root}: no results yet (run `invoke remote-bench` first)")
    return stamps[-1]


def ms_text(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell_text(record: Optional[dict], value: Optional[float], fmt=ms_text) -> str:
    if record is None:
        return "—"
    if record["status"] != "ok":
        return record["status"]
    text = fmt(value)
    return text if record["valid"] else f"{text} ⚠"
