"""What the emulated tier deploys, made or verified for this run, and deployed idempotently.

Each test names the deploy it needs (a fixture of conftest.py: `pi4_emu_deployed`,
`trixie_deployed`), so no test relies on what another test, an earlier file or an earlier run
left behind:
- build/models holds this session's export (the `models_dir` the current code made); a warm
  build/models whose digests differ from it is replaced;
- wheels/ holds the pinned onnxruntime 1.8.1 (sha256 from the lock) and a numpy wheel whose
  sha256 matches wheels/manifest.json's record of a cross build of today's pinned version with
  today's build root; anything else is rebuilt (`invoke build-wheels --builder cross`);
- the Pi is redeployed whenever its `current` release is not the one this session deployed from
  the same inputs (a test that deploys something else, e.g. the pi-probe wheel, is undone).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from retinaface.files import sha256_file

from .conftest import IMAGES, REPO, invoke, ssh, ssh_argv

DEPLOY_DIR = "retinaface-pi"  # inventory.yaml: deploy_dir ~/retinaface-pi (ssh starts in ~)
ORT_FILE = "onnxruntime-1.8.1-cp39-cp39-linux_armv7l.whl"
ORT_SHA256 = "f2a1cd015bbbf54e5e5d05490e8e3292d2ed877281e37e969ee97ce41d2d6c2d"  # shared SOURCES.md
PI4_TAGS = ("cp39-cp39-linux_armv7l",)
IMAGE_NAMES = ("group.jpg", "selfie.jpg")
REMOTE = "retinaface-emu-test"  # the test images on the Pi, beside the deploy


def _digests(models: Path) -> dict:
    entries = json.loads((models / "manifest.json").read_text())["models"]
    return {name: entry.get("sha256") for name, entry in entries.items()}


def fresh_build_models(session_models: Path) -> Path:
    """REPO/build/models equal, file by file (sha256), to this session's export."""
    target = REPO / "build" / "models"
    want = _digests(session_models)
    if (target / "manifest.json").is_file():
        have = _digests(target)
        entries = json.loads((target / "manifest.json").read_text())["models"]
        files_ok = all(
            (target / e["file"]).is_file() and sha256_file(target / e["file"]) == e["sha256"]
            for e in entries.values()
        )
        if have == want and files_ok:
            return target
    staging = target.parent / f".models.test-{hashlib.sha256(str(want).encode()).hexdigest()[:8]}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(session_models, staging)
    aside = target.parent / ".models.test-old"
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        target.rename(aside)
    staging.rename(target)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def verified_numpy_wheel(wheels: Path):
    """wheels/'s numpy wheel if its sha256 is the one wheels/manifest.json records for a cross
    build of today's pinned numpy on today's build root, else None."""
    from pi_setup import cross

    name = f"numpy-{cross.NUMPY.version}-cp39-cp39-linux_armv7l.whl"
    path = wheels / name
    try:
        entry = json.loads((wheels / "manifest.json").read_text())["wheels"][name]
    except (OSError, ValueError, KeyError):
        return None
    root = cross.cache_key(cross.target_of(cross.DEFAULT_TARGET))
    if not path.is_file() or entry.get("version") != cross.NUMPY.version:
        return None
    if f"(key {root})" not in entry.get("sysroot", "") or sha256_file(path) != entry.get("sha256"):
        return None
    return path


def install_cross_numpy(cross_run, wheels: Path) -> Path:
    """The session's cross-built numpy wheel into wheels/ (temp name, then rename) + its record."""
    from pi_setup import build_wheels as bw

    assert cross_run.result.returncode == 0, (
        cross_run.result.stdout[-3000:] + cross_run.result.stderr[-3000:]
    )
    built = cross_run.wheel("numpy")
    partial = wheels / f".{built.name}.part"
    shutil.copyfile(built, partial)
    partial.rename(wheels / built.name)
    bw.update_manifest(wheels / bw.MANIFEST_NAME, {built.name: cross_run.manifest[built.name]})
    return wheels / built.name


def chosen_numpy(wheels: Path):
    """The numpy wheel deploy would ship to pi4-emu from WHEELS (None if none fits)."""
    from pi_setup.wheelhouse import matching_wheels

    picked = [p for p in matching_wheels(wheels, PI4_TAGS) if p.name.startswith("numpy-")]
    return picked[0] if picked else None


def inputs_digest() -> str:
    """What a deploy ships from the workstation: the models manifest and every wheel's bytes."""
    digest = hashlib.sha256((REPO / "build" / "models" / "manifest.json").read_bytes())
    for path in sorted(glob.glob(str(REPO / "wheels" / "*.whl"))):
        digest.update(f"{Path(path).name} {sha256_file(path)}\n".encode())
    return digest.hexdigest()


def pi_state(st) -> tuple:
    """(release id of the Pi's `current` or None, its venv's wheel marker or None)."""
    out = ssh(
        st,
        f"cat {DEPLOY_DIR}/current/deploy.json 2>/dev/null; echo; echo '--- venv'; "
        f"cat {DEPLOY_DIR}/venv/.retinaface-pi-wheels 2>/dev/null",
        timeout=300,
    )
    record, _, marker = out.stdout.partition("\n--- venv\n")
    try:
        release = json.loads(record)["release"]
    except (ValueError, KeyError, TypeError):
        release = None
    return release, marker or None


def deploy_once(emulators, st) -> None:
    """`invoke deploy --host <emulator>` unless the Pi still has what this session deployed there
    from the same inputs (its `current` release and venv; a no-op deploy is slow under qemu)."""
    key = inputs_digest()
    done = emulators.deployed.get(st.release)
    if done is not None and done == (key, pi_state(st)):
        return
    out = invoke("deploy", "--host", st.host, timeout=1800)
    assert out.returncode == 0, (
        f"deploy to {st.host} failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    )
    state = pi_state(st)
    assert state[0] and state[1], f"{st.host}: no current/deploy.json or venv marker after deploy"
    emulators.deployed[st.release] = (key, state)


def upload_images(st) -> None:
    """The test images into ~/REMOTE/images on the Pi (replacing what was there)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in IMAGE_NAMES:
            tar.add(IMAGES / name, f"images/{name}")
    proc = subprocess.run(
        ssh_argv(st) + [f"rm -rf {REMOTE} && mkdir -p {REMOTE} && tar -x -C {REMOTE} -f -"],
        input=buffer.getvalue(),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
