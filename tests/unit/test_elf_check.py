"""The wheel gate's ELF checks on real ELF files: the community armv7l onnxruntime 1.8.1 wheel
(/work/shared/wheels/buster) and this machine's own x86-64 libz."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from pi_setup import elf_check, wheel_gate
from pi_setup.errors import WheelError
from tests.fixtures.elf_samples import x86_library
from tests.paths import SHARED

ORT_WHEEL = SHARED / "wheels" / "buster" / "onnxruntime-1.8.1-cp39-cp39-linux_armv7l.whl"
PYBIND = "onnxruntime-1.8.1.data/purelib/onnxruntime/capi/onnxruntime_pybind11_state.so"
PROVIDERS = "onnxruntime-1.8.1.data/purelib/onnxruntime/capi/libonnxruntime_providers_shared.so"


def _wheel(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _ort_member(name: str) -> bytes:
    with zipfile.ZipFile(ORT_WHEEL) as archive:
        return archive.read(name)


def _rootfs(tmp_path: Path, names) -> Path:
    """A root filesystem's library folder holding files of these names (only names count)."""
    lib = tmp_path / "rootfs" / "usr/lib/arm-linux-gnueabihf"
    lib.mkdir(parents=True)
    for name in names:
        (lib / name).write_bytes(b"")
    return tmp_path / "rootfs"


BULLSEYE_LIBS = [
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
    "ld-linux-armhf.so.3", "libstdc++.so.6", "libgcc_s.so.1", "libgomp.so.1", "libatomic.so.1",
]  # fmt: skip


def test_real_armv7l_wheel_reads_as_armhf_with_its_needs():
    elves = {e.member: e for e in elf_check.wheel_elves(ORT_WHEEL)}
    assert set(elves) == {PYBIND, PROVIDERS}
    pybind = elves[PYBIND]
    assert pybind.arm_eabi5_hard_float and pybind.describe_arch() == "ARM 32-bit EABI5 hard-float"
    assert "libatomic.so.1" in pybind.needed and "libgomp.so.1" in pybind.needed
    assert ("libm.so.6", "GLIBC_2.27") in pybind.versions
    assert ("libstdc++.so.6", "GLIBCXX_3.4.21") in pybind.versions
    assert elf_check.check_arch(elves.values()) == []
    assert elf_check.check_symbol_versions(elves.values(), elf_check.BULLSEYE_ABI) == []


def test_x86_library_fails_the_arch_check(tmp_path):
    wheel = _wheel(tmp_path / "bad-1.0-cp39-cp39-linux_armv7l.whl", {
        "bad/__init__.py": b"", "bad/_core.so": x86_library().read_bytes(),
    })  # fmt: skip
    (problem,) = elf_check.check_arch(elf_check.wheel_elves(wheel))
    assert problem == (
        "bad/_core.so: EM_X86_64 64-bit, expected ARM 32-bit EABI5 hard-float (armhf)"
    )


def test_soft_float_arm_object_fails_the_arch_check(tmp_path):
    data = bytearray(_ort_member(PROVIDERS))
    flags = int.from_bytes(data[36:40], "little")  # e_flags of a 32-bit ELF header
    data[36:40] = (flags & ~elf_check.EF_ARM_ABI_FLOAT_HARD).to_bytes(4, "little")
    wheel = _wheel(tmp_path / "soft-1.0-cp39-cp39-linux_armv7l.whl", {"soft/x.so": bytes(data)})
    (problem,) = elf_check.check_arch(elf_check.wheel_elves(wheel))
    assert problem.startswith("soft/x.so: ARM 32-bit EABI5 soft-float, expected")


def test_symbol_version_newer_than_the_target_is_named():
    elves = elf_check.wheel_elves(ORT_WHEEL)
    buster_like = elf_check.TargetAbi("old", (("GLIBC", (2, 24)), ("GLIBCXX", (3, 4, 22))))
    assert elf_check.check_symbol_versions(elves, buster_like) == [
        f"{PYBIND}: needs GLIBC_2.27, old has GLIBC_2.24"
    ]
    stretch_like = elf_check.TargetAbi("older", (("GLIBCXX", (3, 4, 19)),))
    assert elf_check.check_symbol_versions(elves, stretch_like) == [
        f"{PYBIND}: needs GLIBCXX_3.4.21, older has GLIBCXX_3.4.19"
    ]


def test_needed_library_missing_on_the_target_is_named(tmp_path):
    elves = elf_check.wheel_elves(ORT_WHEEL)
    full = elf_check.target_libraries(_rootfs(tmp_path / "a", BULLSEYE_LIBS))
    assert elf_check.check_needed(elves, full, "bullseye") == []
    without_atomic = elf_check.target_libraries(
        _rootfs(tmp_path / "b", [n for n in BULLSEYE_LIBS if n != "libatomic.so.1"])
    )
    assert elf_check.check_needed(elves, without_atomic, "bullseye") == [
        f"{PYBIND}: needs libatomic.so.1, not found in bullseye"
    ]


def test_needed_library_bundled_in_the_wheel_counts(tmp_path):
    """libonnxruntime_providers_shared.so ships inside the wheel: needing it is fine."""
    data = _ort_member(PYBIND)
    wheel = _wheel(tmp_path / "w-1.0-cp39-cp39-linux_armv7l.whl", {
        "w/a.so": data, "w.libs/libatomic.so.1": _ort_member(PROVIDERS),
    })  # fmt: skip
    libs = elf_check.target_libraries(
        _rootfs(tmp_path, [n for n in BULLSEYE_LIBS if n != "libatomic.so.1"])
    )
    assert elf_check.check_needed(elf_check.wheel_elves(wheel), libs, "x") == []


def test_gate_reports_the_first_failing_check_in_one_line(tmp_path):
    rootfs = _rootfs(tmp_path, BULLSEYE_LIBS)
    assert wheel_gate.gate_problems_offline(ORT_WHEEL, "bullseye", rootfs) == []
    bad = _wheel(tmp_path / "bad-1.0-cp39-cp39-linux_armv7l.whl", {
        "bad/_core.so": x86_library().read_bytes(), "bad/_ok.so": _ort_member(PROVIDERS),
    })  # fmt: skip
    assert wheel_gate.gate_problems_offline(bad, "bullseye", rootfs) == [
        "arch: bad/_core.so: EM_X86_64 64-bit, expected ARM 32-bit EABI5 hard-float (armhf)"
    ]


def test_not_a_wheel_and_truncated_elf_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk-1.0-cp39-cp39-linux_armv7l.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match="not a readable wheel"):
        elf_check.wheel_elves(junk)
    cut = _wheel(tmp_path / "cut-1.0-cp39-cp39-linux_armv7l.whl", {
        "cut/x.so": _ort_member(PROVIDERS)[:200],
    })  # fmt: skip
    with pytest.raises(WheelError, match=r"cut/x.so: unreadable ELF file"):
        elf_check.wheel_elves(cut)


def test_readelf_agrees_on_the_real_armv7l_object(tmp_path):
    """binutils' readelf reads the same flags and NEEDED list pyelftools gives the gate."""
    path = tmp_path / "pybind.so"
    path.write_bytes(_ort_member(PYBIND))
    out = subprocess.run(
        ["readelf", "-h", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Version5 EABI, hard-float ABI" in out
    (pybind,) = [e for e in elf_check.wheel_elves(ORT_WHEEL) if e.member == PYBIND]
    for name in pybind.needed:
        assert f"Shared library: [{name}]" in out
