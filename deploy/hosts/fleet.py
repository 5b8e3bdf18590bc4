"""Run one per-host workflow over many hosts: `forks` at a time, isolation, recap, exit code.

    result = run_on(hosts, lambda conn: deploy_host(conn), log_dir=Path("build/logs/x"))
    print(result.recap()); sys.exit(result.exit_code)

The workflow gets an open `HostConnection` and returns anything; `.changed` (if present) marks
the host `changed` rather than `ok`, `.summary()` (or `str()`) is its recap line. A failure on
one host never stops the others. Exit code: 0 all ok, 2 some failed, 4 some unreachable
(Ansible's convention: unreachable wins).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from deploy.errors import DeployError, InventoryError
from deploy.hosts.connection import HostConnection, open_host
from deploy.hosts.errors import UnreachableError
from deploy.hosts.inventory import Host

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 2, 4
DEFAULT_FORKS = 10  # Ansible's default
MAX_FORKS = 500


@dataclass
class HostReport:
    """How one host fared."""

    host: str
    status: str  # ok | changed | failed | unreachable
    message: str
    seconds: float
    log: Optional[Path] = None
    result: Any = None


@dataclass
class FleetResult:
    """All hosts' reports, in inventory order, and the exit code."""

    reports: list

    @property
    def exit_code(self) -> int:
        statuses = {report.status for report in self.reports}
        if "unreachable" in statuses:
            return EXIT_UNREACHABLE
        if "failed" in statuses:
            return EXIT_FAILED
        return EXIT_OK

    def counts(self) -> dict:
        out = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
        for report in self.reports:
            out[report.status] += 1
        return out

    def recap(self) -> str:
        """A PLAY-RECAP-like table: host, status, seconds, message."""
        width = max([len("host")] + [len(r.host) for r in self.reports])
        lines = [f"{'host':<{width}}  {'status':<11}  {'time':>7}  details"]
        for r in self.reports:
            lines.append(f"{r.host:<{width}}  {r.status:<11}  {r.seconds:6.1f}s  {r.message}")
        counts = self.counts()
        lines.append(
            "recap: "
            + ", ".join(f"{key}={value}" for key, value in counts.items())
            + f" (exit {self.exit_code})"
        )
        return "\n".join(lines)


def _one(
    host: Host,
    workflow: Callable[[HostConnection], Any],
    log_dir: Optional[Path],
    connect: Callable[..., HostConnection],
) -> HostReport:
    logger = logging.getLogger(f"deploy.run.{host.name}.{uuid.uuid4().hex[:6]}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = None
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = log_dir / f"{host.name}.log"
        # Private: a log holds every command and what the host printed (0600, never a symlink).
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    start = time.monotonic()
    logger.info("host %s (%s)", host.name, host.target)
    try:
        with connect(host, log=logger) as conn:
            result = workflow(conn)
        changed = bool(getattr(result, "changed", False))
        summary = getattr(result, "summary", None)
        message = summary() if callable(summary) else ("" if result is None else str(result))
        status = "changed" if changed else "ok"
    except UnreachableError as error:
        status, message, result = "unreachable", str(error), None
    except (DeployError, InventoryError) as error:
        status, message, result = "failed", str(error), None
    except Exception as error:  # noqa: BLE001 - a bug on one host must not stop the others
        status, message, result = "failed", f"internal error: {type(error).__name__}: {error}", None
        logger.error("%s", traceback.format_exc())
    seconds = time.monotonic() - start
    logger.info("%s after %.1f s: %s", status, seconds, message)
    if handler is not None:
        logger.removeHandler(handler)
        handler.close()
    return HostReport(host.name, status, message, seconds, log_path, result)


def check_forks(forks) -> int:
    """`--forks N` as an int in 1..MAX_FORKS (DeployError otherwise)."""
    try:
        number = int(forks)
    except (TypeError, ValueError):
        raise DeployError(f"--forks: expected a number of hosts at once, got {forks!r}") from None
    if not 1 <= number <= MAX_FORKS:
        raise DeployError(f"--forks: {number} is outside 1..{MAX_FORKS}")
    return number


def run_on(
    hosts: Iterable[Host],
    workflow: Callable[[HostConnection], Any],
    forks: int = DEFAULT_FORKS,
    log_dir: Optional[Path] = None,
    connect: Callable[..., HostConnection] = open_host,
) -> FleetResult:
    """Run `workflow(conn)` on every host in parallel, at most `forks` at once.

    Each host gets a worker as soon as one is free, so one slow host holds only its own.
    """
    forks = check_forks(forks)
    hosts = list(hosts)
    if not hosts:
        return FleetResult([])
    workers = min(forks, len(hosts))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host") as pool:
        futures = [pool.submit(_one, host, workflow, log_dir, connect) for host in hosts]
        return FleetResult([future.result() for future in futures])
