"""The wheel gate never runs a builder's code as root (issue 21 item 2): a hostile "pi-probe"
wheel whose import records who ran it, and what it could see, passes its self-check on the
emulated bullseye root filesystem as nobody, with no host /dev or /sys."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from pi_setup import wheel_gate

HOSTILE = """import os
with open("/tmp/gate-probe-ran-as", "w") as out:
    out.write("%d %d %s %s" % (os.getuid(), os.geteuid(), os.path.exists("/sys/kernel"),
                               sorted(os.listdir("/dev"))))
def add(a, b):
    return a + b
def bits():
    return 32
"""


def _wheel(folder: Path) -> Path:
    """pi_probe-0.1.0-py3-none-any.whl holding HOSTILE as pi_probe/__init__.py."""
    path = folder / "pi_probe-0.1.0-py3-none-any.whl"
    files = {
        "pi_probe/__init__.py": HOSTILE.encode(),
        "pi_probe-0.1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pi-probe\nVersion: 0.1.0\n",
        "pi_probe-0.1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("pi_probe-0.1.0.dist-info/RECORD,,")
    files["pi_probe-0.1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_the_self_check_runs_the_builders_code_as_nobody(tmp_path):
    from pi_setup import emulator

    rootfs = emulator.status(emulator.release_of("bullseye")).rootfs
    marker = Path(rootfs) / "tmp" / "gate-probe-ran-as"
    marker.unlink(missing_ok=True)
    result = wheel_gate.gate_wheel(_wheel(tmp_path), "pi-probe", "0.1.0", "bullseye")
    assert result.self_check == "42 32"
    uid, euid, sys_seen, dev = marker.read_text().split(" ", 3)
    marker.unlink()
    assert (uid, euid) == ("65534", "65534")
    assert sys_seen == "False"
    assert dev == "['full', 'null', 'random', 'urandom', 'zero']"
