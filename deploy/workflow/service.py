"""The live stream as a systemd service on a host: render, install, start, stop, status, logs.

The unit (templates/retinaface-stream.service.j2) runs `runner stream` from
`<deploy_dir>/current` as the deploy user, hardened, logging to journald. Values that end up in
the unit are checked against a plain character set first: systemd gives `%`, `$`, quotes and
spaces meanings of their own, and a password in a camera URL must not land in a world-readable
file.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from typing import Optional

from deploy.errors import DeployError
from deploy.hosts.connection import HostConnection
from deploy.hosts.scripts import render

UNIT = "retinaface-stream.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
ACTIONS = ("install", "start", "stop", "status", "logs")
DEFAULT_HTTP = "127.0.0.1:8080"
DEFAULT_MODEL = "fp32-opt"
LOG_LINES = 100
BACKENDS = ("onnxruntime", "opencv", "torch")
MAX_OUTPUT_LINES = 400
ENV_FILE = "stream.env"  # in deploy_dir, mode 0600: the source URL, kept out of the unit

_SOURCE = re.compile(r"^[A-Za-z0-9._:/?=&+,~-]+$")
_MODEL = re.compile(r"^[A-Za-z0-9._-]+$")
_HTTP = re.compile(r"^([A-Za-z0-9.-]*):([0-9]{1,5})$")
_SIZE = re.compile(r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
_MASTER = re.compile(r"^https?://[A-Za-z0-9.-]+:[0-9]{1,5}/?$")
_TOPIC = re.compile(r"^/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class StreamSettings:
    """What the service runs: `runner stream` flags, checked by `validate`."""

    source: str = "0"
    model: str = DEFAULT_MODEL
    http: str = DEFAULT_HTTP
    size: Optional[str] = None
    threads: Optional[int] = None
    jsonl: bool = False
    backend: Optional[str] = None  # None: from the model file (onnxruntime for .onnx)
    ros: bool = False  # run `runner ros` (same unit name: one live service per host)
    master_uri: str = "http://localhost:11311"
    image_topic: Optional[str] = None  # None: the node's default, /camera/image_raw

    def validate(self) -> StreamSettings:
        if self.ros:
            if not _MASTER.match(self.master_uri):
                raise DeployError(
                    f"--master-uri {self.master_uri!r}: must be http://HOST:PORT, "
                    "e.g. http://localhost:11311"
                )
            if self.image_topic is not None and not _TOPIC.match(self.image_topic):
                raise DeployError(f"--image-topic {self.image_topic!r}: not a ROS topic name")
        if not _SOURCE.match(self.source) or "@" in self.source:
            raise DeployError(
                f"--source {self.source!r}: use a camera index, /dev/videoN, picamera, a file path "
                "or a URL of letters, digits and ._:/?=&+,~- (no spaces, %, $, quotes or "
                "user:password@: the unit file is world-readable)"
            )
        if self.source.startswith(("/tmp/", "/var/tmp/")):
            raise DeployError(
                f"--source {self.source!r}: the service has a private /tmp (PrivateTmp=yes) and "
                "cannot see it; put the file in the deploy directory or your home"
            )
        if not _MODEL.match(self.model) or self.model.startswith("."):
            raise DeployError(
                f"--model {self.model!r}: a variant name such as fp32-opt, int8, "
                "fp32-static-640x480 (a file in the release's models/ folder)"
            )
        found = _HTTP.match(self.http)
        if not found or not 0 < int(found.group(2)) < 65536:
            raise DeployError(f"--http {self.http!r}: must be HOST:PORT, e.g. {DEFAULT_HTTP}")
        if self.size is not None and not _SIZE.match(self.size):
            raise DeployError(f"--size {self.size!r}: must be WIDTHxHEIGHT, e.g. 640x480")
        if self.backend is not None and self.backend not in BACKENDS:
            raise DeployError(f"--backend {self.backend!r}: one of {', '.join(BACKENDS)}")
        if self.threads is not None and not 0 < self.threads <= 64:
            raise DeployError(f"--threads {self.threads}: must be 1 to 64")
        return self


def exec_start(settings: StreamSettings, deploy_dir: str) -> list[str]:
    """The unit's ExecStart as a word list: the venv's python running the runner from current."""
    model = settings.model if settings.model.endswith(".onnx") else f"{settings.model}.onnx"
    if settings.ros:
        words = [f"{deploy_dir}/venv/bin/python", "-m", "retinaface.runner", "ros"]
        words += ["--model", f"{deploy_dir}/current/models/{model}"]
        if settings.image_topic:
            words += ["--image-topic", settings.image_topic]
        for flag, value in (("--backend", settings.backend), ("--size", settings.size)):
            words += [flag, value] if value else []
        return words + (["--threads", str(settings.threads)] if settings.threads else [])
    words = [
        f"{deploy_dir}/venv/bin/python",
        "-m",
        "retinaface.runner",
        "stream",
        "--model",
        f"{deploy_dir}/current/models/{model}",
        "--source",
        settings.source,
        "--http",
        settings.http,
    ]
    if settings.source.startswith("/") and not settings.source.startswith("/dev/"):
        words.append("--loop")  # a video file replays: a service should not end
    if settings.backend:
        words += ["--backend", settings.backend]
    if settings.size:
        words += ["--size", settings.size]
    if settings.threads:
        words += ["--threads", str(settings.threads)]
    if settings.jsonl:
        words += ["--jsonl", f"{deploy_dir}/live/faces.jsonl"]
    return words


def render_unit(settings: StreamSettings, deploy_dir: str, user: str, host: str) -> str:
    """The unit file's text; every value was checked, so plain words are valid systemd syntax."""
    if not re.match(r"^/[A-Za-z0-9._/~+-]+$", deploy_dir):
        raise DeployError(f"{host}: deploy_dir {deploy_dir!r} has characters a unit cannot hold")
    if not re.match(r"^[a-z_][a-z0-9_.-]*$", user):
        raise DeployError(f"{host}: user name {user!r} is not a plain login name")
    words = exec_start(settings, deploy_dir)
    secret = not settings.ros and source_env(settings) is not None
    if secret:  # the URL stays in the 0600 environment file; systemd passes it as one word
        words[words.index("--source") + 1] = "${RETINAFACE_SOURCE}"
    return render(
        "retinaface-stream.service.j2",
        host=host,
        user=user,
        deploy_dir=deploy_dir,
        source_shown=(settings.image_topic or "/camera/image_raw")
        if settings.ros
        else shown_source(settings.source),
        env_file=f"{deploy_dir}/{ENV_FILE}" if secret else "",
        exec_start=" ".join(words),
        # ROS_HOME: rospy writes its logs there; live/ and ros/ are all the unit may write.
        writable=[f"{deploy_dir}/live"] + ([f"{deploy_dir}/ros"] if settings.ros else []),
        environment=[f"ROS_MASTER_URI={settings.master_uri}", f"ROS_HOME={deploy_dir}/ros"]
        if settings.ros
        else [],
    )


def shown_source(source: str) -> str:
    """The source as the unit's Description may show it: a URL without its query string (a
    camera's `?user=…&pwd=…`)."""
    if "://" in source and "?" in source:
        return source.split("?", 1)[0] + "?…"
    return source


def source_env(settings: StreamSettings) -> Optional[str]:
    """The environment file's text for a URL source (it may carry credentials), else None."""
    if "://" not in settings.source:
        return None
    return f"RETINAFACE_SOURCE={settings.source}\n"


def clean_output(text: str, max_lines: int = MAX_OUTPUT_LINES) -> str:
    """A host's text made safe to print: printable characters only, a bounded number of lines."""
    lines = text.splitlines()[-max_lines:]
    return "\n".join(
        "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in line)[:300]
        for line in lines
    )


@dataclass
class ServiceOutcome:
    """What `invoke service` did (or, with check, would do) on one host."""

    host: str
    action: str
    check: bool
    changed: bool = False
    message: str = ""
    output: str = ""  # status / logs / diff text, already cleaned
    details: list = field(default_factory=list)

    def summary(self) -> str:
        return self.message


def _require_systemd(conn: HostConnection) -> None:
    if not conn.run("test -d /run/systemd/system", check=False, timeout=30).ok:
        raise DeployError(
            f"{conn.host.name}: no running systemd on this host; run the unit's ExecStart line "
            "by hand instead (invoke service --check prints it)"
        )


def _sudo(conn: HostConnection, command: str, timeout: float = 120) -> str:
    result = conn.run(f"sudo -n {command}", check=False, timeout=timeout)
    if not result.ok:
        detail = clean_output(result.stderr.strip() or result.stdout.strip(), 3)
        raise DeployError(
            f"{conn.host.name}: sudo -n {command} failed (exit {result.exited}): {detail} "
            "(the deploy user needs passwordless sudo for systemctl)"
        )
    return result.stdout


def _host_user(conn: HostConnection) -> str:
    return conn.run("id -un", timeout=30).stdout.strip()


def install(conn: HostConnection, settings: StreamSettings, check: bool = False) -> ServiceOutcome:
    """Render the unit for this host; with check, the diff against the installed one only."""
    deploy_dir = conn.expand(conn.host.deploy_dir).rstrip("/")
    unit = render_unit(settings.validate(), deploy_dir, _host_user(conn), conn.host.name)
    old = conn.run(f"cat {UNIT_PATH} 2>/dev/null || true", timeout=30).stdout
    outcome = ServiceOutcome(conn.host.name, "install", check, changed=old != unit)
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(True), unit.splitlines(True), UNIT_PATH + " (installed)", "(new)"
        )
    )
    outcome.output = clean_output(diff) if outcome.changed else ""
    if check:
        outcome.message = f"would install {UNIT_PATH}" if outcome.changed else "unit up to date"
        return outcome
    _require_systemd(conn)
    write_env(conn, settings, deploy_dir)
    if outcome.changed:
        script = render(
            "service_install.sh.j2", deploy_dir=deploy_dir, unit_path=UNIT_PATH, unit=UNIT
        )
        result = conn.run("bash -c " + shlex.quote(script), check=False, timeout=120, stdin=unit)
        if not result.ok:
            raise DeployError(
                f"{conn.host.name}: installing {UNIT_PATH} failed: "
                f"{clean_output(result.stderr.strip(), 3)} (needs passwordless sudo)"
            )
        if conn.run(f"systemctl is-active --quiet {UNIT}", check=False, timeout=30).ok:
            _sudo(conn, f"systemctl restart {UNIT}")  # running the old unit: take the new one
    outcome.message = f"installed {UNIT_PATH}" if outcome.changed else "unit up to date"
    return outcome


def write_env(conn: HostConnection, settings: StreamSettings, deploy_dir: str) -> None:
    """The unit's EnvironmentFile: written with mode 0600 for a URL source, else removed."""
    text = source_env(settings)
    script = render("service_env.sh.j2", env_file=f"{deploy_dir}/{ENV_FILE}", keep=text is not None)
    result = conn.run("bash -c " + shlex.quote(script), check=False, timeout=60, stdin=text)
    if not result.ok:
        raise DeployError(
            f"{conn.host.name}: writing {deploy_dir}/{ENV_FILE} failed: "
            f"{clean_output(result.stderr.strip(), 3)}"
        )


def _is_active(conn: HostConnection) -> bool:
    return conn.run(f"systemctl is-active --quiet {UNIT}", check=False, timeout=30).ok


def start_stop(conn: HostConnection, action: str, check: bool = False) -> ServiceOutcome:
    _require_systemd(conn)
    active = _is_active(conn)
    wanted = action == "start"
    outcome = ServiceOutcome(conn.host.name, action, check, changed=active != wanted)
    if not outcome.changed:
        outcome.message = "already running" if active else "already stopped"
        return outcome
    if check:
        outcome.message = f"would {action} {UNIT}"
        return outcome
    _sudo(conn, f"systemctl {action} {UNIT}")
    outcome.message = f"{'started' if wanted else 'stopped'} {UNIT}"
    return outcome


def status(conn: HostConnection) -> ServiceOutcome:
    _require_systemd(conn)
    result = conn.run(f"systemctl status --no-pager --lines=0 {UNIT}", check=False, timeout=30)
    outcome = ServiceOutcome(conn.host.name, "status", False)
    outcome.output = clean_output(result.stdout + result.stderr)
    outcome.message = "active" if _is_active(conn) else "not active"
    return outcome


def logs(conn: HostConnection, lines: int = LOG_LINES) -> ServiceOutcome:
    _require_systemd(conn)
    command = f"journalctl -u {UNIT} -n {int(lines)} --no-pager -o short-iso"
    result = conn.run(f"{command} 2>/dev/null || sudo -n {command}", check=False, timeout=60)
    outcome = ServiceOutcome(conn.host.name, "logs", False)
    outcome.output = clean_output(result.stdout, max_lines=int(lines))
    outcome.message = f"{len(outcome.output.splitlines())} log lines"
    return outcome


def service_action(
    conn: HostConnection, action: str, settings: StreamSettings, check: bool = False
) -> ServiceOutcome:
    """One `invoke service` action on one host."""
    if action == "install":
        return install(conn, settings, check)
    if action in ("start", "stop"):
        return start_stop(conn, action, check)
    if action == "status":
        return status(conn)
    if action == "logs":
        return logs(conn)
    raise DeployError(f"unknown service action {action!r}: choose one of {', '.join(ACTIONS)}")


def restart_after_switch(conn: HostConnection) -> bool:
    """After a deploy switched `current`: restart the service if it runs; True if it did."""
    probe = conn.run(
        f"test -d /run/systemd/system && systemctl is-active --quiet {UNIT}",
        check=False,
        timeout=30,
    )
    if not probe.ok:
        return False
    _sudo(conn, f"systemctl restart {UNIT}")
    return True
