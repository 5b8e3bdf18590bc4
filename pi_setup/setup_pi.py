"""`invoke setup-pi`: the runtime apt packages for the Pi's OS release, the venv, opt-in swap.

Idempotent: each item is reported as ok (already so), change (done now) or would (check mode).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from deploy.hosts.scripts import environment
from pi_setup.errors import WheelError

# Shared by every release: the venv, pip, numpy/opencv from Debian, what the fetched onnxruntime
# (libgomp1, libatomic1) and the built torch/torchvision wheels load at run time.
_COMMON = (
    "python3-venv",
    "python3-pip",
    "python3-numpy",
    "python3-opencv",
    "libgomp1",
    "libatomic1",
)
RUNTIME_APT: Dict[str, Tuple[str, ...]] = {
    "buster": _COMMON + ("libopenblas-base", "libjpeg62-turbo", "libpng16-16"),
    "bullseye": _COMMON + ("libopenblas0", "libjpeg62-turbo", "libpng16-16"),
    "bookworm": _COMMON + ("libopenblas0", "libjpeg62-turbo", "libpng16-16"),
    "trixie": _COMMON + ("libopenblas0", "libjpeg62-turbo", "libpng16-16t64"),
}
# `setup-pi --ros`: Debian's ROS 1 (ros_comm) for `runner ros`, the same names on buster to trixie:
# rospy, a master the Pi can run itself, the message packages the node uses, rostopic to look.
ROS_APT = (
    "python3-rospy",
    "python3-rosmaster",
    "python3-sensor-msgs",
    "python3-std-msgs",
    "python3-diagnostic-msgs",
    "python3-rostopic",
)

# The swap file setup-pi makes and build-wheels may (same path: one swap per Pi).
SWAPFILE = "/var/swap.retinaface-pi"


@dataclass(frozen=True)
class SetupResult:
    """What setup-pi found or did on one host."""

    host: str
    ok: Tuple[str, ...]
    changed: Tuple[str, ...]
    would: Tuple[str, ...]


def apt_packages(os_codename: str, ros: bool = False) -> Tuple[str, ...]:
    """The runtime apt packages for an OS release; WheelError naming the known ones."""
    try:
        return RUNTIME_APT[os_codename] + (ROS_APT if ros else ())
    except KeyError:
        known = ", ".join(RUNTIME_APT)
        raise WheelError(
            f"no runtime package list for OS {os_codename!r} (known: {known})"
        ) from None


def render_setup(
    os_codename: str,
    deploy_dir: str,
    python: str = "python3",
    check: bool = False,
    swap_mb: int = 0,
    ros: bool = False,
) -> str:
    """The setup script for one host (templates/setup_pi.sh.j2)."""
    return (
        environment()
        .get_template("setup_pi.sh.j2")
        .render(
            apt_packages=apt_packages(os_codename, ros),
            deploy_dir=deploy_dir,
            python=python,
            check=check,
            swap_mb=int(swap_mb),
            swapfile=SWAPFILE,
            ros=ros,
        )
    )


def parse_setup_output(host: str, text: str) -> SetupResult:
    """Sort the script's `ok:` / `change:` / `would:` lines."""
    buckets: Dict[str, List[str]] = {"ok": [], "change": [], "would": []}
    for line in text.splitlines():
        kind, sep, rest = line.partition(": ")
        if sep and kind in buckets:
            buckets[kind].append(rest.strip())
    return SetupResult(
        host, tuple(buckets["ok"]), tuple(buckets["change"]), tuple(buckets["would"])
    )


def setup_host(conn, check: bool = False, swap_mb: int = 0, ros: bool = False) -> SetupResult:
    """Run the setup on the host behind `conn` (facts decide the OS release)."""
    from deploy.hosts.facts import gather_facts

    facts = gather_facts(conn)
    script = render_setup(
        facts.os_codename,
        conn.expand(conn.host.deploy_dir),
        python=conn.host.python,
        check=check,
        swap_mb=swap_mb,
        ros=ros,
    )
    result = conn.run("bash -c " + shlex.quote(script), timeout=3600, check=False)
    if not result.ok:
        raise WheelError(
            f"{conn.host.name}: setup-pi failed (exit {result.exited}): "
            f"{(result.stderr.strip() or result.stdout.strip())[-600:]}"
        )
    return parse_setup_output(conn.host.name, result.stdout)


def setup_pi(
    host: Optional[str],
    inventory: Optional[str] = None,
    check: bool = False,
    swap_mb: int = 0,
    ros: bool = False,
) -> List[SetupResult]:
    """setup-pi on every selected host, one after the other."""
    from deploy.hosts.connection import open_host
    from deploy.hosts.inventory import load_inventory

    results = []
    for item in load_inventory(inventory).select(host):
        with open_host(item) as conn:
            results.append(setup_host(conn, check=check, swap_mb=swap_mb, ros=ros))
    return results
