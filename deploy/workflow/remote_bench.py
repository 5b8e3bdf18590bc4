"""`invoke remote-bench`: deploy if stale, run the runner's bench on each host, pull bench.json.

Per host (over the fleet's thread pool): deploy (a no-op when the host is current) → start
`retinaface.runner bench` detached on the host → poll its progress file → pull
`<run>/bench.json` to `results/<stamp>/<host>/bench.json` with the host facts added. A runner
that crashes or fails is reported with its exit status and stderr, and no result file is
written for it. Afterwards the tables are rendered for every host that produced a result.
"""

from __future__ import annotations

import json
import shlex
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from deploy.errors import DeployError
from deploy.hosts.connection import HostConnection
from deploy.hosts.facts import gather_facts
from deploy.hosts.fleet import DEFAULT_FORKS, FleetResult, check_forks, run_on
from deploy.hosts.inventory import load_inventory
from deploy.hosts.scripts import render
from deploy.paths import RESULTS_DIR
from deploy.results.model import load_result
from deploy.results.render import ReportFiles, render_reports, write_atomic
from deploy.results.schema import read_bench
from deploy.workflow.commands import log_dir_for
from deploy.workflow.push import deploy_host
from deploy.workflow.release import MODELS_DIR, WHEELS_DIR, build_runner_wheel, ensure_models

POLL_SECONDS = 1.0
STDERR_TAIL = 2000  # characters of the runner's stderr in an error message
BENCH_JSON_MAX_BYTES = 32 * 1024**2  # a real bench.json is ~100 kB
PULL_GRACE_S = 30.0  # the pull gets at least this long even when --timeout is nearly spent

# progress(event): {"stage": "deploy"|"bench"|"pull"|"done", ...the runner's fields}.
BenchProgress = Callable[[dict], None]


@dataclass
class BenchOptions:
    """What `invoke remote-bench` asks each host's runner to do."""

    size: tuple = (640, 480)
    threads: Optional[int] = None
    sizes: Optional[list] = None  # a sweep: every size in turn (None: [size])
    thread_counts: Optional[list] = None  # a sweep: every thread count in turn (None: [threads])
    profile: bool = False
    stream: bool = False  # runner stream FPS against 1000 / single-frame e2e per ONNX cell
    runs: int = 20
    warmup: int = 3
    windows: int = 5
    min_time_s: float = 1.0
    variants: Optional[list] = None
    cooldown_below_c: Optional[float] = None
    cooldown_max_s: float = 120.0
    timeout_s: float = 3600.0

    def runner_args(self, models: str, image: str, out: str, progress: str) -> list:
        """The runner's command line (after `python -m retinaface.runner bench`)."""
        args = ["--models", models, "--image", image, "--json", out, "--progress", progress]
        sizes = self.sizes or [self.size]
        args += ["--size", ",".join(f"{w}x{h}" for w, h in sizes)]
        args += ["--runs", str(self.runs), "--warmup", str(self.warmup)]
        args += ["--windows", str(self.windows), "--min-time", str(self.min_time_s)]
        threads = [t for t in (self.thread_counts or [self.threads]) if t]
        if threads:
            args += ["--threads", ",".join(str(t) for t in threads)]
        if self.profile:
            args.append("--profile")
        if self.stream:
            args.append("--stream")
        if self.variants:
            args += ["--variants", ",".join(self.variants)]
        if self.cooldown_below_c is not None:
            args += ["--cooldown-below", str(self.cooldown_below_c)]
            args += ["--cooldown-max", str(self.cooldown_max_s)]
        return args


@dataclass
class HostBench:
    """One host's benchmark: where its result went and what the deploy step did."""

    host: str
    path: Path
    release: str
    deployed: bool
    lines: list = field(default_factory=list)
    changed: bool = False  # a benchmark changes nothing on the host worth a `changed` status

    def summary(self) -> str:
        deploy = f"deployed {self.release}, " if self.deployed else ""
        return f"{deploy}{self.path}: " + "; ".join(self.lines)


@dataclass
class BenchRun:
    """All hosts' outcomes, the results folder and the rendered tables (None if no host ran)."""

    fleet: FleetResult
    results_dir: Path
    report: Optional[ReportFiles]

    @property
    def exit_code(self) -> int:
        return self.fleet.exit_code


def signal_name(rc: int) -> str:
    if rc > 128:
        try:
            return f"killed by signal {rc - 128} ({signal.Signals(rc - 128).name})"
        except ValueError:
            return f"killed by signal {rc - 128}"
    return f"exit {rc}"


_PROGRESS_INTS = ("index", "count", "done", "total")
_PROGRESS_TEXTS = ("variant", "phase")


def valid_progress(record) -> Optional[dict]:
    """The runner's progress record with only known, well-typed fields, or None.

    progress.json lives on the host, which may write anything there: a wrong type must not
    crash the progress display (ints are non-negative ints, texts short strings; a record
    with `count` has every field the display reads).
    """
    if not isinstance(record, dict):
        return None
    clean = {}
    for key in _PROGRESS_INTS:
        value = record.get(key)
        if value is not None:
            if type(value) is not int or not 0 <= value < 1 << 31:
                return None
            clean[key] = value
    for key in _PROGRESS_TEXTS:
        value = record.get(key)
        if value is not None:
            if not isinstance(value, str) or len(value) > 100:
                return None
            clean[key] = value
    if "count" in clean and not all(k in clean for k in _PROGRESS_INTS + _PROGRESS_TEXTS):
        return None
    return clean


def parse_poll(text: str) -> dict:
    """{"progress": dict|None, "rc": int|None, "alive": bool} from bench_poll.sh output."""
    state: dict = {"progress": None, "rc": None, "alive": False}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "progress":
            try:
                state["progress"] = valid_progress(json.loads(value))
            except (ValueError, RecursionError):
                pass  # a half-written line cannot happen (atomic rename), but never fail on it
        elif key == "rc" and value.strip().lstrip("-").isdigit():
            state["rc"] = int(value)
        elif key == "alive":
            state["alive"] = value.strip() == "yes"
    return state


def _tail(conn: HostConnection, path: str) -> str:
    result = conn.run(f"tail -c {STDERR_TAIL} {shlex.quote(path)}", timeout=30, check=False)
    return result.stdout.strip() if result.ok else ""


def run_remote_bench(
    conn: HostConnection,
    deploy_dir: str,
    options: BenchOptions,
    stamp: str,
    progress: Optional[BenchProgress] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run the bench on the host detached, wait for it; returns the remote bench.json path."""
    run_dir = f"{deploy_dir}/bench/{stamp}"
    args = options.runner_args(
        models=f"{deploy_dir}/current/models",
        image=f"{deploy_dir}/current/probe.jpg",
        out=f"{run_dir}/bench.json",
        progress=f"{run_dir}/progress.json",
    )
    script = render(
        "bench_run.sh.j2", run_dir=run_dir, python=f"{deploy_dir}/venv/bin/python", args=args
    )
    started = conn.run("bash -c " + shlex.quote(script), timeout=60, check=False)
    if not started.ok:
        raise DeployError(
            f"{conn.host.name}: cannot start the benchmark (exit {started.exited}): "
            f"{(started.stderr or started.stdout).strip()[-STDERR_TAIL:]}"
        )
    poll = "bash -c " + shlex.quote(render("bench_poll.sh.j2", run_dir=run_dir, kill=False))
    deadline = time.monotonic() + options.timeout_s
    gone = 0
    try:
        while True:
            state = parse_poll(conn.run(poll, timeout=60).stdout)
            if progress and state["progress"]:
                progress(dict(state["progress"], stage="bench"))
            if state["rc"] is not None:
                break
            if not state["alive"]:
                gone += 1  # rc is written right after the process ends: look twice
                if gone > 2:
                    raise DeployError(
                        f"{conn.host.name}: the benchmark process vanished without an exit "
                        f"status (killed?); stderr: {_tail(conn, run_dir + '/stderr.log')}"
                    )
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{conn.host.name}: the benchmark took longer than {options.timeout_s:.0f} s "
                    "and was stopped"
                )
            sleep(POLL_SECONDS)
    except BaseException:
        stop = render("bench_poll.sh.j2", run_dir=run_dir, kill=True)
        try:
            conn.run("bash -c " + shlex.quote(stop), timeout=30, check=False)
        except Exception:  # noqa: BLE001 - the host may be gone; the first error matters
            pass
        raise
    if state["rc"] != 0:
        stderr = _tail(conn, f"{run_dir}/stderr.log")
        raise DeployError(
            f"{conn.host.name}: the runner failed ({signal_name(state['rc'])}); "
            f"stderr:\n{stderr or '(empty)'}\n(run directory {run_dir} kept on the host)"
        )
    return f"{run_dir}/bench.json"


def bench_host(
    conn: HostConnection,
    options: BenchOptions,
    results_dir: Path,
    stamp: str,
    deploy: Callable[[HostConnection], object],
    progress: Optional[BenchProgress] = None,
) -> HostBench:
    """Deploy if stale, benchmark, pull and annotate one host's bench.json."""
    host = conn.host
    say = progress or (lambda event: None)
    say({"stage": "deploy"})
    outcome = deploy(conn)
    deploy_dir = conn.expand(host.deploy_dir).rstrip("/")
    facts = gather_facts(conn)
    started = time.monotonic()
    remote = run_remote_bench(conn, deploy_dir, options, stamp, progress)
    say({"stage": "pull"})
    target = Path(results_dir) / host.name / "bench.json"
    staging = target.with_name(".bench.json.pulled")
    left = options.timeout_s - (time.monotonic() - started)  # --timeout covers the pull too
    conn.get(remote, staging, max_bytes=BENCH_JSON_MAX_BYTES, timeout=max(left, PULL_GRACE_S))
    try:
        try:
            data = read_bench(staging)  # the host wrote it: size, types and numbers checked
        except DeployError as error:
            raise DeployError(f"{host.name}: bad bench.json from the host: {error}") from None
        data["inventory_host"] = host.name
        data["facts"] = facts.summary()
        data["deploy"] = {
            "release": getattr(outcome, "release_id", None),
            "deployed": bool(getattr(outcome, "changed", False)),
            "deploy_dir": deploy_dir,
            "remote_result": remote,
            "options": asdict(options),
        }
        write_atomic(staging, json.dumps(data, indent=2) + "\n")
        load_result(staging, host.name)  # validate before it takes the real name
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    conn.run(f"rm -rf {shlex.quote(remote.rsplit('/', 1)[0])}", timeout=60, check=False)
    result = load_result(target, host.name)
    say({"stage": "done"})
    records = result.data["variants"]
    if not any(records[name]["status"] == "ok" for name in result.data["order"]):
        reasons = "; ".join(f"{name}: {records[name]['skipped']}" for name in result.data["order"])
        raise DeployError(f"{host.name}: no variant could run ({reasons}); see {target}")
    return HostBench(
        host=host.name,
        path=target,
        release=getattr(outcome, "release_id", "?"),
        deployed=bool(getattr(outcome, "changed", False)),
        lines=_summary_lines(result.data),
    )


def _summary_lines(data: dict) -> list:
    lines = []
    for name in data["order"]:
        record = data["variants"][name]
        if record["status"] != "ok":
            lines.append(f"{name} {record['status']}")
        else:
            flag = "" if record["valid"] else " INVALID"
            lines.append(f"{name} p50 {record['stages']['e2e']['p50']:.1f} ms{flag}")
    return lines


def new_stamp(root: Path) -> str:
    """A UTC stamp naming a new results folder (suffixed when taken)."""
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    stamp, n = base, 1
    while (Path(root) / stamp).exists():
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def remote_bench(
    host: Optional[str],
    inventory: Optional[str] = None,
    options: Optional[BenchOptions] = None,
    out_root: Path = RESULTS_DIR,
    progress_for: Optional[Callable[[str], BenchProgress]] = None,
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    note: Callable[[str], None] = lambda message: None,
    log_dir: Optional[Path] = None,
    forks: int = DEFAULT_FORKS,
    target_fps: Optional[float] = None,
) -> BenchRun:
    """Benchmark every selected host in parallel; render the tables of those that ran."""
    forks = check_forks(forks)
    options = options or BenchOptions()
    hosts = load_inventory(inventory).select(host)
    manifest = ensure_models(models_dir, progress=note)
    runner = build_runner_wheel()
    out_root = Path(out_root)
    stamp = new_stamp(out_root)
    results_dir = out_root / stamp
    results_dir.mkdir(parents=True, exist_ok=False)

    def deploy(conn):
        return deploy_host(
            conn,
            models_dir=models_dir,
            wheels_dir=wheels_dir,
            runner_wheel=runner,
            manifest=manifest,
        )

    def workflow(conn):
        progress = progress_for(conn.host.name) if progress_for else None
        return bench_host(conn, options, results_dir, stamp, deploy, progress)

    fleet = run_on(hosts, workflow, forks=forks, log_dir=log_dir or log_dir_for("remote-bench"))
    report = None
    if any((results_dir / name / "bench.json").is_file() for name in (h.name for h in hosts)):
        report = render_reports(results_dir, target_fps=target_fps)
    elif not any(results_dir.iterdir()):
        results_dir.rmdir()  # no host produced a result: leave no empty stamp behind
    return BenchRun(fleet=fleet, results_dir=results_dir, report=report)
