"""`invoke count`: every variant on every emulated host, counted; records for --json and bench.json.

Variants resolve against the workstation's build/models/manifest.json (the bytes `invoke deploy`
ships, sha256 recorded); `study` is the study's pipeline on the plain opset-11 export (fp32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

from pi_setup.counting import plugin, predict, run
from pi_setup.errors import EmulatorError

DEFAULT_VARIANTS = ("fp32", "fp32-opt", "int8", "int8-qop", "opencv", "torch", "study")
DEFAULT_IMAGE = "group.jpg"
COUNT_FORMAT = 1  # the record's schema version (bench.json "counts" and --json)


def resolve(variant: str, manifest: dict, models_dir: Path, size: tuple) -> tuple:
    """(model path, backend, study?, sha256) of VARIANT, or an EmulatorError saying why not."""
    models = manifest.get("models", {})
    study = variant == "study"
    name = {"study": "fp32", "opencv": f"fp32-static-{size[0]}x{size[1]}"}.get(variant, variant)
    entry = models.get(name)
    if entry is None or not isinstance(entry.get("file"), str):
        has = ", ".join(sorted(models))
        hint = " (invoke models --fixed-size WxH builds it)" if variant == "opencv" else ""
        raise EmulatorError(f"variant {variant}: needs {name} in manifest.json{hint} (has: {has})")
    backend = "opencv" if variant == "opencv" else entry.get("backend") or "onnxruntime"
    path = models_dir / Path(entry["file"]).name
    if not path.is_file():
        raise EmulatorError(f"variant {variant}: {path} is missing (invoke models)")
    return path, backend, study, entry.get("sha256")


def check_variants(names: List[str]) -> List[str]:
    bad = [n for n in names if n not in DEFAULT_VARIANTS]
    if bad or not names:
        raise EmulatorError(
            f"--variants {','.join(bad) or '(none)'}: choose from {', '.join(DEFAULT_VARIANTS)}"
        )
    return names


def count(
    hosts: List[str],
    variants: List[str],
    size: tuple,
    cpu: str,
    manifest: Callable[[], dict],
    models_dir: Path,
    image: Path,
    frames: int = 3,
    progress: Callable[[str], None] = lambda _m: None,
    guest_for: Optional[Callable] = None,
) -> List[dict]:
    """One record per host and variant: counted stages, or `skipped` with the reason.

    MANIFEST is called once every argument is checked (it may export the models)."""
    if cpu not in run.CPUS:
        raise EmulatorError(f"--cpu {cpu}: choose {' or '.join(run.CPUS)}")
    check_variants(variants)
    if not image.is_file():
        raise EmulatorError(f"--image {image}: no such file")
    guests = [(guest_for or run.guest_for)(host) for host in hosts]  # all checked before work
    so = plugin.plugin_path(progress)
    models = manifest()  # may export the models: after every check of the command line
    records = []
    for guest in guests:
        for index, variant in enumerate(variants, start=1):
            base = {"host": guest.host, "variant": variant, "cpu": cpu,
                    "qemu_cpu": run.QEMU_CPU[guest.target][cpu], "target": guest.target,
                    "size": f"{size[0]}x{size[1]}", "format": COUNT_FORMAT}  # fmt: skip
            try:
                model, backend, study, sha = resolve(variant, models, models_dir, size)
            except EmulatorError as error:
                progress(f"[{guest.host} {index}/{len(variants)}] {variant}: skipped: {error}")
                records.append({**base, "skipped": str(error)})
                continue
            progress(
                f"[{guest.host} {index}/{len(variants)}] {variant}: counting {frames} frames of "
                f"{model.name} ({backend}) under qemu -cpu {base['qemu_cpu']} (minutes)"
            )
            try:
                stages, faces = run.count_one(
                    guest, so, model, backend, image, size, cpu, frames, study
                )
            except EmulatorError as error:
                progress(f"[{guest.host} {index}/{len(variants)}] {variant}: failed: {error}")
                records.append({**base, "skipped": str(error)})
                continue
            counted = run.Counted(
                guest.host, variant, cpu, base["qemu_cpu"], guest.target, size, frames,
                stages, faces, model.name, sha,
            )  # fmt: skip
            records.append({**counted.record(), "format": COUNT_FORMAT})
    predict.attach(records)
    return records
