"""What the host tasks do (tasks.py only parses flags, calls these and prints)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from deploy.hosts.facts import gather_facts
from deploy.hosts.fleet import DEFAULT_FORKS, FleetResult, check_forks, run_on
from deploy.hosts.inventory import Host, load_inventory
from deploy.hosts.trust import TrustResult, trust_host
from deploy.paths import LOGS_DIR
from deploy.workflow.push import HostProgress, deploy_host
from deploy.workflow.release import MODELS_DIR, WHEELS_DIR, build_runner_wheel, ensure_models
from deploy.workflow.service import StreamSettings, service_action


def log_dir_for(command: str) -> Path:
    """build/logs/<command>-<UTC stamp>/ (one log file per host inside)."""
    return LOGS_DIR / f"{command}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def list_hosts(host: Optional[str], inventory: Optional[str] = None) -> list[Host]:
    """The hosts a pattern selects (default: all), resolved, without connecting."""
    return load_inventory(inventory).select(host or "all")


def host_table(hosts: list[Host]) -> list[str]:
    """Aligned lines: name, address, port, user, connection, groups (`-`: ssh's default)."""
    rows = [("name", "address", "port", "user", "connection", "groups")]
    rows += [
        (
            host.name,
            "-" if host.is_local else host.address or "-",
            "-" if host.is_local or host.port is None else str(host.port),
            host.user or "-",
            host.connection,
            ",".join(host.groups) or "-",
        )
        for host in hosts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
        for row in rows
    ]


def facts(
    host: Optional[str], inventory: Optional[str] = None, forks: int = DEFAULT_FORKS
) -> FleetResult:
    """Probe every selected host; each report's `.result` is a Facts."""
    forks = check_forks(forks)
    hosts = load_inventory(inventory).select(host)
    return run_on(hosts, gather_facts, forks=forks, log_dir=log_dir_for("facts"))


def trust(
    host: Optional[str], confirm: Callable[[TrustResult], bool], inventory: Optional[str] = None
) -> list:
    """trust-host for every selected host, one after the other (each may prompt)."""
    return [trust_host(item, confirm) for item in load_inventory(inventory).select(host)]


def deploy(
    host: Optional[str],
    inventory: Optional[str] = None,
    check: bool = False,
    progress_for: Optional[Callable[[str], HostProgress]] = None,
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    note: Callable[[str], None] = lambda message: None,
    log_dir: Optional[Path] = None,
    forks: int = DEFAULT_FORKS,
) -> FleetResult:
    """Deploy to every selected host in parallel; models are exported first when missing."""
    forks = check_forks(forks)
    hosts = load_inventory(inventory).select(host)
    manifest = ensure_models(models_dir, progress=note)
    runner = build_runner_wheel()  # content-addressed path: never rewritten under us
    return _deploy_hosts(
        hosts, runner, manifest, check, progress_for, models_dir, wheels_dir, log_dir, forks
    )


def _deploy_hosts(
    hosts, runner, manifest, check, progress_for, models_dir, wheels_dir, log_dir, forks
):
    def workflow(conn):
        return deploy_host(
            conn,
            check=check,
            models_dir=models_dir,
            wheels_dir=wheels_dir,
            runner_wheel=runner,
            manifest=manifest,
            progress=progress_for(conn.host.name) if progress_for else None,
        )

    return run_on(hosts, workflow, forks=forks, log_dir=log_dir or log_dir_for("deploy"))


def bundle(
    host: Optional[str] = None,
    tags: Optional[str] = None,
    inventory: Optional[str] = None,
    out: Optional[str] = None,
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    note: Callable[[str], None] = lambda message: None,
):
    """Write the Ansible bundle of the current release (deploy.workflow.bundle).

    The wheels that fit come from one host's facts (`host`), from wheel tags (`tags`, comma
    separated, e.g. cp39-cp39-linux_armv7l), or none (the runner wheel is pure Python).
    """
    from deploy.errors import DeployError
    from deploy.hosts.connection import open_host
    from deploy.workflow.bundle import BUNDLE_DIR, write_bundle

    if host and tags:
        raise DeployError("give --host or --tags, not both")
    host_tags: list = [tag.strip() for tag in (tags or "").split(",") if tag.strip()]
    if host:
        hosts = load_inventory(inventory).select(host)
        if len(hosts) != 1:
            raise DeployError(f"--host {host!r}: name one host (its facts pick the wheels)")
        with open_host(hosts[0]) as conn:
            host_tags = list(gather_facts(conn).tags)
    manifest = ensure_models(models_dir, progress=note)
    return write_bundle(
        host_tags,
        Path(out) if out else BUNDLE_DIR,
        models_dir,
        wheels_dir,
        runner_wheel=build_runner_wheel(),
        manifest=manifest,
    )


def service(
    host: Optional[str],
    action: str,
    settings: StreamSettings,
    inventory: Optional[str] = None,
    check: bool = False,
) -> FleetResult:
    """One `invoke service` action on every selected host; each report's `.result` says what."""
    hosts = load_inventory(inventory).select(host)
    if action == "install":
        settings.validate()  # one clear line before any host is contacted

    def workflow(conn):
        return service_action(conn, action, settings, check)

    return run_on(hosts, workflow, log_dir=log_dir_for(f"service-{action}"))
