"""The 64-bit emulated Pis' definitions: which qemu handler, which CPU model reaches their
processes, which image they share, and that the 32-bit Pis' cached images keep their keys.
Pure: no qemu, no emulator started (the emulated tier runs them: tests/emulated/test_arm64.py)."""

from __future__ import annotations

import subprocess

from pi_setup import emulator
from pi_setup.rootfs import NAMESPACE_SCRIPT, in_namespace

PI4_64 = emulator.release_of("trixie-arm64")
PI5 = emulator.release_of("trixie-arm64-pi5")
BULLSEYE = emulator.release_of("bullseye")


def test_the_64_bit_pis_are_a72_and_a76_on_one_trixie_arm64_image(monkeypatch, tmp_path):
    monkeypatch.setenv("RETINAFACE_PI_CACHE", str(tmp_path))
    assert (PI4_64.host, PI4_64.arch, PI4_64.codename, PI4_64.cpu) == (
        "pi4-64-emu", "arm64", "trixie", "cortex-a72",
    )  # fmt: skip
    assert (PI5.host, PI5.cpu) == ("pi5-emu", "cortex-a76")
    # one debootstrap serves both: the Pi 5 restores the Pi 4's tarball
    assert emulator.tarball_path(PI5) == emulator.tarball_path(PI4_64)
    assert emulator.tarball_path(PI4_64).name.startswith("trixie-arm64-")
    assert emulator.cache_key(PI4_64) != emulator.cache_key(emulator.release_of("trixie"))
    assert emulator.HANDLERS[PI4_64.arch] == "qemu-aarch64"


def test_the_32_bit_pis_keep_their_cache_keys():
    # the keys of the tarballs CI and every machine already hold (a changed key rebuilds: 20-40 min)
    assert emulator.cache_key(BULLSEYE) == "1ce797cc6b6b"
    assert emulator.cache_key(emulator.release_of("trixie")) == "ec66ad23f65c"
    assert BULLSEYE.cpu == "" and "QEMU_CPU" not in emulator.chroot_env(BULLSEYE)


def test_every_process_of_a_64_bit_pi_gets_its_cpu_model():
    # sshd and what apt runs in the build start with it; qemu-user reads it at every exec
    assert emulator.chroot_env(PI4_64)["QEMU_CPU"] == "cortex-a72"
    assert emulator.chroot_env(PI5)["QEMU_CPU"] == "cortex-a76"
    argv = emulator.namespace_argv(PI4_64, "/r", ["/usr/sbin/sshd"])
    assert argv[argv.index(NAMESPACE_SCRIPT) + 1 :][:4] == ["emu-ns", "/r", "pi4-64-emu", "0"]
    armhf = emulator.namespace_argv(BULLSEYE, "/r", ["/bin/true"])
    assert armhf[armhf.index(NAMESPACE_SCRIPT) + 1 :][:4] == ["emu-ns", "/r", "pi4-emu", ""]


def test_the_namespace_script_hides_the_host_cpus_only_when_asked():
    assert subprocess.run(["bash", "-n", "-c", NAMESPACE_SCRIPT]).returncode == 0
    assert 'mount -t tmpfs -o size=64k,mode=0755 cpus "$root/sys/devices/system/cpu"' in (
        NAMESPACE_SCRIPT
    )
    assert in_namespace("/r", "n", ["x"])[-4:] == ["/r", "n", "", "x"]
