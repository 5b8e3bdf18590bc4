"""Facts probe: what a host is (arch, OS, Python and wheel tags, RAM, disk, Pi model, temperature)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from deploy.errors import DeployError
from deploy.hosts.connection import HostConnection
from deploy.hosts.scripts import render


@dataclass(frozen=True)
class Facts:
    """One host's facts, probed read-only by templates/facts.sh.j2."""

    host: str
    hostname: str
    machine: str  # uname -m (a 32-bit OS on a 64-bit kernel says aarch64: use `arch`)
    kernel: str
    arch: str  # dpkg --print-architecture (armhf, arm64, amd64), or uname -m without dpkg
    os_id: str
    os_codename: str
    os_name: str
    mem_total_mb: int
    mem_available_mb: int
    disk_free_mb: int
    pi_model: Optional[str]
    temperature_c: Optional[float]
    python: Optional[str]  # interpreter path, None when missing
    python_version: Optional[str]
    python_tag: Optional[str]  # cp39
    platform_tag: Optional[str]  # linux_armv7l
    glibc: Optional[str]
    home: str = ""  # the login user's $HOME
    runner_python: Optional[str] = None  # <deploy_dir>/venv/bin/python once deployed
    numpy: Optional[str] = None  # numpy version the host's Python imports (system), None if none
    emulated: Optional[str] = None  # "qemu-user" when an ARM userland runs on an x86 CPU
    emulated_cpu: Optional[str] = None  # the CPU model qemu emulates (QEMU_CPU), e.g. cortex-a72
    tags: tuple = field(default=(), repr=False)  # supported wheel tags, most preferred first

    @property
    def pi_board(self) -> Optional[str]:
        """'Pi 5', 'Pi 4', 'Pi 400', 'Pi 3' … from the device tree's model, None otherwise."""
        match = _BOARD.match(self.pi_model or "")
        return f"Pi {match.group(1)}" if match else None

    @property
    def cpu_model(self) -> Optional[str]:
        """The CPU the host's code runs on: the emulated model under qemu, else the Pi's core."""
        if self.emulated:
            return self.emulated_cpu
        return _BOARD_CPU.get(self.pi_board or "")

    def summary(self) -> dict:
        """The facts a person reads (`invoke facts`), in display order."""
        return {
            "host": self.host,
            "hostname": self.hostname,
            "arch": f"{self.arch} (uname -m: {self.machine})",
            "os": (self.os_name or self.os_id or "?")
            + (f" ({self.os_codename})" if self.os_codename not in self.os_name else ""),
            "kernel": self.kernel,
            "python": (
                f"{self.python_version} at {self.python} (wheel tag {self.python_tag}-"
                f"{self.platform_tag})"
                if self.python
                else "missing"
            ),
            "runner": (
                f"{self.runner_python} (the deployed venv, made from {self.python})"
                if self.runner_python
                else f"not deployed yet (deploy makes <deploy_dir>/venv from {self.python})"
            ),
            "ram": f"{self.mem_total_mb} MB ({self.mem_available_mb} MB available)",
            "disk free": f"{self.disk_free_mb} MB",
            "pi model": (
                f"{self.pi_model} ({self.pi_board}, {self.cpu_model or 'unknown CPU'})"
                if self.pi_board
                else self.pi_model or "not a Raspberry Pi"
            ),
            "numpy": self.numpy or "none",
            "emulated": (
                f"{self.emulated} ({self.emulated_cpu or 'qemu default CPU'})"
                if self.emulated
                else "no"
            ),
            "temperature": (
                f"{self.temperature_c:.1f} °C" if self.temperature_c is not None else "unknown"
            ),
        }


def parse_facts(host: str, text: str) -> Facts:
    """Facts from the probe's key=value output."""
    values: dict[str, str] = {}
    tags: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "tag":
            tags.append(value.strip())
        else:
            values[key.strip()] = value.strip()

    def number(key: str) -> int:
        try:
            return int(values.get(key, "0")) // 1024
        except ValueError:
            return 0

    temp = values.get("temperature_c")
    try:
        temperature = float(temp) if temp else None
    except ValueError:
        temperature = None
    machine = values.get("machine", "")
    arch = values.get("arch") or machine
    cpu = values.get("emulated_cpu", "")
    return Facts(
        host=host,
        hostname=values.get("hostname", ""),
        machine=machine,
        kernel=values.get("kernel", ""),
        arch=arch,
        os_id=values.get("os_id", ""),
        os_codename=values.get("os_codename", ""),
        os_name=values.get("os_name", ""),
        mem_total_mb=number("mem_total_kb"),
        mem_available_mb=number("mem_available_kb"),
        disk_free_mb=number("disk_free_kb"),
        pi_model=values.get("pi_model") or None,
        temperature_c=temperature,
        python=values.get("python") or None,
        python_version=values.get("python_version") or None,
        python_tag=values.get("python_tag") or None,
        platform_tag=values.get("platform_tag") or None,
        glibc=values.get("glibc") or None,
        home=values.get("home", ""),
        runner_python=values.get("runner_python") or None,
        numpy=_version(values.get("numpy", "")),
        emulated="qemu-user" if values.get("emulated") == "qemu-user" else None,
        emulated_cpu=cpu if _CPU.match(cpu) else None,
        tags=tuple(t for t in tags if _fits_arch(t, arch)),
    )


_BOARD = re.compile(r"^Raspberry Pi (5|4|400|3|2|Zero 2|Compute Module [345])\b")
_BOARD_CPU = {
    "Pi 5": "cortex-a76", "Pi Compute Module 5": "cortex-a76",
    "Pi 4": "cortex-a72", "Pi 400": "cortex-a72", "Pi Compute Module 4": "cortex-a72",
    "Pi 3": "cortex-a53", "Pi Zero 2": "cortex-a53", "Pi Compute Module 3": "cortex-a53",
}  # fmt: skip
_CPU = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# dpkg architecture -> the wheel platform suffixes its userland runs. A 32-bit userland on a
# 64-bit kernel (today's 32-bit Raspberry Pi OS on a Pi 4) is armhf; an older pip there derives
# its tags from `uname -m` and offers linux_aarch64 wheels, which cannot load: those are dropped.
_TAG_ARCHES = {
    "armhf": ("armv7l", "armv8l"), "arm64": ("aarch64",), "amd64": ("x86_64",), "i386": ("i686",),
}  # fmt: skip


def _fits_arch(tag: str, arch: str) -> bool:
    """Whether wheel tag TAG (py-abi-plat) can load on a userland of dpkg architecture ARCH."""
    plat = tag.rsplit("-", 1)[-1]
    suffixes = _TAG_ARCHES.get(arch)
    return suffixes is None or plat == "any" or plat.endswith(tuple("_" + s for s in suffixes))


_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,3}([a-z]+[0-9]*)?(\+[A-Za-z0-9.]+)?$")


def _version(text: str) -> Optional[str]:
    """A plain version number from the host, or None (the host is not trusted)."""
    return text if _VERSION.match(text) and len(text) <= 40 else None


def gather_facts(conn: HostConnection) -> Facts:
    """Probe the host behind `conn` (read-only: writes nothing on the host)."""
    script = render("facts.sh.j2", python=conn.host.python, deploy_dir=conn.host.deploy_dir)
    result = conn.run("bash -c " + _quote(script), timeout=60, check=False)
    if not result.ok:
        raise DeployError(
            f"{conn.host.name}: facts probe failed (exit {result.exited}): "
            f"{result.stderr.strip()[-400:]}"
        )
    facts = parse_facts(conn.host.name, result.stdout)
    if facts.home.startswith("/"):
        conn.remember_home(facts.home)  # saves a round trip when paths are expanded later
    return facts


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
