"""Invoke tasks: parse flags, call one function, print, map errors to exit codes. No logic here.

Run `invoke --list` for the tasks and `invoke --help TASK` for the flags of one.
"""

from __future__ import annotations

import functools

from invoke import Exit, task

from deploy.errors import DeployError, InventoryError
from pi_setup.errors import EmulatorError, WheelError
from retinaface.errors import ModelError

USER_ERRORS = (ModelError, InventoryError, DeployError, WheelError, EmulatorError)


def user_errors(func):
    """Turn a user error into one clear line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as error:
            raise Exit(f"error: {error}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


# --- model tasks (retinaface/) ---

MODELS_DIR = "build/models"
NAMED_MODELS = {"fp32": "fp32.onnx", "torch": "retinaface-mnet025.pth"}


def _print_progress(message: str) -> None:
    print(f"- {message}", flush=True)


def _ensure_models(weights=None):
    """The manifest of build/models, exporting the models first if there are none."""
    from pathlib import Path

    from retinaface.export import export_models, load_manifest

    if weights or not (Path(MODELS_DIR) / "manifest.json").is_file():
        return export_models(Path(MODELS_DIR), weights=weights, progress=_print_progress)
    return load_manifest(Path(MODELS_DIR))


@task(
    help={
        "weights": "a biubug6 mobilenet0.25_Final.pth to use instead of the embedded trained weights",
    }
)
@user_errors
def models(c, weights=None):
    """Export the model variants into build/models with manifest.json (sha256, opset, parity)."""
    from pathlib import Path

    from retinaface.export import export_models

    manifest = export_models(Path(MODELS_DIR), weights=weights, progress=_print_progress)
    for name, entry in manifest["models"].items():
        parity = entry.get("parity", {}).get("max_abs_diff")
        extra = f", max |onnx - torch| = {parity:.2e}" if parity is not None else ""
        print(f"{name:>22}: {MODELS_DIR}/{entry['file']} ({entry['bytes']:,} bytes{extra})")


@task(
    help={
        "image": "the photograph to read (any format OpenCV reads)",
        "model": "fp32 (default), torch, or the path of an .onnx / .pth file",
        "out": "write an annotated PNG (boxes, scores, 5 landmarks) here",
        "json": "write the faces as JSON here",
        "conf": "score threshold (default 0.6)",
        "size": "resize the input to WIDTHxHEIGHT (coordinates stay in original pixels)",
        "long_side": "resize so the longer side has this many pixels",
        "backend": "onnxruntime, opencv or torch (default: from the model file)",
        "weights": "a biubug6 .pth to export from instead of the embedded weights",
    }
)
@user_errors
def detect(
    c,
    image,
    model="fp32",
    out=None,
    json=None,
    conf=0.6,
    size=None,
    long_side=None,
    backend=None,
    weights=None,
):
    """Detect faces in one image; print them, write an annotated PNG and/or JSON."""
    from pathlib import Path

    from retinaface.detector import parse_size
    from retinaface.errors import ModelError
    from retinaface.runner import build_parser, run_detect

    model_path = model
    if model in NAMED_MODELS:
        _ensure_models(weights)
        model_path = str(Path(MODELS_DIR) / NAMED_MODELS[model])
    try:
        parsed_size = parse_size(size) if size else None
    except ValueError as error:
        raise ModelError(f"--size: {error}") from None
    argv = ["detect", "--model", model_path, "--image", image, "--conf", str(conf)]
    args = build_parser().parse_args(argv)
    args.json, args.out, args.backend = json, out, backend
    args.size, args.long_side = parsed_size, int(long_side) if long_side else None
    result = run_detect(args)
    for face in result["faces"]:
        x1, y1, x2, y2 = face["box"]
        print(f"face {face['score']:.3f} at ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f})")
    print(
        f"{len(result['faces'])} faces in {image} ({result['width']}x{result['height']}, {model})"
    )
    for path in (out, json):
        if path:
            print(f"wrote {path}")


# --- deploy tasks (deploy/) ---

HOST_HELP = "a host or group of the inventory, or a comma list of them (default: local)"
INVENTORY_HELP = "the inventory file (default: inventory.yaml in the repository)"


def _tqdm_progress():
    """progress_for(host) → callable(done, total) drawing one tqdm byte bar per host."""
    import threading

    from tqdm import tqdm

    bars, lock = {}, threading.Lock()

    def progress_for(host):
        def update(done, total):
            with lock:
                bar = bars.get(host)
                if bar is None:
                    if total == 0:
                        return
                    bar = bars[host] = tqdm(
                        total=total, desc=host, unit="B", unit_scale=True, position=len(bars)
                    )
                bar.update(done - bar.n)
                if done >= total:
                    bar.close()

        return update

    return progress_for


@task(
    help={
        "host": HOST_HELP,
        "yes": "record the key without asking (only after checking the fingerprint elsewhere)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def trust_host(c, host=None, yes=False, inventory=None):
    """Show a host's SSH key fingerprint and record it in the project known_hosts on confirmation."""
    from deploy.commands import trust

    def confirm(result):
        print(f"{result.host}: {result.key_name} presents {result.key_type} {result.fingerprint}")
        if yes:
            return True
        return input("Record this key as trusted? [y/N] ").strip().lower() in ("y", "yes")

    for result in trust(host, confirm, inventory):
        where = f" in {result.file}" if result.file else ""
        print(f"{result.host}: {result.status}{where}")


@task(help={"host": HOST_HELP, "inventory": INVENTORY_HELP})
@user_errors
def facts(c, host=None, inventory=None):
    """Probe hosts: arch, OS, Python and wheel tag, RAM, free disk, Pi model, temperature."""
    from deploy.commands import facts as gather

    result = gather(host, inventory)
    for report in result.reports:
        if report.result is not None:
            print(f"== {report.host}")
            for key, value in report.result.summary().items():
                print(f"  {key:>12}: {value}")
    if result.exit_code:
        print(result.recap())
        raise Exit(code=result.exit_code)


@task(
    help={
        "host": HOST_HELP,
        "check": "show what would change on each host and change nothing",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def deploy(c, host=None, check=False, inventory=None):
    """Deploy models, the runner and matching wheels to hosts (releases + atomic `current`)."""
    from deploy.commands import deploy as run_deploy

    result = run_deploy(
        host,
        inventory,
        check=check,
        progress_for=None if check else _tqdm_progress(),
        note=_print_progress,
    )
    print(result.recap())
    if result.reports and result.reports[0].log:
        print(f"logs: {result.reports[0].log.parent}")
    if result.exit_code:
        raise Exit(code=result.exit_code)



# --- emulator tasks (pi_setup/emulator.py) ---


def _emu_line(st) -> str:
    state = f"running (pid {st.pid})" if st.running else "stopped"
    disk = "rootfs ready" if st.rootfs_ready else ("cached" if st.cached else "not built")
    return f"{st.host:16} {st.release:9} {st.address}:{st.port}  {state:20} {disk}"


@task(
    help={
        "release": "Debian release of the emulated Pi: bullseye (torch 1.7.1, default) "
        "or trixie (onnxruntime 1.21)",
    }
)
@user_errors
def emu_up(c, release="bullseye"):
    """Start an emulated armv7l Pi (builds or restores its root filesystem first; needs root)."""
    import time

    from pi_setup import emulator

    started = time.monotonic()

    def progress(msg):
        print(f"[{time.monotonic() - started:6.1f} s] {msg}", flush=True)

    st = emulator.up(release, progress=progress)
    print(f"{st.host} is up: ssh -i {st.key_file} -p {st.port} pi@{st.address}")
    print(f"host {st.host}  address {st.address}  port {st.port}  user pi  ({st.release} armhf)")


@task(help={"release": "stop only this release (bullseye or trixie); default: all"})
@user_errors
def emu_down(c, release=None):
    """Stop the emulated Pi(s): no process and no mount are left behind."""
    from pi_setup import emulator

    stopped = emulator.down(release)
    if not stopped:
        print("no emulator was running")
    for st in stopped:
        print(f"stopped {st.host} ({st.release}, port {st.port})")


@task
@user_errors
def emu_status(c):
    """Show which emulated Pis run, on which port, and what is built or cached."""
    from pi_setup import emulator

    for st in emulator.status_all():
        print(_emu_line(st))


# --- wheel tasks (pi_setup/ wheels) ---


# --- bench tasks ---
