"""A release as a self-contained folder Ansible can deploy: `invoke bundle` → `ansible-playbook`.

    build/bundle/<release-id>/
      deploy.yml                 the playbook (templates/bundle_playbook.yml.j2)
      bundle.yml                 its vars: release id, digests, wheels, venv marker, deploy.json base
      files/release-<id>.tar     models/, wheelhouse/ (runner + matching wheels), probe.jpg, SHA256SUMS
      templates/*.sh.j2          the very scripts `invoke deploy` runs (state, venv, activate, lock)
      filter_plugins/shq.py      the `shq` filter those scripts quote with
      SHA256SUMS                 of every file above

The playbook does on each host what `deploy.workflow.push.deploy_host` does, with the same scripts, so
the host ends up with the same layout; a second run changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import yaml

from deploy.errors import DeployError
from deploy.hosts.inventory import DEFAULT_DEPLOY_DIR, DEFAULT_KEEP_RELEASES
from deploy.hosts.scripts import TEMPLATES, render
from deploy.paths import BUNDLE_DIR
from deploy.workflow.push import release_record
from deploy.workflow.release import MODELS_DIR, WHEELS_DIR, ReleasePlan, plan_release
from pi_setup.wheelhouse import wheel_requirements, wheel_tags

# Scripts the playbook renders on the controller (Ansible's template lookup) and runs on hosts.
HOST_SCRIPTS = (
    "facts.sh.j2",
    "deploy_state.sh.j2",
    "deploy_lock.sh.j2",
    "deploy_venv.sh.j2",
    "deploy_activate.sh.j2",
    "deploy_layout.inc.j2",  # included by the state, link and activate scripts
    "bundle_unpack.sh.j2",
)
FILTER_PLUGIN = '''"""The `shq` filter of retinaface-pi's templates (deploy/hosts/scripts.py): quote for bash."""

import shlex


class FilterModule:
    def filters(self):
        return {"shq": lambda value: shlex.quote(str(value))}
'''


@dataclass(frozen=True)
class Bundle:
    """A written bundle: where, which release, and its playbook."""

    path: Path
    release_id: str
    files: int  # release files in the archive
    bytes: int  # archive size

    @property
    def playbook(self) -> Path:
        return self.path / "deploy.yml"


def release_tar(plan: ReleasePlan, sums: str) -> bytes:
    """The release files and SHA256SUMS as a reproducible tar (sorted, fixed owner, time, modes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        dirs = sorted({str(Path(item.rel).parent) for item in plan.files} - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        entries = [(item.rel, item.local.read_bytes()) for item in plan.files]
        entries.append(("SHA256SUMS", sums.encode()))
        for rel, data in sorted(entries):
            info = tarfile.TarInfo(rel)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def bundle_vars(plan: ReleasePlan) -> dict:
    """What the playbook needs to know about the release (bundle.yml)."""
    wheels = [item for item in plan.files if item.rel.startswith("wheelhouse/")]
    names = sorted(Path(item.rel).name for item in wheels)
    pip, apt = wheel_requirements(names)
    return {
        "rfpi_release": plan.id,
        "rfpi_have": sorted(f"{item.sha256} {item.rel}" for item in plan.files),
        "rfpi_wheels": names,
        # Each fetched wheel's tags: the playbook refuses a host that supports none of them.
        "rfpi_wheel_tags": [sorted(wheel_tags(name)) for name in plan.wheels],
        "rfpi_marker": [
            f"{item.sha256} {Path(item.rel).name}"
            for item in sorted(wheels, key=lambda item: Path(item.rel).name)
        ],
        "rfpi_pip_requirements": pip,
        "rfpi_apt_packages": apt,
        "rfpi_record": release_record(plan),
        "rfpi_default_deploy_dir": DEFAULT_DEPLOY_DIR,
        "rfpi_default_keep_releases": DEFAULT_KEEP_RELEASES,
    }


def write_bundle(
    host_tags: Iterable[str],
    out_root: Path = BUNDLE_DIR,
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    runner_wheel: Optional[Path] = None,
    manifest: Optional[dict] = None,
) -> Bundle:
    """Write `out_root/<release-id>/` (see module docstring); a complete bundle is reused as is.

    Written under a temp name and renamed, so a bundle folder is never half-written.
    """
    from deploy.workflow.sync import sha256sums

    plan = plan_release(
        host_tags, models_dir, wheels_dir, runner_wheel=runner_wheel, manifest=manifest
    )
    out_root = Path(out_root)
    final = out_root / plan.id
    tar_name = f"release-{plan.id}.tar"
    if (final / "SHA256SUMS").is_file():
        return Bundle(final, plan.id, len(plan.files), (final / "files" / tar_name).stat().st_size)
    out_root.mkdir(parents=True, exist_ok=True)
    stage = out_root / f".{plan.id}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        (stage / "files").mkdir(parents=True)
        (stage / "templates").mkdir()
        (stage / "filter_plugins").mkdir()
        archive = release_tar(plan, sha256sums(plan.files))
        (stage / "files" / tar_name).write_bytes(archive)
        for name in HOST_SCRIPTS:
            shutil.copyfile(TEMPLATES / name, stage / "templates" / name)
        (stage / "filter_plugins" / "shq.py").write_text(FILTER_PLUGIN)
        (stage / "bundle.yml").write_text(
            "# Vars of deploy.yml for release "
            + plan.id
            + " (written by `invoke bundle`).\n"
            + yaml.safe_dump(bundle_vars(plan), sort_keys=True, width=1000)
        )
        (stage / "deploy.yml").write_text(
            render("bundle_playbook.yml.j2", release_id=plan.id, bundle=final)
        )
        sums = []
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            sums.append(f"{digest}  {path.relative_to(stage)}\n")
        (stage / "SHA256SUMS").write_text("".join(sums))  # last: marks the bundle complete
        if final.exists():
            shutil.rmtree(final)  # an incomplete bundle of an interrupted run
        os.replace(stage, final)
    except OSError as error:
        raise DeployError(f"{final}: cannot write the bundle: {error}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Bundle(final, plan.id, len(plan.files), len(archive))
