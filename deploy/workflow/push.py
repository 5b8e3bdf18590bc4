"""The deploy workflow for one host: facts → release plan → sync → venv → switch `current`.

`deploy_host(conn)` is written once against the host interface, so the local host, an emulated
Pi and a real Pi go through the same steps. `check=True` reads the host and reports what would
change without writing anything.
"""

from __future__ import annotations

import getpass
import json
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from deploy.errors import DeployError
from deploy.hosts.connection import HostConnection
from deploy.hosts.facts import Facts, gather_facts
from deploy.hosts.scripts import render
from deploy.workflow.release import MODELS_DIR, WHEELS_DIR, ReleasePlan, plan_release
from deploy.workflow.service import restart_after_switch
from deploy.workflow.sync import (
    SyncPlan,
    acquire_lock,
    activate,
    apply_sync,
    plan_sync,
    read_state,
    release_lock,
    sha256sums,
)
from pi_setup.wheelhouse import wheel_requirements

# progress(bytes_done, bytes_total) for one host's uploads.
HostProgress = Callable[[int, int], None]


@dataclass
class DeployOutcome:
    """What a deploy did (or, with check, would do) on one host."""

    host: str
    release_id: str
    check: bool
    previous: Optional[str]
    uploaded: list = field(default_factory=list)  # release paths sent
    bytes_sent: int = 0  # payload bytes (metadata files excluded)
    metadata_bytes: int = 0  # SHA256SUMS and deploy.json
    linked: list = field(default_factory=list)  # release paths reused from older releases
    kept: int = 0  # files already in place
    venv_created: bool = False
    installed: list = field(default_factory=list)  # wheels pip-installed
    switched: bool = False
    pruned: list = field(default_factory=list)
    deploy_dir: str = ""
    service_restarted: bool = False  # the live stream service moved onto the new release

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.linked or self.venv_created or self.installed) or (
            self.switched
        )

    def summary(self) -> str:
        """One line for the recap."""
        if not self.changed:
            return f"no change: release {self.release_id} is current, 0 bytes sent"
        verb = "would send" if self.check else "sent"
        parts = [
            f"release {self.release_id}: {verb} {len(self.uploaded)} file(s), "
            f"{self.bytes_sent} bytes"
            + (f" ({', '.join(self.uploaded)})" if 0 < len(self.uploaded) <= 3 else "")
        ]
        if self.linked:
            parts.append(
                f"{'would reuse' if self.check else 'reused'} {len(self.linked)} unchanged"
            )
        if self.venv_created:
            parts.append("would create venv" if self.check else "venv created")
        if self.installed:
            parts.append(
                f"{'would install' if self.check else 'installed'} {', '.join(self.installed)}"
            )
        if self.switched:
            parts.append(
                f"{'would switch' if self.check else 'current'}: {self.previous or '(none)'} → "
                f"{self.release_id}"
            )
        if self.pruned:
            parts.append(f"pruned {', '.join(self.pruned)}")
        if self.service_restarted:
            parts.append("retinaface-stream restarted")
        return "; ".join(parts)


def deploy_json(conn: HostConnection, plan: ReleasePlan, facts: Facts) -> str:
    """The release record kept on the host: what, when, by whom, digests."""
    record = release_record(plan)
    record.update(
        {
            "host": conn.host.name,
            "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "deployed_by": f"{getpass.getuser()}@{platform.node()}",
            "facts": {
                "arch": facts.arch,
                "os_codename": facts.os_codename,
                "python_version": facts.python_version,
                "python_tag": facts.python_tag,
                "platform_tag": facts.platform_tag,
            },
        }
    )
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def release_record(plan: ReleasePlan) -> dict:
    """deploy.json's fields that depend on the release only (the bundle's playbook adds the rest)."""
    return {
        "format": 1,
        "release": plan.id,
        "runner_wheel": plan.runner_wheel,
        "wheels": list(plan.wheels),
        "models": {
            name: {key: entry.get(key) for key in ("file", "sha256", "bytes", "backend")}
            for name, entry in plan.manifest.get("models", {}).items()
        },
        "files": {item.rel: {"sha256": item.sha256, "bytes": item.size} for item in plan.files},
    }



def missing_requirements(host: str, facts: Facts, wheel_names) -> Optional[str]:
    """One line naming a pip requirement of the release's wheels that nothing satisfies, or None.

    Deploy never reaches a package index: a requirement (onnxruntime's numpy>=1.20,<2) is met by
    the host's own package (facts) or by a wheel for the host's tag in wheels/ (the wheelhouse).
    """
    from packaging.requirements import Requirement
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    names = list(wheel_names)
    available = {"numpy": [facts.numpy] if facts.numpy else []}
    for name in names:
        try:
            project, version, _, _ = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        available.setdefault(str(project), []).append(str(version))
    for wheel in names:
        for text in wheel_requirements([wheel])[0]:
            requirement = Requirement(text)
            versions = available.get(requirement.name, [])
            if any(requirement.specifier.contains(v, prereleases=True) for v in versions):
                continue
            tag = f"{facts.python_tag}-{facts.python_tag}-{facts.platform_tag}"
            on_host = facts.numpy if requirement.name == "numpy" else None
            return (
                f"{host}: {wheel} needs {text}; the host has {requirement.name} "
                f"{on_host or 'none'} and wheels/ has no {requirement.name} wheel for {tag} "
                f"that fits (build it: invoke build-wheels --builder cross --packages "
                f"{requirement.name}); deploy uses no package index"
            )
    return None



def shares_site(conn: HostConnection) -> bool:
    """Whether the host's venv must also see its interpreter's own site dirs: local hosts.

    The local host's interpreter is the Python that runs invoke (the inventory's default), often
    itself a venv. `python -m venv` from inside a venv makes a venv of the *base* interpreter,
    which never sees that venv's packages (numpy, cv2, onnxruntime): a .pth file adds them.
    """
    return conn.host.is_local


def _venv_step(plan: ReleasePlan, state, python: str, share: bool) -> tuple[bool, list, list]:
    """(venv to (re)create, wheels to install, marker lines) for the release's wheelhouse.

    The marker records the interpreter the venv was made from (`python PATH`) and whether it
    shares that interpreter's site dirs; another interpreter makes a new venv.
    """
    wheels = {
        Path(item.rel).name: item.sha256
        for item in plan.files
        if item.rel.startswith("wheelhouse/")
    }
    install = [name for name, sha in sorted(wheels.items()) if state.installed.get(name) != sha]
    create = not state.venv or state.installed.get(python) != "python"
    if create:
        install = sorted(wheels)
    marker = [f"{sha} {name}" for name, sha in sorted(wheels.items())]
    marker += [f"python {python}"] + (["site shared"] if share else [])
    return create, install, marker


def deploy_host(
    conn: HostConnection,
    check: bool = False,
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    runner_wheel: Optional[Path] = None,
    manifest: Optional[dict] = None,
    progress: Optional[HostProgress] = None,
) -> DeployOutcome:
    """Deploy models, runner and wheels to the host behind `conn` (see module docstring)."""
    host = conn.host
    deploy_dir = conn.expand(host.deploy_dir).rstrip("/")
    if not deploy_dir.startswith("/"):
        raise DeployError(f"{host.name}: deploy_dir {host.deploy_dir!r} must be absolute or ~/…")
    facts = gather_facts(conn)
    if not facts.python:
        raise DeployError(
            f"{host.name}: no Python interpreter {host.python!r} on the host "
            "(install python3, or set the inventory field `python`)"
        )
    plan = plan_release(
        facts.tags, models_dir, wheels_dir, runner_wheel=runner_wheel, manifest=manifest
    )
    missing = missing_requirements(host.name, facts, plan.wheels)
    if missing:
        raise DeployError(missing)
    share = shares_site(conn)
    outcome, work = _survey(conn, deploy_dir, plan, check, facts.python, share)
    if check or not work.needed:
        return outcome
    owner = acquire_lock(conn, deploy_dir)
    try:
        # again, now that we hold the lock
        outcome, work = _survey(conn, deploy_dir, plan, check, facts.python, share)
        if work.needed:
            _apply(conn, deploy_dir, plan, facts, outcome, work, progress)
    finally:
        release_lock(conn, deploy_dir, owner)
    return outcome


@dataclass
class _Work:
    """What `_apply` has to do, from `_survey`."""

    sync: SyncPlan
    install: list
    marker: list
    venv_step: bool
    switch: bool
    share: bool = False

    @property
    def needed(self) -> bool:
        return self.sync.changes_files or self.venv_step or self.switch


def _survey(conn, deploy_dir: str, plan: ReleasePlan, check: bool, python: str, share: bool):
    """Read the host's deploy directory and decide what to do (read-only)."""
    host = conn.host
    state = read_state(conn, deploy_dir, plan.id)
    sync: SyncPlan = plan_sync(plan.files, plan.id, state)
    venv_missing, install, marker = _venv_step(plan, state, python, share)
    marker_differs = dict(state.installed) != {
        line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in marker
    }
    outcome = DeployOutcome(
        host=host.name,
        release_id=plan.id,
        check=check,
        previous=state.current,
        uploaded=[item.rel for item in sync.upload],
        bytes_sent=sync.upload_bytes,
        linked=[item.rel for item, _ in sync.link],
        kept=len(sync.keep),
        venv_created=venv_missing,
        installed=install,
        switched=state.current != plan.id,
        deploy_dir=deploy_dir,
    )
    work = _Work(
        sync,
        install,
        marker,
        venv_missing or bool(install) or marker_differs,
        outcome.switched,
        share,
    )
    return outcome, work


def _apply(conn, deploy_dir, plan, facts, outcome, work, progress) -> None:
    """Carry out a survey's work: sync the release, install the venv, switch `current`."""
    host = conn.host
    sync, install, marker = work.sync, work.install, work.marker
    release_dir = f"{deploy_dir}/releases/{plan.id}"
    if sync.changes_files or outcome.switched:
        total = sync.upload_bytes
        per_file: dict = {}

        def file_progress(name: str, sent: int, _size: int) -> None:
            per_file[name] = sent
            progress(min(sum(per_file.values()), total), total)

        metadata = {"deploy.json": deploy_json(conn, plan, facts)}
        if not sync.release_complete:
            metadata["SHA256SUMS"] = sha256sums(plan.files)  # last: marks the release complete
        before = conn.bytes_sent
        uploaded = apply_sync(
            conn,
            deploy_dir,
            sync,
            progress=file_progress if progress else None,
            metadata=metadata,
        )
        outcome.uploaded = [item.rel for item in uploaded]
        outcome.bytes_sent = sum(item.size for item in uploaded)
        outcome.metadata_bytes = conn.bytes_sent - before - outcome.bytes_sent
        if progress and total:
            progress(total, total)
    if work.venv_step:
        pip_requirements, apt_packages = wheel_requirements(install)
        script = render(
            "deploy_venv.sh.j2",
            pip_requirements=pip_requirements,
            apt_packages=apt_packages,
            deploy_dir=deploy_dir,
            wheelhouse=f"{release_dir}/wheelhouse",
            python=facts.python,
            install=install,
            marker=marker,
            create=outcome.venv_created,
            share_site=work.share,
        )
        conn.run("bash -c " + shlex.quote(script), timeout=1800)
    if outcome.switched:
        outcome.pruned = activate(conn, deploy_dir, plan.id, host.keep_releases)
        # Only a new `current` restarts the live service; an unchanged deploy never gets here.
        outcome.service_restarted = restart_after_switch(conn)
