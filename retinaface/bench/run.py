"""The benchmark that runs on the host: `python -m retinaface.runner bench --models DIR ...`.

Per model variant the host can run: load, one first inference, warm-up runs, then timed runs in
K windows (each with a minimum count and a minimum duration), timing pre-process, inference,
post-process and end to end separately on a real photo; telemetry before and after; a variant
whose throttle bits changed is marked invalid. Torch-free core, Python 3.7+, numpy 1.16+.
"""

import gc
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Tuple

from ..backends import ENGINES, backend_for, missing_runtime, requirements
from ..config import CONF_THRESHOLD
from ..errors import ModelError, SettingError
from ..files import sha256_file
from ..manifest import load_manifest, not_built_reason
from ..names import DEFAULT_VARIANTS, is_model_path, static_name
from . import telemetry
from .schema import RESULT_FORMAT, STAGES, summarize

DEFAULT_SIZE = (640, 480)
DEFAULT_WARMUP = 5
DEFAULT_RUNS = 50
DEFAULT_WINDOWS = 5
DEFAULT_MIN_TIME = 1.0  # seconds of timed runs per variant, at least
DEFAULT_MAX_TIME = 300.0  # stop a variant's timed runs after this many seconds
PROGRESS_EVERY = 0.5  # seconds between progress file updates
PROFILE_RUNS = 5  # frames through the profiling session of each ONNX cell
# --stream: per ONNX cell, rounds of (single-frame runs, stream segment); see bench_stream.
STREAM_ROUNDS, STREAM_RUNS, STREAM_FRAMES = 3, 10, 20
DEFAULT_SAMPLE_EVERY = 1.0  # seconds between telemetry samples during the timed runs

# progress(event) with event = {"variant", "index", "count", "phase", "done", "total"}.
Progress = Callable[[dict], None]


@dataclass
class BenchConfig:
    """What to measure and how (the `bench` command line)."""

    models_dir: str
    image: str
    variants: Optional[List[str]] = None  # None: DEFAULT_VARIANTS
    size: Tuple[int, int] = DEFAULT_SIZE
    threads: Optional[int] = None  # None: the runtime's default
    warmup: int = DEFAULT_WARMUP
    runs: int = DEFAULT_RUNS
    windows: int = DEFAULT_WINDOWS
    min_time_s: float = DEFAULT_MIN_TIME
    max_time_s: float = DEFAULT_MAX_TIME
    conf_threshold: float = CONF_THRESHOLD
    cooldown_below_c: Optional[float] = None
    cooldown_max_s: float = 120.0
    telemetry_root: str = "/"
    sizes: Optional[List[Tuple[int, int]]] = None  # a sweep over sizes (None: [size])
    thread_counts: Optional[List[Optional[int]]] = None  # a sweep over threads (None: [threads])
    profile: bool = False  # onnxruntime's profiler: the operators each ONNX cell executes
    stream: bool = False  # runner stream FPS against 1000 / single-frame e2e, per ONNX cell
    sample_every_s: float = DEFAULT_SAMPLE_EVERY

    def check(self):
        """SettingError for a count the benchmark cannot run with."""
        for setting in ("runs", "windows"):
            if getattr(self, setting) < 1:
                raise SettingError(setting, "{setting} must be at least 1")
        if self.warmup < 0:
            raise SettingError("warmup", "{setting} must be 0 or more")
        return self

    def all_sizes(self):
        return [tuple(size) for size in (self.sizes or [self.size])]

    def all_threads(self):
        return list(self.thread_counts or [self.threads])


@dataclass
class VariantPlan:
    """One requested variant resolved against manifest.json (or the reason it cannot run)."""

    name: str
    backend: Optional[str] = None
    file: Optional[str] = None
    path: Optional[str] = None
    sha256: Optional[str] = None
    skipped: Optional[str] = None
    extra: dict = field(default_factory=dict)


def runtime_versions():
    """Versions of Python, numpy and the runtimes this process has imported (none are imported
    just to ask: loading torch beside onnxruntime would change what is measured)."""
    import numpy as np

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for module in sorted(m for engine in ENGINES.values() for m in requirements(engine)):
        if sys.modules.get(module) is not None:
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    return versions


def _plan_path(name):
    """A model file named by path: the backend follows the suffix; no manifest digest."""
    path = os.path.expanduser(name)
    plan = VariantPlan(name=name, file=os.path.basename(path), path=path)
    plan.backend = backend_for(path)
    if not os.path.isfile(path):
        plan.skipped = "model file {} is missing".format(path)
    else:
        plan.skipped = missing_runtime(plan.backend)
    return plan


def plan_variant(name, manifest, models_dir, size):
    """Resolve `name` against the manifest; `skipped` says why it cannot run here."""
    models = manifest["models"]
    if name not in models and is_model_path(name):
        return _plan_path(name)
    plan = VariantPlan(name=name)
    if name == "opencv":
        # cv2.dnn needs the static, simplified graph exported at the benchmark's input size.
        wanted = static_name(size)
        entry = models.get(wanted)
        plan.backend = "opencv"
        if entry is None:
            statics = sorted(key for key in models if key.startswith("fp32-static-"))
            plan.skipped = "needs {} in manifest.json for --size {}x{} (has: {})".format(
                wanted, size[0], size[1], ", ".join(statics) or "no static model"
            )
            return plan
    else:
        entry = models.get(name)
        if entry is None:
            reason = not_built_reason(manifest, name)
            if reason:
                plan.skipped = "not built: {}".format(reason[:300])
            else:
                plan.skipped = "not in manifest.json (has: {})".format(", ".join(sorted(models)))
            return plan
        plan.backend = entry.get("backend") or "onnxruntime"
    plan.file = entry.get("file")
    plan.sha256 = entry.get("sha256")
    plan.extra = {k: entry[k] for k in ("opset", "bytes", "input_size") if k in entry}
    if not plan.file:
        plan.skipped = "manifest.json entry has no file"
        return plan
    plan.path = os.path.join(str(models_dir), plan.file)
    if not os.path.isfile(plan.path):
        plan.skipped = "model file {} is missing".format(plan.path)
        return plan
    if plan.sha256 and sha256_file(plan.path) != plan.sha256:
        plan.skipped = "{}: sha256 differs from manifest.json (redeploy)".format(plan.path)
        return plan
    for companion in entry.get("companions") or []:  # e.g. ncnn's .bin beside its .param
        path = os.path.join(str(models_dir), os.path.basename(str(companion.get("file"))))
        if not os.path.isfile(path) or sha256_file(path) != companion.get("sha256"):
            plan.skipped = "{}: missing or sha256 differs from manifest.json (redeploy)".format(
                path
            )
            return plan
    reason = missing_runtime(plan.backend)
    if reason:
        plan.skipped = reason
    return plan


def _windows_plan(config):
    windows = max(1, int(config.windows))
    per_window = max(1, int(math.ceil(max(1, config.runs) / float(windows))))
    return windows, per_window, max(0.0, config.min_time_s) / windows


def time_one(detector, image):
    """(pre, infer, post, e2e) in ms for one frame, and the faces found."""
    clock = time.perf_counter
    t0 = clock()
    blob = detector.preprocess(image)
    t1 = clock()
    outputs = detector.infer(blob)
    t2 = clock()
    faces = detector.postprocess(outputs, blob.shape, image.shape)
    t3 = clock()
    return ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3), faces


class _Ticker(object):
    """Forwards progress events, at most every PROGRESS_EVERY seconds unless forced."""

    def __init__(self, progress, base):
        self.progress, self.base, self.last = progress, base, 0.0

    def __call__(self, phase, done=0, total=0, force=False, **extra):
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_EVERY:
            self.last = now
            event = dict(self.base, phase=phase, done=done, total=total, **extra)
            self.progress(event)


class Cell(object):
    """One measured combination: a variant at an input size with a thread count."""

    def __init__(self, key, variant, size, threads, plan):
        self.key, self.variant, self.size, self.threads, self.plan = (
            key,
            variant,
            tuple(size),
            threads,
            plan,
        )
        self.detector = None
        self.record = None
        self.before = None
        self.samples = [[] for _ in STAGES]
        self.windows = []
        self.faces = []
        self.timed_s = 0.0
        self.stopped = False
        self.error = None

    def describe(self):
        return {"variant": self.variant, "size": list(self.size), "threads": self.threads}


def cell_key(variant, size, threads, sweep):
    """The variant's name alone for a single setting, else `fp32 320x240 2t`."""
    if not sweep:
        return variant
    return "{} {}x{} {}".format(
        variant, size[0], size[1], "{}t".format(threads) if threads else "auto"
    )


def plan_cells(config, manifest):
    """Every (size, threads, variant) combination, size-major, resolved against the manifest."""
    names = list(config.variants or DEFAULT_VARIANTS)
    sizes, threads = config.all_sizes(), config.all_threads()
    sweep = len(sizes) > 1 or len(threads) > 1
    cells = []
    for size in sizes:
        for count in threads:
            for name in names:
                plan = plan_variant(name, manifest, config.models_dir, size)
                cells.append(Cell(cell_key(name, size, count, sweep), name, size, count, plan))
    return cells


def _apply_threads(cell):
    """torch and OpenCV keep one process-wide thread count: set it before each turn of a cell."""
    if not cell.threads or cell.detector is None:
        return
    backend = getattr(cell.detector, "backend", None)
    if cell.plan.backend == "torch" and hasattr(backend, "torch"):
        backend.torch.set_num_threads(int(cell.threads))
    elif cell.plan.backend == "opencv":
        import cv2

        cv2.setNumThreads(int(cell.threads))


def _prepare_cell(cell, image, config, tick, snapshot):
    """Cool down, take the 'before' telemetry, load, first inference, warm-up."""
    from ..detector import Detector

    record = {
        "status": "ok",
        "skipped": None,
        "cell": cell.describe(),
        "backend": cell.plan.backend,
        "file": cell.plan.file,
        "sha256": cell.plan.sha256,
        "model": cell.plan.extra,
        "valid": True,
        "invalid_reasons": [],
        "warnings": [],
    }
    cell.record = record
    if config.cooldown_below_c is not None:
        tick("cooldown", force=True)
        record["cooldown"] = telemetry.cool_down(
            config.cooldown_below_c,
            config.cooldown_max_s,
            lambda: telemetry.read_temperature(config.telemetry_root),
        )
        if record["cooldown"]["reached"] is False:
            record["warnings"].append(
                "still {:.1f} C after waiting {:.0f} s to cool below {:.1f} C".format(
                    record["cooldown"]["end_c"], config.cooldown_max_s, config.cooldown_below_c
                )
            )
    cell.before = snapshot(config.telemetry_root)
    tick("load", force=True)
    started = time.perf_counter()
    cell.detector = Detector(
        cell.plan.path,
        backend=cell.plan.backend,
        size=tuple(cell.size),
        conf_threshold=config.conf_threshold,
        threads=cell.threads,
        spinning=False,
    )
    record["init_ms"] = round((time.perf_counter() - started) * 1e3, 3)
    record["input_size"] = list(cell.detector.input_size(image))
    _apply_threads(cell)
    times, cell.faces = time_one(cell.detector, image)
    record["first_ms"] = round(times[3], 3)
    for index in range(config.warmup):
        tick("warmup", index, config.warmup)
        time_one(cell.detector, image)


def _run_window(cell, image, per_window, window_time, max_time_s):
    """One timed window of a cell: at least `per_window` runs and `window_time` seconds."""
    _apply_threads(cell)
    gc.collect()
    count, start = 0, time.perf_counter()
    while True:
        times, cell.faces = time_one(cell.detector, image)
        for bucket, value in zip(cell.samples, times):
            bucket.append(value)
        count += 1
        now = time.perf_counter()
        if count >= per_window and now - start >= window_time:
            break
        if cell.timed_s + (now - start) >= max_time_s:
            break
    seconds = time.perf_counter() - start
    cell.timed_s += seconds
    cell.windows.append(
        {"runs": count, "seconds": round(seconds, 4), "fps": round(count / seconds, 3)}
    )
    if cell.timed_s >= max_time_s:
        cell.stopped = True
        cell.record["warnings"].append(
            "stopped after --max-time {:.0f} s with {} timed runs".format(
                max_time_s, len(cell.samples[0])
            )
        )
    return count


def _finish_cell(cell, image, config, snapshot, sampler):
    """Statistics, telemetry after and during the runs, validity, the optional profile."""
    record = cell.record
    after = snapshot(config.telemetry_root)
    record["runs"] = len(cell.samples[0])
    record["windows"] = cell.windows
    record["fps"] = round(float(statistics.median([w["fps"] for w in cell.windows])), 3)
    record["stages"] = {stage: summarize(bucket) for stage, bucket in zip(STAGES, cell.samples)}
    record["samples_ms"] = {
        stage: [round(value, 3) for value in bucket] for stage, bucket in zip(STAGES, cell.samples)
    }
    record["faces"] = len(cell.faces)
    record["peak_rss_mb"] = peak_rss_mb()
    trace = sampler.trace(cell.key)
    record["telemetry"] = {
        "before": cell.before.to_dict(),
        "after": after.to_dict(),
        "trace": trace,
    }
    reasons, warnings = telemetry.validity(cell.before, after)
    reasons += [r for r in telemetry.trace_validity(trace, cell.before) if r not in reasons]
    if not cell.faces:
        reasons.append("no face found on the probe image {}".format(config.image))
    record["invalid_reasons"] += reasons
    record["warnings"] += warnings
    record["valid"] = not record["invalid_reasons"]
    if config.profile and cell.plan.backend == "onnxruntime":
        from .ort_profile import profile_model

        try:
            blob = cell.detector.preprocess(image)
            record["profile"] = profile_model(cell.plan.path, blob, cell.threads, PROFILE_RUNS)
        except Exception as error:  # noqa: BLE001 - a profiler problem is a note, not a failure
            record["warnings"].append("profile failed: {}".format(_first_line(error)))
    cell.detector = None  # free the session before the next cell is finished
    return record


def _first_line(error):
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else ""


def _failed(cell, error):
    return {
        "status": "failed",
        "skipped": "{}{}".format(
            "" if isinstance(error, ModelError) else type(error).__name__ + ": ",
            _first_line(error),
        ),
        "cell": cell.describe(),
        "backend": cell.plan.backend,
        "file": cell.plan.file,
        "valid": False,
    }


def peak_rss_mb():
    """The process's peak resident memory so far in MB (Linux reports ru_maxrss in KiB)."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def host_info(root="/"):
    """What the benchmark ran on, as the runner sees it."""
    cpu = None
    try:
        with open(os.path.join(root, "proc/cpuinfo")) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    cpu = value.strip()
                    if key.strip() == "model name":
                        break
    except (IOError, OSError):
        pass
    return {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "pi_model": telemetry.pi_model(root),
        "versions": runtime_versions(),
    }


def host_warnings(snap, cpus):
    """Warnings about the host's state before the benchmark: other load, a scaling governor."""
    warnings = []
    if snap.loadavg and snap.loadavg[0] > 0.5 * cpus:
        warnings.append(
            "load average {:.2f} on {} CPU(s) before the run: other work competes".format(
                snap.loadavg[0], cpus
            )
        )
    if snap.governor and snap.governor != "performance":
        warnings.append(
            "CPU governor {}: clocks follow the load (the `performance` governor gives steadier "
            "numbers)".format(snap.governor)
        )
    return warnings


def _utc(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def run_bench(config, progress=None, snapshot=telemetry.snapshot, sampler=None):
    """Benchmark every requested cell (variant x size x threads); returns the --json payload.

    All cells are loaded and warmed up first; then the timed windows go round the cells in
    turn (starting one cell later each round), so drift and other load hit every cell alike.
    """
    from ..imageio import read_image

    config.check()
    started = time.time()
    manifest = load_manifest(config.models_dir)
    image = read_image(config.image)
    cells = plan_cells(config, manifest)
    result = {
        "format": RESULT_FORMAT,
        "tool": "retinaface.runner bench",
        "started": _utc(started),
        "host": None,  # filled in at the end, when the runtimes used have been imported
        "config": dict(
            asdict(config),
            size=list(config.size),
            sizes=[list(size) for size in config.all_sizes()],
            thread_counts=config.all_threads(),
            variants=list(config.variants or DEFAULT_VARIANTS),
            image_size=[int(image.shape[1]), int(image.shape[0])],
        ),
        "models": {"manifest_weights": manifest.get("weights")},
        "order": [cell.key for cell in cells],
        "variants": {},
    }
    start = snapshot(config.telemetry_root)
    result["telemetry"] = {"start": start.to_dict()}
    result["warnings"] = host_warnings(start, os.cpu_count() or 1)
    sampler = sampler or telemetry.Sampler(
        config.sample_every_s,
        lambda: telemetry.sample(config.telemetry_root),
    )
    sampler.start()
    try:
        live = _prepare_all(cells, image, config, progress, snapshot, result)
        _timed_rounds(live, image, config, progress, sampler)
        for index, cell in enumerate(live):
            tick = _Ticker(progress, _event_base(cell, index, len(cells)))
            try:
                if cell.error is not None:
                    raise cell.error
                result["variants"][cell.key] = _finish_cell(cell, image, config, snapshot, sampler)
            except Exception as error:  # noqa: BLE001 - one cell failing must not lose the others
                result["variants"][cell.key] = _failed(cell, error)
            tick("done", force=True, overall=1.0)
        if config.stream:
            _stream_cells(cells, result["variants"], config, progress)
    finally:
        sampler.stop()
    result["variants"] = {cell.key: result["variants"][cell.key] for cell in cells}
    result["telemetry"]["end"] = snapshot(config.telemetry_root).to_dict()
    result["host"] = host_info(config.telemetry_root)
    result["finished"] = _utc(time.time())
    result["seconds"] = round(time.time() - started, 3)
    return result


def _stream_cells(cells, records, config, progress):
    """--stream: the stream pipeline's FPS against 1000 / single-frame e2e for each ONNX cell
    that ran, on a video of the probe photograph (after every timed window, so it never
    competes with them)."""
    from .stream_bench import run_stream_bench

    for index, cell in enumerate(cells):
        record = records.get(cell.key, {})
        if record.get("status") != "ok" or cell.plan.backend != "onnxruntime":
            continue
        _Ticker(progress, _event_base(cell, index, len(cells)))("stream", force=True)
        try:
            record["stream"] = run_stream_bench(
                cell.plan.path,
                [config.image],
                size=cell.size,
                threads=cell.threads,
                frames=STREAM_FRAMES,
                runs=STREAM_RUNS,
                rounds=STREAM_ROUNDS,
            )
        except Exception as error:  # noqa: BLE001 - a stream problem is a note, not a failure
            record["warnings"].append("stream failed: {}".format(_first_line(error)))


def _event_base(cell, index, count):
    return {"variant": cell.key, "index": index, "count": count}


def _prepare_all(cells, image, config, progress, snapshot, result):
    """Load and warm up every runnable cell; skipped and failed ones go straight to `result`."""
    live = []
    for index, cell in enumerate(cells):
        tick = _Ticker(progress, _event_base(cell, index, len(cells)))
        share = 0.1 * index / max(1, len(cells))
        if cell.plan.skipped:
            tick("skipped", force=True, overall=share)
            result["variants"][cell.key] = {
                "status": "skipped",
                "skipped": cell.plan.skipped,
                "cell": cell.describe(),
                "backend": cell.plan.backend,
                "file": cell.plan.file,
                "valid": False,
            }
            continue
        try:
            _prepare_cell(cell, image, config, tick, snapshot)
        except Exception as error:  # noqa: BLE001 - one cell failing must not lose the others
            cell.detector = None
            result["variants"][cell.key] = _failed(cell, error)
            continue
        live.append(cell)
    return live


def _timed_rounds(live, image, config, progress, sampler):
    """The timed windows, round-robin over the cells (each round starts one cell later)."""
    windows, per_window, window_time = _windows_plan(config)
    total, done = windows * per_window * max(1, len(live)), 0
    for round_index in range(windows):
        shift = round_index % max(1, len(live))
        for cell in live[shift:] + live[:shift]:
            if cell.stopped:
                continue
            sampler.label = cell.key
            try:
                done += _run_window(cell, image, per_window, window_time, config.max_time_s)
            except Exception as error:  # noqa: BLE001 - one cell failing must not lose the others
                cell.error, cell.stopped = error, True
            sampler.label = None
            overall = 0.1 + 0.9 * min(1.0, done / float(total or 1))
            tick = _Ticker(progress, _event_base(cell, live.index(cell), len(live)))
            tick("timed", min(done, total), total, force=True, overall=round(overall, 4))


def file_progress(path):
    """A Progress that keeps the latest event in `path` (replaced atomically)."""
    from ..files import write_atomic

    def progress(event):
        write_atomic(path, (json.dumps(event) + "\n").encode("utf-8"))

    return progress
