"""`invoke build-wheels --builder cross`: real armv7l wheels from the x86 cross toolchain, through
the gate (ELF checks + install and self-check on the emulated bullseye Pi) into a wheels folder.
"""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from pi_setup import elf_check, wheel_gate
from pi_setup.errors import WheelError
from retinaface.files import sha256_file
from tests.fixtures.elf_samples import x86_library

NUMPY = "numpy-1.24.4-cp39-cp39-linux_armv7l.whl"
PROBE = "pi_probe-0.1.0-cp39-cp39-linux_armv7l.whl"


def test_cli_builds_numpy_and_probe_through_the_gate(cross_run):
    result = cross_run.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # progress lines, in order
    for line in (
        "- build root /var/tmp/retinaface-pi/cross/bullseye-cp39/root:",
        "- numpy:build",
        "- numpy: compiled in ",
        "- pi-probe:build",
        f"- gate: {NUMPY}: ",
        f"- gate: {NUMPY}: installed on the emulated bullseye Pi; self-check: 1.24.4 155 5.0 1.0",
        f"- gate: {PROBE}: installed on the emulated bullseye Pi; self-check: 42 32",
    ):
        assert line in out, out[-3000:]
    assert sorted(p.name for p in cross_run.wheels.iterdir()) == [
        "manifest.json",
        NUMPY,
        PROBE,
    ]  # nothing else: no scratch files, no partial names
    for name in (NUMPY, PROBE):
        assert f"{cross_run.wheels / name} (" in out


def test_manifest_records_source_toolchain_sysroot_target_and_gate(cross_run):
    entry = cross_run.manifest[NUMPY]
    path = cross_run.wheels / NUMPY
    assert entry["sha256"] == sha256_file(path) and entry["size"] == path.stat().st_size
    assert (entry["package"], entry["version"], entry["target"]) == (
        "numpy", "1.24.4", "bullseye-cp39"
    )  # fmt: skip
    assert entry["source"] == {
        "index": "https://pypi.org/simple",
        "sdist_sha256": "80f5e3a4e498641401868df4208b74581206afbee7cf7b8329daae82676d9463",
    }
    assert entry["toolchain"].startswith("arm-linux-gnueabihf-gcc (Debian 10.2.1")
    assert "crossenv 1.6.2" in entry["toolchain"]
    assert entry["sysroot"].startswith("Debian bullseye amd64 build root with armhf multiarch")
    assert entry["builder"] == {"host": "cross", "kind": "cross"} and entry["emulated"] is False
    assert isinstance(entry["duration_s"], int) and entry["duration_s"] > 0
    assert entry["gate"]["target"] == "bullseye" and entry["gate"]["elf_files"] > 10
    assert entry["gate"]["self_check"] == "1.24.4 155 5.0 1.0"

    probe = cross_run.manifest[PROBE]
    commit = subprocess.run(
        ["git", "-C", str(cross_run.probe_repo), "rev-parse", "v0.1.0^{commit}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert probe["source"] == {
        "repo": f"workstation:{cross_run.probe_repo.resolve()}",
        "ref": "v0.1.0",
        "commit": commit,
    }
    assert probe["gate"]["self_check"] == "42 32"


def test_cross_wheels_are_armhf_and_need_nothing_newer_than_bullseye(cross_run):
    """Read independently of the gate: every ELF is armhf; the newest glibc asked is ≤ 2.31."""
    for name, extension in ((NUMPY, "numpy/core/_multiarray_umath"), (PROBE, "pi_probe")):
        elves = elf_check.wheel_elves(cross_run.wheels / name)
        assert elves and all(e.arm_eabi5_hard_float for e in elves)
        assert any(e.member.startswith(extension) for e in elves)
        assert all(e.member.endswith(".cpython-39-arm-linux-gnueabihf.so") for e in elves)
        glibc = [
            tuple(int(p) for p in v.split("_")[1].split("."))
            for e in elves
            for _, v in e.versions
            if v.startswith("GLIBC_2")
        ]
        assert glibc and max(glibc) <= (2, 31)


def test_gate_refuses_an_x86_wheel_and_adds_nothing(cross_run, tmp_path):
    """The same wheel rebuilt with an x86 object inside: refused in one line, folder unchanged."""
    x86 = x86_library()
    bad = tmp_path / PROBE
    with zipfile.ZipFile(cross_run.wheels / PROBE) as source, zipfile.ZipFile(bad, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".so"):
                data = x86.read_bytes()
            out.writestr(info, data)
    dest = tmp_path / "wheels"
    dest.mkdir()
    with pytest.raises(WheelError) as refused:
        wheel_gate.admit(bad, dest, "pi-probe", "0.1.0", "bullseye")
    assert str(refused.value) == (
        f"gate: {PROBE}: arch check failed: pi_probe.cpython-39-arm-linux-gnueabihf.so: "
        "EM_X86_64 64-bit, expected ARM 32-bit EABI5 hard-float (armhf)"
    )
    assert list(dest.iterdir()) == []


def test_self_check_is_not_fooled_by_the_pi_system_numpy(cross_run, tmp_path):
    """pi-probe's wheel presented as numpy: it installs, but `import numpy` then finds Debian's
    1.19.5, and the self-check says so."""
    dest = tmp_path / "wheels"
    with pytest.raises(WheelError) as refused:
        wheel_gate.admit(cross_run.wheels / PROBE, dest, "numpy", "1.24.4", "bullseye")
    assert str(refused.value) == (
        f"gate: {PROBE}: selfcheck check failed: printed '1.19.5 155 5.0 1.0', "
        "expected '1.24.4 155 5.0 1.0'"
    )
    assert not dest.exists() or list(dest.iterdir()) == []
