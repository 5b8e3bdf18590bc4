"""Facts of 64-bit Pis: arch from dpkg, the wheel tags the host accepts, Pi 5 vs Pi 4 from the
device tree, the emulated CPU model, and a 64-bit kernel under a 32-bit userland staying armhf.

The probe outputs below are recorded (shortened tag lists) from the kinds of host named."""

from __future__ import annotations

import re
import subprocess
import sys

from deploy.hosts.facts import parse_facts
from deploy.hosts.scripts import render

# Raspberry Pi OS 32-bit (bookworm) on a Pi 4 with the 64-bit kernel it boots by default:
# uname -m says aarch64; pip 23.0.1's packaging derives the platform from uname.
PI4_32BIT_ON_64BIT_KERNEL = """\
home=/home/pi
hostname=raspberrypi
machine=aarch64
kernel=6.6.51+rpt-rpi-v8
arch=armhf
os_id=raspbian
os_codename=bookworm
os_name=Raspbian GNU/Linux 12 (bookworm)
pi_model=Raspberry Pi 4 Model B Rev 1.5
python=/usr/bin/python3
python_version=3.11.2
python_tag=cp311
glibc=glibc-2.36
platform_tag=linux_armv7l
tag=cp311-cp311-manylinux_2_36_aarch64
tag=cp311-cp311-manylinux2014_aarch64
tag=cp311-cp311-linux_aarch64
tag=cp311-cp311-linux_armv7l
tag=cp311-abi3-linux_armv7l
tag=py3-none-any
"""

# Raspberry Pi OS 64-bit (trixie) on a Pi 5.
PI5_TRIXIE_ARM64 = """\
home=/home/pi
hostname=pi5
machine=aarch64
kernel=6.12.47+rpt-rpi-2712
arch=arm64
os_id=debian
os_codename=trixie
os_name=Debian GNU/Linux 13 (trixie)
pi_model=Raspberry Pi 5 Model B Rev 1.0
python=/usr/bin/python3
python_version=3.13.5
python_tag=cp313
glibc=glibc-2.41
platform_tag=linux_aarch64
tag=cp313-cp313-manylinux_2_41_aarch64
tag=cp313-cp313-manylinux_2_28_aarch64
tag=cp313-cp313-manylinux2014_aarch64
tag=cp313-cp313-linux_aarch64
tag=py3-none-any
"""

# The emulated 64-bit Pi 4 (invoke emu-up --release trixie-arm64): x86 /proc/cpuinfo, QEMU_CPU.
EMULATED_PI4_64 = """\
machine=aarch64
arch=arm64
os_codename=trixie
emulated=qemu-user
emulated_cpu=cortex-a72
python_tag=cp313
platform_tag=linux_aarch64
tag=cp313-cp313-manylinux_2_28_aarch64
"""


def test_a_64_bit_kernel_under_a_32_bit_userland_stays_armhf():
    facts = parse_facts("pi4", PI4_32BIT_ON_64BIT_KERNEL)
    assert (facts.arch, facts.machine, facts.platform_tag) == ("armhf", "aarch64", "linux_armv7l")
    # the aarch64 tags an old pip offers there would pick wheels that cannot load
    assert not [t for t in facts.tags if "aarch64" in t]
    assert "cp311-cp311-linux_armv7l" in facts.tags and "py3-none-any" in facts.tags
    assert facts.pi_board == "Pi 4" and facts.cpu_model == "cortex-a72"


def test_a_pi_5_on_64_bit_trixie():
    facts = parse_facts("pi5", PI5_TRIXIE_ARM64)
    assert facts.arch == "arm64" and facts.platform_tag == "linux_aarch64"
    assert facts.pi_board == "Pi 5" and facts.cpu_model == "cortex-a76"
    assert "cp313-cp313-manylinux_2_28_aarch64" in facts.tags  # the official onnxruntime wheel
    assert facts.summary()["pi model"] == "Raspberry Pi 5 Model B Rev 1.0 (Pi 5, cortex-a76)"
    assert facts.emulated is None


def test_the_emulated_cpu_model_is_reported_and_checked():
    facts = parse_facts("pi4-64-emu", EMULATED_PI4_64)
    assert facts.emulated == "qemu-user" and facts.cpu_model == "cortex-a72"
    assert facts.summary()["emulated"] == "qemu-user (cortex-a72)"
    hostile = parse_facts("x", EMULATED_PI4_64.replace("cortex-a72", "a72; rm -rf /\x1b[2J"))
    assert hostile.emulated_cpu is None and hostile.summary()["emulated"].endswith("default CPU)")


def _fallback_tags(dpkg_arch: str) -> list:
    """Run the probe's Python part with no packaging module importable (python -S: no site)."""
    script = render("facts.sh.j2", python="python3", deploy_dir="/tmp")
    body = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.S).group(1)
    out = subprocess.run(
        [sys.executable, "-S", "-B", "-", dpkg_arch],
        input=body, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [line[4:] for line in out.splitlines() if line.startswith("tag=")]


def test_without_packaging_the_probe_derives_manylinux_tags_from_glibc():
    import platform

    from packaging import tags as packaging_tags

    glibc_minor = int(platform.libc_ver()[1].split(".")[1])
    cp = "cp%d%d" % sys.version_info[:2]
    got = _fallback_tags("amd64")
    want = [f"{cp}-{cp}-manylinux_2_{n}_x86_64" for n in range(glibc_minor, 16, -1)]
    assert [t for t in got if t.startswith(f"{cp}-{cp}-manylinux_2_")] == want
    assert f"{cp}-{cp}-manylinux2014_x86_64" in got and f"{cp}-{cp}-linux_x86_64" in got
    assert got.index(f"{cp}-{cp}-manylinux_2_17_x86_64") < got.index(f"{cp}-{cp}-linux_x86_64")
    # every tag it offers is one pip itself would accept on this host
    assert set(got) <= {str(t) for t in packaging_tags.sys_tags()}
