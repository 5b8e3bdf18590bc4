"""What the host tasks do (tasks.py only parses flags, calls these and prints)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from deploy.deploy import HostProgress, deploy_host
from deploy.facts import gather_facts
from deploy.fleet import FleetResult, run_on
from deploy.hostkeys import REPO_ROOT
from deploy.inventory import load_inventory
from deploy.release import MODELS_DIR, WHEELS_DIR, build_runner_wheel, ensure_models
from deploy.service import StreamSettings, service_action
from deploy.trust import TrustResult, trust_host

LOGS_DIR = REPO_ROOT / "build" / "logs"


def log_dir_for(command: str) -> Path:
    """build/logs/<command>-<UTC stamp>/ (one log file per host inside)."""
    return LOGS_DIR / f"{command}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def facts(host: Optional[str], inventory: Optional[str] = None) -> FleetResult:
    """Probe every selected host; each report's `.result` is a Facts."""
    hosts = load_inventory(inventory).select(host)
    return run_on(hosts, gather_facts, log_dir=log_dir_for("facts"))


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
) -> FleetResult:
    """Deploy to every selected host in parallel; models are exported first when missing."""
    hosts = load_inventory(inventory).select(host)
    manifest = ensure_models(models_dir, progress=note)
    runner = build_runner_wheel()  # content-addressed path: never rewritten under us
    return _deploy_hosts(
        hosts, runner, manifest, check, progress_for, models_dir, wheels_dir, log_dir
    )


def _deploy_hosts(hosts, runner, manifest, check, progress_for, models_dir, wheels_dir, log_dir):
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

    return run_on(hosts, workflow, log_dir=log_dir or log_dir_for("deploy"))


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
