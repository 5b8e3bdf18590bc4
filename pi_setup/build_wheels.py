"""The torch/torchvision wheel build for armv7l: recipe rendering, a detached run on the builder,
status, log following, resume and the pull of finished wheels into wheels/ with a manifest.

The recipe is `templates/build_wheels.sh.j2`; it runs under setsid/nohup on the builder, so a
dropped SSH connection does not stop it. On the builder, next to the script: build.log,
build.pid, state (one `<epoch> <event>` line per stage), plan.json, src/, dist/, venv/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from deploy.hosts.scripts import environment
from deploy.paths import WHEELS_DIR
from pi_setup import wheel_gate
from pi_setup.errors import WheelError
from pi_setup.setup_pi import SWAPFILE
from retinaface.files import sha256_file, write_atomic

MANIFEST_NAME = "manifest.json"
DEFAULT_WORK_DIR = "~/retinaface-pi-build"
DEFAULT_JOBS = 2
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# A plain wheel file name (PEP 427 characters only): never a path, never `..`.
WHEEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.whl$")
WHEEL_MAX_BYTES = 2 * 1024**3  # torch for armv7l is ~150 MB; anything near this is not a wheel
WHEEL_PULL_TIMEOUT = 3600.0  # seconds for one wheel download

# Needed by the recipe itself, whatever it builds.
BASE_APT = (
    "git",
    "ca-certificates",
    "python3-dev",
    "python3-venv",
    "python3-pip",
    "python3-wheel",
    "python3-setuptools",
)


@dataclass(frozen=True)
class Package:
    """One thing the recipe can build: where its source is and how to build it."""

    name: str
    version: str
    repo: str
    ref: str
    apt: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    mem_base_mb: int = 256
    mem_per_job_mb: int = 0
    install: bool = False  # install the wheel into the build venv (later packages need it)
    requires: Tuple[str, ...] = ()
    origin: str = ""  # where the source came from when `repo` is an uploaded bundle

    @property
    def wheel_prefix(self) -> str:
        """`<dist>-<version>`: finished wheels are `<prefix>-*.whl`."""
        return f"{self.name.replace('-', '_')}-{self.version}"


TORCH = Package(
    name="torch",
    version="1.7.0",
    repo="https://github.com/pytorch/pytorch",
    ref="v1.7.0",
    apt=(
        "build-essential",
        "libopenblas-dev",
        "libblas-dev",
        "m4",
        "cmake",
        "cython3",
        "python3-dev",
        "python3-yaml",
        "python3-setuptools",
        "python3-numpy",
        "python3-typing-extensions",
        "python3-future",
    ),
    env=(
        ("USE_CUDA", "0"),
        ("USE_CUDNN", "0"),
        ("USE_DISTRIBUTED", "0"),
        ("USE_MKLDNN", "0"),
        ("USE_FBGEMM", "0"),
        ("USE_NCCL", "0"),
        ("BUILD_CAFFE2_OPS", "0"),
        ("BUILD_TEST", "0"),
        ("PYTORCH_BUILD_VERSION", "1.7.0"),
        ("PYTORCH_BUILD_NUMBER", "1"),
    ),
    mem_base_mb=1024,
    mem_per_job_mb=1280,
    install=True,
)

TORCHVISION = Package(
    name="torchvision",
    version="0.8.1",
    repo="https://github.com/pytorch/vision",
    ref="v0.8.1",
    apt=("build-essential", "libjpeg-dev", "libpng-dev", "python3-pil"),
    env=(("BUILD_VERSION", "0.8.1"), ("PYTORCH_VERSION", "1.7.0"), ("FORCE_CUDA", "0")),
    mem_base_mb=512,
    mem_per_job_mb=768,
    requires=("torch",),
)

# A one-file C extension (tests/fixtures/pi_probe): checks a builder end to end in minutes.
PI_PROBE = Package(
    name="pi-probe",
    version="0.1.0",
    repo="",  # no public home: give --source
    ref="v0.1.0",
    apt=("gcc", "libc6-dev"),
)

PACKAGES: Dict[str, Package] = {p.name: p for p in (TORCH, TORCHVISION, PI_PROBE)}


@dataclass(frozen=True)
class BuildPlan:
    """What one run builds, in order, and how."""

    packages: Tuple[Package, ...]
    jobs: int = DEFAULT_JOBS
    emulated: bool = False
    add_swap: bool = False
    os_codename: str = "bullseye"
    swapfile: str = SWAPFILE
    apt: bool = True  # False: the builder was prepared by hand (no sudo apt-get)
    python: str = "python3"  # the builder's interpreter the wheels are for

    @property
    def need_mb(self) -> int:
        """RAM + swap the largest package needs with `jobs` parallel compilers."""
        return max(p.mem_base_mb + p.mem_per_job_mb * self.jobs for p in self.packages)


def make_plan(
    names: Sequence[str],
    jobs: int = DEFAULT_JOBS,
    sources: Optional[Dict[str, str]] = None,
    emulated: bool = False,
    add_swap: bool = False,
    os_codename: str = "bullseye",
    extra_packages: Sequence[Package] = (),
    apt: bool = True,
    python: str = "python3",
) -> BuildPlan:
    """Resolve package names (plus what they require) into a build plan, torch before torchvision.

    `sources` maps a package name to a git URL or a path on the builder that replaces its repo.
    """
    known = dict(PACKAGES)
    known.update({p.name: p for p in extra_packages})
    wanted = [n.strip() for n in names if n.strip()]
    if not wanted:
        raise WheelError("--packages: name at least one package")
    if not 1 <= int(jobs) <= 64:
        raise WheelError(f"--jobs {jobs}: expected 1..64")
    for name in wanted:
        if name not in known:
            raise WheelError(f"--packages: unknown package {name!r} (known: {', '.join(known)})")
    closure: List[str] = []

    def add(name: str) -> None:
        for dep in known[name].requires:
            add(dep)
        if name not in closure:
            closure.append(name)

    for name in wanted:
        add(name)
    sources = dict(sources or {})
    for name in sources:
        if name not in closure:
            raise WheelError(f"--source given for {name!r}, which is not being built")
    packages = []
    for name in closure:
        package = known[name]
        repo = sources.get(name, package.repo)
        if not repo:
            raise WheelError(f"{name}: has no default source; give --source DIR|URL")
        env = dict(package.env)
        env["MAX_JOBS"] = str(jobs)
        if name == "torch" and os_codename not in ("buster", "stretch"):
            # XNNPACK's dotprod kernels do not assemble with bullseye's toolchain (research).
            env["USE_XNNPACK"] = "0"
        for key in env:
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", key):
                raise WheelError(f"{name}: bad environment variable name {key!r}")
        if not (_SAFE.match(package.name) and _SAFE.match(package.version)):
            raise WheelError(f"{name}: unsafe name or version {package.wheel_prefix!r}")
        packages.append(replace(package, repo=repo, env=tuple(sorted(env.items()))))
    return BuildPlan(
        packages=tuple(packages),
        jobs=int(jobs),
        emulated=emulated,
        add_swap=add_swap,
        os_codename=os_codename,
        apt=apt,
        python=python,
    )


def render_script(plan: BuildPlan) -> str:
    """The bash recipe for this plan (templates/build_wheels.sh.j2)."""
    apt: List[str] = []
    for package in (*BASE_APT, *(a for p in plan.packages for a in p.apt)):
        if package not in apt:
            apt.append(package)
    arch_note = "emulated armv7l: NEON flags forced" if plan.emulated else "native"
    return (
        environment()
        .get_template("build_wheels.sh.j2")
        .render(
            packages=plan.packages,
            jobs=plan.jobs,
            emulated=plan.emulated,
            add_swap=plan.add_swap,
            swapfile=plan.swapfile,
            need_mb=plan.need_mb,
            apt_packages=apt if plan.apt else [],
            arch_note=arch_note,
            python=plan.python,
        )
    )


# --- the builder --------------------------------------------------------------------------


@dataclass(frozen=True)
class BuilderInfo:
    """What the recipe needs to know about the builder (probed over the host connection)."""

    machine: str
    dpkg_arch: str
    os_codename: str
    python_tag: str
    cpu: str
    emulated: bool
    mem_mb: int


PROBE = r"""
printf 'machine=%s\n' "$(uname -m)"
printf 'dpkg_arch=%s\n' "$(dpkg --print-architecture 2>/dev/null || echo unknown)"
printf 'os_codename=%s\n' "$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-unknown}")"
printf 'python_tag=%s\n' "$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
printf 'cpu=%s\n' "$(grep -m1 -E '^(model name|Hardware|CPU part)' /proc/cpuinfo | cut -d: -f2- | xargs)"
printf 'features=%s\n' "$(grep -m1 -E '^(Features|flags)' /proc/cpuinfo | cut -d: -f2- | xargs)"
printf 'mem_kb=%s\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
"""


def probe_builder(conn) -> BuilderInfo:
    """Arch, OS, Python tag and whether the builder is emulated (ARM userland, non-ARM /proc/cpuinfo)."""
    out = conn.run(PROBE, timeout=60).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    arm = values.get("dpkg_arch") in ("armhf", "arm64")
    features = values.get("features", "").split()
    # Under qemu-user /proc/cpuinfo is the host's (x86 flags, no NEON/asimd).
    emulated = arm and not ({"neon", "asimd", "vfpv4"} & set(features))
    return BuilderInfo(
        machine=values.get("machine", "unknown"),
        dpkg_arch=values.get("dpkg_arch", "unknown"),
        os_codename=values.get("os_codename", "unknown"),
        python_tag=values.get("python_tag", "none"),
        cpu=values.get("cpu", ""),
        emulated=emulated,
        mem_mb=int(values.get("mem_kb") or 0) // 1024,
    )


@dataclass(frozen=True)
class BuildStatus:
    """Where a build on a builder stands, from its state file and pid."""

    state: str  # not-started | running | finished | failed | interrupted
    stage: str
    started: Optional[int]
    now: int
    pid: Optional[int]
    done: Tuple[str, ...] = ()
    commits: Dict[str, str] = field(default_factory=dict)
    seconds: Dict[str, int] = field(default_factory=dict)
    wheels: Tuple[str, ...] = ()
    detail: str = ""
    rejected: Tuple[str, ...] = ()  # names in dist/ that are not plain wheel file names
    malformed: int = 0  # state lines the builder wrote that do not parse (ignored)

    @property
    def elapsed(self) -> Optional[int]:
        return None if self.started is None else max(0, self.now - self.started)


def _q(text: str) -> str:
    return shlex.quote(text)


def work_dir(conn, work: str = DEFAULT_WORK_DIR) -> str:
    """The absolute build directory on the builder."""
    return conn.expand(work)


def _alive_check(work: str) -> str:
    """Shell that prints `pid <pid> yes|no` for the recorded build process.

    build.pid is the builder's file: anything but digits (e.g. a newline and a forged
    `wheel ../x` line) is dropped here, so it cannot add lines to the status output.
    """
    pid_file = _q(f"{work}/build.pid")
    return (
        f"pid=$(head -c 32 {pid_file} 2>/dev/null || true); "
        'case "$pid" in ""|*[!0-9]*) pid="";; esac; alive=no; '
        'if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && '
        "tr '\\0' ' ' < \"/proc/$pid/cmdline\" | grep -q build.sh; then alive=yes; fi; "
        'echo "pid ${pid:-none} $alive"'
    )


def read_status(conn, work: str = DEFAULT_WORK_DIR) -> BuildStatus:
    """The state of the (last) build in `work` on the builder."""
    work = work_dir(conn, work)
    out = conn.run(
        f'echo "now $(date +%s)"; {_alive_check(work)}; '
        f"ls -1 {_q(work + '/dist')} 2>/dev/null | sed -n 's/^\\(.*\\.whl\\)$/wheel \\1/p'; "
        f"cat {_q(work + '/state')} 2>/dev/null | sed 's/^/state /' || true",
        timeout=60,
    ).stdout
    return parse_status(out)


def parse_status(out: str) -> BuildStatus:
    """Parse the output of the status command (see read_status)."""
    now = int(time.time())
    pid: Optional[int] = None
    alive = False
    wheels: List[str] = []
    rejected: List[str] = []
    events: List[Tuple[int, str]] = []
    malformed = 0
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "now" and _COUNT.match(rest.strip()):
            now = int(rest)
        elif kind == "pid":
            value, _, flag = rest.partition(" ")
            pid = int(value) if _COUNT.match(value) else None
            alive = flag.strip() == "yes"
        elif kind == "wheel":
            name = rest.strip()
            (wheels if is_wheel_name(name) else rejected).append(name)
        elif kind == "state":
            # The builder writes this file: a stamp of plain ASCII digits (isdigit() takes "²",
            # int() refuses 5000 digits) and a non-empty event, or the line is ignored.
            stamp, _, event = rest.partition(" ")
            if _COUNT.match(stamp) and event.strip():
                events.append((int(stamp), event.strip()))
            else:
                malformed += 1
    commits: Dict[str, str] = {}
    seconds: Dict[str, int] = {}
    for _, event in events:  # every run: later ones win
        words = event.split()
        if words[:1] == ["commit"] and len(words) == 3:
            commits[words[1]] = words[2]
        elif words[:1] == ["built"] and len(words) == 3 and words[2].startswith("seconds="):
            value = words[2].split("=", 1)[1]
            if _COUNT.match(value):
                seconds[words[1]] = int(value)
            else:
                malformed += 1
    starts = [i for i, (_, e) in enumerate(events) if e.startswith("start")]
    if not starts:
        return BuildStatus(
            "not-started",
            "",
            None,
            now,
            pid,
            wheels=tuple(wheels),
            rejected=tuple(rejected),
            malformed=malformed,
        )
    run = events[starts[-1] :]
    started = run[0][0]
    stage = "start"
    done: List[str] = []
    final = ""
    for _, event in run:
        words = event.split()
        if words[0] == "stage" and len(words) > 1:
            stage = words[1]
        elif words[0] in ("done", "skip") and len(words) > 1:
            done.append(words[1])
        elif words[0] in ("finished", "failed", "interrupted"):
            final = event
    end = run[-1][0]
    if alive:
        state, end = "running", now
    elif final.startswith("finished"):
        state, stage = "finished", "finished"
    elif final.startswith("failed"):
        state = "failed"
    else:
        state = "interrupted"
    status = BuildStatus(
        state=state,
        stage=stage,
        started=started,
        now=end,
        pid=pid,
        done=tuple(done),
        commits=commits,
        seconds=seconds,
        wheels=tuple(wheels),
        detail=final,
        rejected=tuple(rejected),
        malformed=malformed,
    )
    return status


_COUNT = re.compile(r"[0-9]{1,15}\Z")  # a stamp or a number of seconds the builder wrote


def is_wheel_name(name: str) -> bool:
    """True for a plain wheel file name: no directory part, no `..`, only wheel characters."""
    return bool(WHEEL_NAME.match(name)) and ".." not in name


def _plan_prefixes(plan: Dict[str, Any], host: str) -> Dict[str, Dict[str, Any]]:
    """{wheel prefix: package record} from the builder's plan.json, each prefix checked."""
    packages = plan.get("packages") if isinstance(plan, dict) else None
    if not isinstance(packages, list) or not packages:
        raise WheelError(f"{host}: plan.json lists no packages; cannot tell which wheels are ours")
    found = {}
    for package in packages:
        prefix = package.get("wheel_prefix") if isinstance(package, dict) else None
        if not (isinstance(prefix, str) and _SAFE.match(prefix) and ".." not in prefix):
            raise WheelError(f"{host}: plan.json has a bad wheel_prefix {prefix!r}")
        found[prefix] = package
    return found


def _local_wheel_path(dest: Path, name: str, host: str) -> Path:
    """dest/name, refused unless it stays a file directly inside dest (no symlink out)."""
    local = dest / name
    if local.resolve().parent != dest or local.is_symlink():
        raise WheelError(f"{host}: wheel {name!r} would be written outside {dest}; refused")
    return local


def _git_bundle(source: Path, out: Path) -> None:
    """Pack a local git repository (all refs and tags) into one file the builder can clone."""
    if not (source / ".git").exists() and not (source / "HEAD").exists():
        raise WheelError(f"--source {source}: not a git repository")
    result = subprocess.run(
        ["git", "-C", str(source), "bundle", "create", str(out), "--all"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise WheelError(f"--source {source}: git bundle failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class StartResult:
    """What `start_build` did: started a run (pid) or found one already running."""

    work: str
    pid: int
    already_running: bool
    script: str


def start_build(
    conn,
    plan: BuildPlan,
    work: str = DEFAULT_WORK_DIR,
    local_sources: Optional[Dict[str, Path]] = None,
) -> StartResult:
    """Upload the recipe and start it detached (setsid + nohup); a running build is left alone.

    `local_sources` maps package names to git repositories on this machine: each is sent as a
    git bundle and cloned from there on the builder.
    """
    work = work_dir(conn, work)
    status = read_status(conn, work)
    if status.state == "running" and status.pid:
        return StartResult(work, status.pid, True, "")
    conn.run(f"mkdir -p {_q(work)}/sources", timeout=30)
    packages = []
    with tempfile.TemporaryDirectory(prefix="build-wheels-") as tmp:
        for package in plan.packages:
            source = (local_sources or {}).get(package.name)
            if source is not None:
                bundle = Path(tmp) / f"{package.name}.bundle"
                _git_bundle(Path(source), bundle)
                remote = f"{work}/sources/{package.name}.bundle"
                conn.put(bundle, remote, sha256=sha256_file(bundle))
                package = replace(
                    package, repo=remote, origin=f"workstation:{Path(source).resolve()}"
                )
            packages.append(package)
        plan = replace(plan, packages=tuple(packages))
        script = render_script(plan)
        script_path = Path(tmp) / "build.sh"
        script_path.write_text(script)
        conn.put(script_path, f"{work}/build.sh", sha256=sha256_file(script_path))
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan_record(plan), indent=2))
        conn.put(plan_path, f"{work}/plan.json", sha256=sha256_file(plan_path))
        remember_plan(conn.host.name, work, plan_record(plan))
    launched = conn.run(
        f"cd {_q(work)} && {{ printf '\\n===== run %s =====\\n' \"$(date '+%F %T')\" >> build.log; "
        f"setsid nohup bash {_q(work + '/build.sh')} >> build.log 2>&1 < /dev/null & "
        "echo $! > build.pid; echo $!; }",
        timeout=60,
    ).stdout.strip()
    if not launched.isdigit():
        raise WheelError(f"{conn.host.name}: could not start the build (got {launched!r})")
    return StartResult(work, int(launched), False, script)


def _plan_file(host: str, work: str) -> Path:
    """Where the workstation keeps the plan it sent to `host` for `work` (outside the checkout,
    private to the user): the pull trusts this copy, never the builder's plan.json."""
    from deploy.paths import cache_dir

    key = hashlib.sha256(f"{host}\0{work}".encode()).hexdigest()[:16]
    return cache_dir() / "build-plans" / f"{key}.json"


def remember_plan(host: str, work: str, record: Dict[str, Any]) -> None:
    """Record the plan sent to a builder (mode 0600, atomic) for a later pull."""
    path = _plan_file(host, work)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


def sent_plan(host: str, work: str) -> Dict[str, Any]:
    """The plan this workstation sent to `host` for `work`; WheelError when it sent none."""
    path = _plan_file(host, work)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WheelError(
            f"{host}: this workstation started no build in {work} (no plan in {path.parent}); "
            "only wheels of a plan we sent are pulled: run `invoke build-wheels` first"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise WheelError(f"{path}: cannot read the recorded plan: {error}") from None


def lock_owned_names(lock_path: Optional[Path] = None) -> Tuple[str, ...]:
    """Project names wheels/lock.yaml pins (onnxruntime): never taken from a builder."""
    import yaml

    path = lock_path or (WHEELS_DIR / "lock.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return ()
    return tuple(sorted(_project(k) for k in data if k != "format"))


def _project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def plan_record(plan: BuildPlan) -> Dict[str, Any]:
    """The plan as JSON-able data (kept on the builder as plan.json, read back by `pull`)."""
    data = asdict(plan)
    data["packages"] = [
        {**asdict(p), "env": dict(p.env), "wheel_prefix": p.wheel_prefix} for p in plan.packages
    ]
    return data


def stop_build(conn, work: str = DEFAULT_WORK_DIR) -> Optional[int]:
    """Stop a running build (its whole process group); returns the pid or None."""
    work = work_dir(conn, work)
    status = read_status(conn, work)
    if status.state != "running" or not status.pid:
        return None
    conn.run(f"kill -TERM -- -{status.pid} 2>/dev/null || kill -TERM {status.pid}", check=False)
    return status.pid


def follow_log(
    conn,
    work: str = DEFAULT_WORK_DIR,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    from_start: bool = False,
    timeout: Optional[float] = None,
) -> Iterator[str]:
    """Yield new text of build.log until the build process ends (polling; survives reconnects)."""
    work = work_dir(conn, work)
    log = _q(f"{work}/build.log")
    offset = 0
    if not from_start:
        out = conn.run(f"stat -c %s {log} 2>/dev/null || echo 0", timeout=30).stdout.strip()
        offset = max(0, int(out or 0) - 4000)  # a little context
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = conn.run(
            f"{_alive_check(work)}; tail -c +{offset + 1} {log} 2>/dev/null | head -c 1000000",
            timeout=60,
            check=False,
        )
        first, _, text = result.stdout.partition("\n")
        if text:
            offset += len(text.encode())
            yield text
        if not first.endswith(" yes"):
            return
        if deadline is not None and time.monotonic() > deadline:
            raise WheelError(f"{conn.host.name}: build still running after {timeout:.0f} s")
        sleep(poll)


def wait_build(conn, work: str = DEFAULT_WORK_DIR, timeout: float = 3600, poll: float = 2.0):
    """Block until the build process ends; returns its BuildStatus."""
    for _ in follow_log(conn, work, poll=poll, timeout=timeout):
        pass
    return read_status(conn, work)


@dataclass(frozen=True)
class PulledWheel:
    """A finished wheel copied into wheels/ and recorded in the manifest."""

    path: Path
    sha256: str
    size: int
    copied: bool


def pull_wheels(
    conn,
    work: str = DEFAULT_WORK_DIR,
    dest: Path = WHEELS_DIR,
    builder: Optional[Dict[str, Any]] = None,
    progress: Callable[[str], None] = lambda _m: None,
    gate: bool = True,
) -> List[PulledWheel]:
    """Copy finished wheels from the builder into `dest` (verified by sha256, then through the
    gate, pi_setup.wheel_gate) and record them in `dest/manifest.json`: sha256, size, source
    commit, builder facts, duration, log path, what the gate checked. `gate=False` only for a
    builder that is not armhf (tests on this machine): its wheels cannot pass."""
    work = work_dir(conn, work)
    host = conn.host.name
    status = read_status(conn, work)
    if status.rejected:
        raise WheelError(
            f"{host}: {work}/dist holds {status.rejected[0]!r}, not a plain wheel file name; "
            "refusing to pull"
        )
    if not status.wheels:
        raise WheelError(
            f"{host}: no finished wheel in {work}/dist (build {status.state}"
            + (f" at {status.stage}" if status.stage else "")
            + ")"
        )
    # Names, versions and prefixes come from the plan this workstation sent, never from the
    # builder's plan.json (a builder could call its code "numpy" and have the gate import it).
    plan = sent_plan(host, work)
    prefixes = _plan_prefixes(plan, host)
    owner = {}
    pinned = lock_owned_names()
    for name in status.wheels:
        if _project(name.split("-")[0]) in pinned:
            raise WheelError(
                f"{host}: {work}/dist/{name}: {name.split('-')[0]} is pinned in "
                "wheels/lock.yaml (fetch-ort); a builder never supplies it"
            )
        match = [p for p in prefixes if name.startswith(p + "-")]
        if not match:
            raise WheelError(
                f"{host}: {work}/dist/{name} is not a wheel of the plan "
                f"({', '.join(sorted(prefixes))}); refusing to pull"
            )
        owner[name] = prefixes[match[0]]
    sums = conn.run(
        f"cd {_q(work + '/dist')} && sha256sum -- *.whl", timeout=600
    ).stdout.splitlines()
    remote_sha = {}
    for line in sums:
        digest, _, name = line.partition("  ")
        if re.match(r"^[0-9a-f]{64}$", digest):
            remote_sha[name.lstrip("*")] = digest
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    release = str(plan.get("os_codename") or "bullseye")
    pulled = []
    entries = {}
    for name in status.wheels:
        local = _local_wheel_path(dest, name, host)
        expected = remote_sha.get(name)
        if expected is None:
            raise WheelError(f"{host}: no sha256 from the builder for {work}/dist/{name}")
        package = owner[name]
        pname = str(package.get("name", name.split("-")[0]))
        copied = False
        checked = None
        if local.exists() and sha256_file(local) != expected:
            raise WheelError(
                f"{host}: {local} already exists with another sha256 than the builder's "
                f"{name} ({expected}); not overwritten: move it away to pull this one"
            )
        if not local.exists():
            # Into a scratch folder first: only a wheel that passes the gate enters `dest`.
            with tempfile.TemporaryDirectory(prefix=".pull-", dir=str(dest)) as scratch:
                fetched = Path(scratch) / name
                conn.get(
                    f"{work}/dist/{name}",
                    fetched,
                    max_bytes=WHEEL_MAX_BYTES,
                    timeout=WHEEL_PULL_TIMEOUT,
                )
                digest = sha256_file(fetched)
                if digest != expected:
                    raise WheelError(
                        f"{host}: {name}: sha256 after download is {digest}, "
                        f"builder says {expected}"
                    )
                version = str(package.get("version") or name.split("-")[1])
                if gate:
                    _, checked = wheel_gate.admit(fetched, dest, pname, version, release, progress)
                else:
                    os.replace(fetched, local)
            copied = True
        digest = sha256_file(local)
        entries[name] = {
            "file": name,
            "sha256": digest,
            "size": local.stat().st_size,
            "package": pname,
            "version": package.get("version"),
            "source": {
                "repo": package.get("origin") or package.get("repo"),
                "ref": package.get("ref"),
                "commit": status.commits.get(pname),
            },
            "build_env": package.get("env"),
            "jobs": plan.get("jobs"),
            "emulated": plan.get("emulated"),
            "builder": {"host": conn.host.name, **(builder or {})},
            "duration_s": status.seconds.get(pname),
            "log": f"{conn.host.name}:{work}/build.log",
            "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if checked is not None:
            entries[name]["gate"] = checked.record()
        pulled.append(PulledWheel(local, digest, local.stat().st_size, copied))
    update_manifest(dest / MANIFEST_NAME, entries)
    return pulled


def update_manifest(path: Path, entries: Dict[str, Dict[str, Any]]) -> None:
    """Merge wheel entries (by file name) into manifest.json, written atomically."""
    data: Dict[str, Any] = {"format": 1, "wheels": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise WheelError(f"{path}: not valid JSON ({error}); move it away") from None
    data.setdefault("wheels", {}).update(entries)
    # a fresh temp name (mkstemp) beside it: a planted `manifest.json.tmp` symlink is not followed
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def parse_sources(text: Optional[str], names: Sequence[str]) -> Dict[str, str]:
    """`--source DIR|URL` (one package) or `name=DIR|URL,…` → {package: source}."""
    if not text:
        return {}
    items = [t for t in text.split(",") if t.strip()]
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if sep and name.strip() in PACKAGES and not re.match(r"^[a-z+]+://", item):
            result[name.strip()] = value.strip()
        elif len(items) == 1:
            wanted = [n for n in names if n.strip()]
            if len(wanted) != 1:
                raise WheelError(
                    "--source: with several packages write name=DIR|URL (e.g. torch=/src/pytorch)"
                )
            result[wanted[0].strip()] = item.strip()
        else:
            raise WheelError(f"--source {item!r}: expected name=DIR|URL")
    return result


# --- what the tasks call (tasks.py only parses flags and prints) --------------------------


def open_builder(name: str, inventory: Optional[str] = None):
    """A host connection to the one builder named in the inventory."""
    from deploy.hosts.connection import open_host
    from deploy.hosts.inventory import load_inventory

    hosts = load_inventory(inventory).select(name)
    if len(hosts) != 1:
        raise WheelError(f"--builder {name}: names {len(hosts)} hosts; give exactly one")
    return open_host(hosts[0])


def builder_facts(conn) -> Dict[str, Any]:
    """The builder's facts for the manifest (deploy.hosts.facts, without the long tag list)."""
    from deploy.hosts.facts import gather_facts

    facts = asdict(gather_facts(conn))
    facts.pop("tags", None)
    return facts


def split_sources(sources: Dict[str, str]) -> Tuple[Dict[str, str], Dict[str, Path]]:
    """Sources that are git repositories on this machine are sent as bundles; others
    (URLs, paths on the builder) are cloned by the builder as given."""
    local = {name: Path(value) for name, value in sources.items() if Path(value).is_dir()}
    return sources, local


def plan_for_builder(
    info: BuilderInfo,
    packages: Sequence[str],
    jobs: int = DEFAULT_JOBS,
    sources: Optional[Dict[str, str]] = None,
    add_swap: bool = False,
    apt: bool = True,
    allow_any_arch: bool = False,
) -> BuildPlan:
    """The plan for this builder: its OS and whether it is emulated shape the recipe."""
    if info.dpkg_arch != "armhf" and not allow_any_arch:
        raise WheelError(
            f"builder is {info.dpkg_arch} ({info.machine}), not armhf: its wheels would not run "
            "on a 32-bit Raspberry Pi OS (use a Pi, or pi4-emu after `invoke emu-up`)"
        )
    return make_plan(
        packages,
        jobs=jobs,
        sources=sources,
        emulated=info.emulated,
        add_swap=add_swap,
        os_codename=info.os_codename,
        apt=apt,
    )


@dataclass(frozen=True)
class BuildOutcome:
    """What `build_wheels_on` did."""

    host: str
    started: StartResult
    plan: BuildPlan
    info: BuilderInfo
    status: Optional[BuildStatus] = None
    pulled: Tuple[PulledWheel, ...] = ()


def build_wheels_on(
    builder: str,
    packages: Sequence[str],
    *,
    inventory: Optional[str] = None,
    jobs: int = DEFAULT_JOBS,
    source: Optional[str] = None,
    add_swap: bool = False,
    apt: bool = True,
    work: str = DEFAULT_WORK_DIR,
    follow: bool = False,
    out: Callable[[str], None] = lambda text: None,
    dest: Path = WHEELS_DIR,
    poll: float = 5.0,
    timeout: Optional[float] = None,
    allow_any_arch: bool = False,
) -> BuildOutcome:
    """Start (or resume) the build detached on the builder; with `follow`, stream the log to
    `out` until it ends, then pull finished wheels into `dest` with the manifest."""
    sources, local = split_sources(parse_sources(source, packages))
    with open_builder(builder, inventory) as conn:
        info = probe_builder(conn)
        plan = plan_for_builder(info, packages, jobs, sources, add_swap, apt, allow_any_arch)
        started = start_build(conn, plan, work, local_sources=local)
        outcome = BuildOutcome(conn.host.name, started, plan, info)
        if not follow:
            return outcome
        for text in follow_log(conn, work, poll=poll, timeout=timeout):
            out(text)
        status = read_status(conn, work)
        if status.state != "finished":
            raise WheelError(
                f"{conn.host.name}: build {status.state} at {status.stage} ({status.detail}); "
                f"see {started.work}/build.log; run again to resume"
            )
        pulled = pull_wheels(
            conn, work, dest, builder=builder_facts(conn), progress=lambda m: out(f"- {m}\n")
        )
        return replace(outcome, status=status, pulled=tuple(pulled))


def status_on(
    builder: str,
    *,
    inventory: Optional[str] = None,
    work: str = DEFAULT_WORK_DIR,
    pull: bool = False,
    dest: Path = WHEELS_DIR,
    gate: bool = True,
) -> Tuple[BuildStatus, List[PulledWheel]]:
    """The build's state on the builder; with `pull`, also copy its finished wheels (through the
    gate; `gate=False` only for tests whose builder is this x86 machine)."""
    with open_builder(builder, inventory) as conn:
        status = read_status(conn, work)
        pulled: List[PulledWheel] = []
        if pull:
            pulled = pull_wheels(conn, work, dest, builder=builder_facts(conn), gate=gate)
        return status, pulled


@dataclass(frozen=True)
class RecipeFacts:
    """The builder facts a printed recipe is rendered from, and where each one came from."""

    os_codename: str
    python: str  # the interpreter the wheels are built for, e.g. python3 or python3.9
    emulated: bool
    origin: Dict[str, str]  # fact -> "probed", "flag", "inventory" or "assumed"
    why_not_probed: str = ""  # empty when the builder answered


ASSUMED_FACTS = {"os": "bullseye", "python": "python3", "emulated": False}


def recipe_facts(
    builder: Optional[str],
    inventory: Optional[str] = None,
    *,
    os_codename: Optional[str] = None,
    python: Optional[str] = None,
    emulated: Optional[bool] = None,
) -> RecipeFacts:
    """Facts for --print-script: flags first, then the builder's probe if it answers, then what
    the inventory declares, then ASSUMED_FACTS. Reading a recipe never needs a reachable Pi."""
    from deploy.hosts.errors import UnreachableError

    if os_codename is not None and not re.match(r"^[a-z]+$", os_codename):
        raise WheelError(f"--os {os_codename!r}: expected a Debian codename such as bullseye")
    if python is not None and not re.match(r"^3\.[0-9]{1,2}$", python):
        raise WheelError(f"--python {python!r}: expected a version such as 3.9")
    facts = {"os": os_codename, "python": f"python{python}" if python else None}
    facts["emulated"] = emulated
    origin = {key: "flag" for key, value in facts.items() if value is not None}
    why_not = "every fact given by a flag" if builder else "no --builder given"
    if builder and len(origin) < len(facts):
        try:
            with open_builder(builder, inventory) as conn:
                info = probe_builder(conn)
        except UnreachableError as error:
            why_not = str(error)
        else:
            why_not = ""
            probed = {"os": info.os_codename, "python": "python3", "emulated": info.emulated}
            for key, value in probed.items():
                if facts[key] is None:
                    facts[key], origin[key] = value, "probed"
    if builder and facts["python"] is None:
        declared = _declared_python(builder, inventory)
        if declared:
            facts["python"], origin["python"] = declared, "inventory"
    for key, value in ASSUMED_FACTS.items():
        if facts[key] is None:
            facts[key], origin[key] = value, "assumed"
    return RecipeFacts(facts["os"], facts["python"], facts["emulated"], origin, why_not)


def describe_facts(facts: RecipeFacts) -> str:
    """One line: what the recipe was rendered for and which facts were assumed."""
    kind = "emulated" if facts.emulated else "native"
    parts = [f"{facts.os_codename} ({facts.origin['os']})"]
    parts.append(f"{facts.python} ({facts.origin['python']})")
    parts.append(f"{kind} ({facts.origin['emulated']})")
    line = "recipe for " + ", ".join(parts)
    if facts.why_not_probed:
        line += f"; not probed: {facts.why_not_probed}"
    if "assumed" in facts.origin.values():
        line += "; choose with --os, --python, --emulated"
    return line


def _declared_python(builder: str, inventory: Optional[str]) -> Optional[str]:
    """The interpreter the inventory names for the builder (`python:`), if not the default."""
    from deploy.hosts.inventory import load_inventory

    hosts = load_inventory(inventory).select(builder)
    declared = hosts[0].python if len(hosts) == 1 else None
    return declared if declared and declared != "python3" else None


def script_for(
    builder: Optional[str],
    packages: Sequence[str],
    *,
    inventory: Optional[str] = None,
    jobs: int = DEFAULT_JOBS,
    source: Optional[str] = None,
    add_swap: bool = False,
    apt: bool = True,
    emulated: Optional[bool] = None,
    os_codename: Optional[str] = None,
    python: Optional[str] = None,
) -> Tuple[str, RecipeFacts]:
    """The recipe that would run and the facts it was rendered from (see `recipe_facts`)."""
    sources = parse_sources(source, packages)
    facts = recipe_facts(
        builder, inventory, os_codename=os_codename, python=python, emulated=emulated
    )
    plan = make_plan(
        packages,
        jobs,
        sources,
        facts.emulated,
        add_swap,
        facts.os_codename,
        apt=apt,
        python=facts.python,
    )
    return render_script(plan), facts
