"""The counting runner's pure parts: the guest it finds in a root filesystem, the library folders
of the alternatives symlinks, the qemu command per target, and its errors."""

import os
import struct

import pytest

from pi_setup.counting import run
from pi_setup.errors import EmulatorError


def _elf(path, machine):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF" + b"\x01\x01\x01" + b"\0" * 9 + struct.pack("<HH", 2, machine))


def _rootfs(tmp_path, machine=40, minor="3.9"):
    root = tmp_path / "rootfs"
    _elf(root / "usr" / "bin" / f"python{minor}", machine)
    venv = root / "home" / "pi" / "retinaface-pi" / "venv"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {minor}.2\n")
    alt = root / "etc" / "alternatives"
    alt.mkdir(parents=True)
    os.symlink("/usr/lib/arm-linux-gnueabihf/blas/libblas.so.3", alt / "libblas.so.3-arm")
    os.symlink("/usr/lib/arm-linux-gnueabihf/lapack/liblapack.so.3", alt / "liblapack.so.3-arm")
    os.symlink("/usr/bin/vim.basic", alt / "vi")  # not a library: ignored
    return root


def test_the_guest_is_the_deployed_venv_and_its_python(tmp_path):
    guest = run.guest_in("pi4-emu", _rootfs(tmp_path))
    assert guest.target == "arm" and guest.python == "/usr/bin/python3.9"
    assert guest.site == "/home/pi/retinaface-pi/venv/lib/python3.9/site-packages"
    env = run.guest_env(guest)
    assert env["PYTHONHASHSEED"] == "0" and env["OMP_NUM_THREADS"] == "1"
    root = str(guest.rootfs)
    assert env["LD_LIBRARY_PATH"].split(":") == [
        f"{root}/usr/lib/arm-linux-gnueabihf/blas", f"{root}/usr/lib/arm-linux-gnueabihf/lapack"
    ]


def test_arm_runs_qemu_arm_with_the_a15_model_and_the_plugin(tmp_path):
    guest = run.guest_in("pi4-emu", _rootfs(tmp_path))
    argv = run.qemu_argv(guest, tmp_path / "p.so", tmp_path / "out.txt", "cortex-a72", ["x.py"])
    assert argv[:5] == ["/usr/bin/qemu-arm", "-L", str(guest.rootfs), "-cpu", "cortex-a15"]
    assert f"{tmp_path / 'p.so'},out={tmp_path / 'out.txt'},fd={run.MARKER_FD}" in argv
    assert argv[-2:] == [str(guest.rootfs / "usr/bin/python3.9"), "x.py"]


def test_aarch64_names_the_pi_core_and_hides_the_hosts_cpu_topology(tmp_path):
    guest = run.guest_in("pi4-emu", _rootfs(tmp_path, machine=183, minor="3.11"))
    assert guest.target == "aarch64"
    argv = run.qemu_argv(guest, tmp_path / "p.so", tmp_path / "o", "cortex-a76", ["x.py"])
    assert argv[:2] == ["unshare", "--mount"] and "tmpfs" in argv[6]
    assert argv[argv.index("/usr/bin/qemu-aarch64") + 4] == "cortex-a76"


def test_missing_parts_are_one_error_naming_the_fix(tmp_path):
    root = _rootfs(tmp_path)
    (root / "home/pi/retinaface-pi/venv/pyvenv.cfg").unlink()
    with pytest.raises(EmulatorError, match="no deployed venv.*invoke deploy --host pi4-emu"):
        run.guest_in("pi4-emu", root)
    with pytest.raises(EmulatorError, match="counting runs on an emulated Pi"):
        run.release_for_host("raspberrypi")
    (tmp_path / "x86").write_bytes(b"\x7fELF" + b"\0" * 14 + struct.pack("<H", 62))
    with pytest.raises(EmulatorError, match="neither ARM nor AArch64"):
        run.elf_target(tmp_path / "x86")
