"""The emulated Raspberry Pi: a Debian armhf root filesystem run under qemu-user with its own sshd.

Each release is built once with debootstrap, cached as a tarball under
``cache_dir()/emu`` (key = release + package list + format version), extracted
outside the checkout, and served by an sshd started inside a private mount and
UTS namespace, so its /proc, /sys and /dev mounts vanish with it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from deploy.hosts.trust import record_own_host_key
from deploy.paths import cache_dir
from pi_setup.errors import EmulatorError
from pi_setup.rootfs import (
    CHROOT_ENV,
    checked_tree,
    compressor,
    extract_tarball,
    in_namespace,
    mirror_url,
    private_subdir,
    rmtree,
    run_logged,
    save_tarball,
    secure_dir,
    tail,
    write_file,
)
from pi_setup.rootfs import check_disk as check_free_disk
from pi_setup.rootfs import locked as lock_file

# Bump when the way a root filesystem is built changes, so old caches are not reused.
FORMAT_VERSION = 1

Progress = Callable[[str], None]

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Free space needed to build (rootfs ~1 GB, apt archives, the tarball) or to restore.
BUILD_BYTES = 4 * 1024**3
RESTORE_BYTES = 2 * 1024**3

DEBOOTSTRAP_TIMEOUT = 45 * 60
APT_TIMEOUT = 45 * 60
SSHD_START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# Runs a command chrooted in ROOT inside the (already private) mount and UTS namespace that
# `unshare` made for it: the mounts and the host name vanish with the last process.

@dataclass(frozen=True)
class Release:
    """One emulated Pi flavour: a Debian release, its packages and where its sshd listens."""

    name: str
    host: str
    port: int
    base: tuple  # installed by debootstrap
    extra: tuple  # installed afterwards by apt-get inside the chroot
    arch: str = "armhf"  # Debian architecture (armhf runs under qemu-arm, arm64 under qemu-aarch64)
    suite: str = ""  # Debian suite when it differs from `name` (trixie-arm64 -> trixie)
    cpu: str = ""  # QEMU_CPU every process of this Pi runs with ("" = qemu's default)

    @property
    def codename(self) -> str:
        return self.suite or self.name

    @property
    def image(self) -> str:
        """The root-filesystem image: suite + arch + packages. Two Pis that differ only in
        CPU model and port (pi4-64-emu, pi5-emu) share one cached tarball."""
        return self.codename if self.arch == "armhf" else f"{self.codename}-{self.arch}"


_BASE = ("python3", "python3-numpy", "openssh-server", "sudo", "ca-certificates")
_EXTRA_COMMON = ("python3-opencv", "python3-pip", "python3-venv")
# arm64: onnxruntime and torch come from the registry's aarch64 wheels (fetch-ort), not apt.
_EXTRA_ARM64 = _EXTRA_COMMON

# qemu-aarch64's default CPU (`max`) has dot-product, I8MM and SME, which no Pi 4 has:
# onnxruntime would pick kernels the real board cannot run. A Pi 4 is a Cortex-A72, a Pi 5 an A76.
PI4_CPU = "cortex-a72"
PI5_CPU = "cortex-a76"

RELEASES = {
    "bullseye": Release("bullseye", "pi4-emu", 2222, _BASE, ("python3-torch",) + _EXTRA_COMMON),
    "trixie": Release(
        "trixie", "pi4-emu-trixie", 2223, _BASE, ("python3-onnxruntime",) + _EXTRA_COMMON
    ),
    "trixie-arm64": Release(
        "trixie-arm64", "pi4-64-emu", 2224, _BASE, _EXTRA_ARM64, "arm64", "trixie", PI4_CPU
    ),
    "trixie-arm64-pi5": Release(
        "trixie-arm64-pi5", "pi5-emu", 2225, _BASE, _EXTRA_ARM64, "arm64", "trixie", PI5_CPU
    ),
    "bookworm-arm64": Release(
        "bookworm-arm64", "pi4-64-emu-bookworm", 2226, _BASE, _EXTRA_ARM64, "arm64", "bookworm",
        PI4_CPU,
    ),
}
DEFAULT_RELEASE = "bullseye"
ADDRESS = "127.0.0.1"
USER = "pi"


@dataclass
class EmuStatus:
    """What is known about one release's emulator right now."""

    release: str
    host: str
    address: str
    port: int
    running: bool
    pid: Optional[int]
    rootfs: Path
    rootfs_ready: bool
    tarball: Path
    cached: bool
    key_file: Path


# ---------------------------------------------------------------- paths and keys


def chroot_env(release: Release) -> dict:
    """The environment processes of RELEASE start with: CHROOT_ENV, plus QEMU_CPU on arm64
    (qemu-user reads it at each exec, and children inherit it)."""
    return dict(CHROOT_ENV, QEMU_CPU=release.cpu) if release.cpu else dict(CHROOT_ENV)


def namespace_argv(release: Release, root: Path, argv: List[str]) -> List[str]:
    """argv running ARGV chrooted in ROOT, in a private namespace; on arm64 with the host's CPU
    files hidden (rootfs.in_namespace `cpus`), which onnxruntime's cpuinfo crashed on."""
    return in_namespace(root, release.host, argv, cpus="0" if release.arch == "arm64" else "")



def release_of(name: str) -> Release:
    """The Release called NAME, or an EmulatorError listing the known ones."""
    try:
        return RELEASES[name]
    except KeyError:
        known = ", ".join(sorted(RELEASES))
        raise EmulatorError(f"unknown emulator release {name!r} (known: {known})") from None


def state_root() -> Path:
    """Where extracted root filesystems live: $RETINAFACE_PI_EMU_ROOT or /var/tmp/retinaface-pi/emu."""
    override = os.environ.get("RETINAFACE_PI_EMU_ROOT")
    return Path(override) if override else Path("/var/tmp/retinaface-pi/emu")


def emu_cache_dir() -> Path:
    """Cached root filesystem tarballs and the login key: cache_dir()/emu."""
    return cache_dir() / "emu"


def login_key() -> Path:
    """The private key user `pi` logs in with (generated once)."""
    return emu_cache_dir() / "id_ed25519"


def cache_key(release: Release) -> str:
    """Short digest of what goes into a root filesystem: release, packages, format version."""
    blob = json.dumps(
        {
            "format": FORMAT_VERSION,
            "release": release.image,
            "base": sorted(release.base),
            "extra": sorted(release.extra),
            "user": USER,
            **({"arch": release.arch} if release.arch != "armhf" else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]



def tarball_path(release: Release) -> Path:
    """The cached root filesystem of RELEASE for the current cache key."""
    suffix = compressor()[0]
    return emu_cache_dir() / f"{release.image}-{cache_key(release)}{suffix}"


STATE_WHAT = "the emulator's state, RETINAFACE_PI_EMU_ROOT"


def secure_state_root(create: bool = True) -> Path:
    """The state root, checked by rootfs.secure_dir (no symlink, no other user's or
    group/other-writable component; the root itself 0700)."""
    return secure_dir(state_root(), STATE_WHAT, create)


def _release_dir(release: Release) -> Path:
    """The checked state root's folder for RELEASE (made 0700 when missing)."""
    return private_subdir(secure_state_root(create=True), release.name, STATE_WHAT)


def checked_rootfs(release: Release) -> Optional[os.stat_result]:
    """lstat of the release's rootfs if it is one we may chroot into, None if there is none
    (rootfs.checked_tree: a real directory of ours inside the checked state root)."""
    root = secure_state_root(create=False)
    return checked_tree(
        _dirs(release)["rootfs"], root / release.name, "the emulator's root filesystem"
    )


def _dirs(release: Release) -> dict:
    base = state_root() / release.name
    return {
        "base": base,
        "rootfs": base / "rootfs",
        "build": base / "build",
        "pid": base / "sshd.pid",
        "log": base / "sshd.log",
        "build_log": base / "build.log",
        "lock": base / ".lock",
    }


STAMP = ".retinaface-pi-emu"


def _rootfs_ready(release: Release) -> bool:
    stamp = _dirs(release)["rootfs"] / STAMP
    try:
        return stamp.read_text().strip() == cache_key(release)
    except OSError:
        return False


# ---------------------------------------------------------------- host checks


# Debian architecture -> the qemu-user binfmt handler (qemu-user-static's name for it).
HANDLERS = {"armhf": "qemu-arm", "arm64": "qemu-aarch64"}


def check_host(
    need_bytes: int = RESTORE_BYTES, paths: Optional[List[Path]] = None, arch: str = "armhf"
) -> None:
    """Check root, binfmt_misc, the qemu handler for ARCH and free disk; fix what can be fixed.

    Mounts binfmt_misc and enables the handler when they are only switched off; raises an
    EmulatorError naming the fix otherwise.
    """
    check_root()
    _ensure_binfmt()
    handler = HANDLERS[arch]
    _ensure_qemu_arm(handler)
    _ensure_credentials(handler)
    for path in paths if paths is not None else [state_root(), emu_cache_dir()]:
        check_disk(path, need_bytes)


def check_disk(path: Path, need: int) -> None:
    """Refuse when PATH's disk has less than NEED bytes free, naming the settings that move it."""
    check_free_disk(
        path, need, "the emulated Pi",
        "free some space or point RETINAFACE_PI_EMU_ROOT / RETINAFACE_PI_CACHE at a larger disk",
    )  # fmt: skip


def check_root(task: str = "emu-up") -> None:
    if os.geteuid() != 0:
        # env PATH keeps a virtual environment's invoke visible under sudo's secure_path.
        raise EmulatorError(
            "the emulated Pi needs root (debootstrap, chroot, mount namespaces): "
            f'run the task as root, e.g. `sudo env "PATH=$PATH" invoke {task}`'
        )


def _ensure_binfmt() -> None:
    if (BINFMT_DIR / "status").exists():
        return
    proc = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0 or not (BINFMT_DIR / "status").exists():
        raise EmulatorError(
            f"binfmt_misc is not mounted at {BINFMT_DIR} and could not be mounted "
            f"({proc.stderr.strip() or 'no status file'}): run "
            f"`mount -t binfmt_misc binfmt_misc {BINFMT_DIR}` as root on the host "
            "(in a container: start it --privileged or mount it on the host)"
        )


def _qemu_arm_entry(handler: str = "qemu-arm") -> Optional[str]:
    entry = BINFMT_DIR / handler
    try:
        return entry.read_text()
    except OSError:
        return None


def _ensure_qemu_arm(handler: str = "qemu-arm") -> None:
    text = _qemu_arm_entry(handler)
    if text is None or not text.startswith("enabled"):
        if shutil.which("update-binfmts"):
            subprocess.run(
                ["update-binfmts", "--enable", handler],
                capture_output=True,
                text=True,
                timeout=60,
            )
        text = _qemu_arm_entry(handler)
    if text is None or not text.startswith("enabled"):
        raise EmulatorError(
            f"{handler} is not registered in {BINFMT_DIR} (ARM programs cannot run): "
            "run `apt-get install qemu-user-static binfmt-support` and "
            f"`update-binfmts --enable {handler}` as root"
        )
    flags = re.search(r"^flags:\s*(\S*)", text, re.M)
    if not flags or "F" not in flags.group(1):
        raise EmulatorError(
            f"the {handler} handler in {BINFMT_DIR / handler} lacks the F (fix-binary) flag, "
            "so it cannot run inside a chroot: install Debian's `qemu-user-static` "
            f"(it registers with F) and run `update-binfmts --enable {handler}`"
        )


CRED_ENTRY = "retinaface-pi-arm"  # for qemu-arm; qemu-aarch64's is retinaface-pi-aarch64


def _cred_entry(handler: str) -> str:
    return CRED_ENTRY if handler == "qemu-arm" else "retinaface-pi-" + handler[len("qemu-") :]


def _ensure_credentials(handler: str = "qemu-arm") -> None:
    """Let setuid ARM programs (sudo) work: a qemu-arm handler with the C (credentials) flag.

    Debian registers qemu-arm without it. Rather than replace that entry (ARM programs started
    meanwhile would fail), a second entry with the same magic and flags + "OC" is added; the
    kernel tries the newest entry first. It lasts until reboot; remove it with
    `echo -1 > /proc/sys/fs/binfmt_misc/retinaface-pi-arm`.
    """
    text = _qemu_arm_entry(handler) or ""
    entry = _cred_entry(handler)
    current = re.search(r"^flags:\s*(\S*)", text, re.M)
    if current and "C" in current.group(1):
        return
    try:
        ours = (BINFMT_DIR / entry).read_text()
    except OSError:
        ours = ""
    if ours.startswith("enabled"):
        return
    try:
        flags = re.search(r"^flags:\s*(\S*)", text, re.M).group(1)
        interpreter = re.search(r"^interpreter\s+(\S+)", text, re.M).group(1)
        offset = re.search(r"^offset\s+(\d+)", text, re.M).group(1)
        magic = re.search(r"^magic\s+([0-9a-f]+)", text, re.M).group(1)
        mask = re.search(r"^mask\s+([0-9a-f]+)", text, re.M).group(1)
    except AttributeError:
        raise EmulatorError(
            f"cannot read the {handler} handler in {BINFMT_DIR / handler}"
        ) from None

    def escaped(hexstr: str) -> str:
        return "".join("\\x" + hexstr[i : i + 2] for i in range(0, len(hexstr), 2))

    new_flags = "".join(sorted(set(flags) | {"O", "C"}))
    line = f":{entry}:M:{offset}:{escaped(magic)}:{escaped(mask)}:{interpreter}:{new_flags}"
    try:
        with open(BINFMT_DIR / "register", "w") as handle:
            handle.write(line)
    except OSError as error:
        raise EmulatorError(
            f"cannot add the {handler} handler with the C flag ({error}) that `sudo` inside the "
            f"emulator needs: run `update-binfmts --package qemu-user-static --remove {handler} "
            f"{interpreter}` and re-add it with `--credentials yes`"
        ) from None



# ---------------------------------------------------------------- small helpers



def locked(release: Release):
    """Serialize build/start/stop of one release between processes (rootfs.locked on the
    release's checked folder)."""
    return lock_file(_release_dir(release) / ".lock")



# ---------------------------------------------------------------- build / restore


def ensure_rootfs(release: Release, progress: Progress = lambda _msg: None) -> str:
    """Make the release's root filesystem ready: 'present', 'restored' from cache or 'built'."""
    dirs = _dirs(release)
    if _rootfs_ready(release):
        return "present"
    if _running_pid(release) is not None:
        raise EmulatorError(
            f"the {release.name} emulator runs on an outdated root filesystem: "
            f"`invoke emu-down --release {release.name}` first"
        )
    tarball = tarball_path(release)
    if tarball.exists():
        check_host(RESTORE_BYTES, [state_root()], release.arch)
        progress(f"restoring {release.name} root filesystem from {tarball}")
        _restore(release, tarball)
        return "restored"
    check_host(BUILD_BYTES, arch=release.arch)
    if not shutil.which("debootstrap"):
        raise EmulatorError(
            f"no cached {release.name} root filesystem ({tarball}) and no debootstrap to build "
            "one: run `apt-get install debootstrap` as root"
        )
    progress(
        f"building the {release.name} {release.arch} root filesystem "
        f"(10-35 min; log {dirs['build_log']})"
    )
    build_rootfs(release, progress)
    return "built"


def _restore(release: Release, tarball: Path) -> None:
    dirs = _dirs(release)
    rmtree(dirs["rootfs"])
    tmp = dirs["base"] / "rootfs.restoring"
    extract_tarball(tarball, tmp, dirs["build_log"], f"restoring {tarball}")
    os.replace(tmp, dirs["rootfs"])


def build_rootfs(release: Release, progress: Progress = lambda _msg: None) -> Path:
    """Build the root filesystem from the Debian mirror, cache it as a tarball, return the tarball."""
    dirs = _dirs(release)
    log = dirs["build_log"]
    work = dirs["build"]
    dirs["base"].mkdir(parents=True, exist_ok=True)
    log.write_text("")
    rmtree(work)
    mirror = mirror_url()
    started = time.monotonic()

    def stage(msg: str) -> None:
        progress(f"[{time.monotonic() - started:5.0f} s] {msg}")

    stage(f"debootstrap {release.codename} {release.arch} from {mirror}")
    run_logged(
        [
            "debootstrap", f"--arch={release.arch}", "--variant=minbase",
            "--include=" + ",".join(release.base), release.codename, str(work), mirror,
        ],
        log, DEBOOTSTRAP_TIMEOUT, f"debootstrap of {release.name}",
    )  # fmt: skip

    # No services may start inside the chroot; dpkg need not fsync under emulation.
    write_file(work / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    write_file(work / "etc/dpkg/dpkg.cfg.d/retinaface-pi-unsafe-io", "force-unsafe-io\n")
    write_file(
        work / "etc/apt/apt.conf.d/90retinaface-pi",
        'APT::Install-Recommends "false";\nAcquire::Languages "none";\n',
    )
    (work / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", work / "etc/resolv.conf")

    stage("apt-get install " + " ".join(release.extra))
    script = "apt-get update -q && apt-get install -y -q " + " ".join(release.extra)
    run_logged(
        namespace_argv(release, work, ["/bin/sh", "-c", script]),
        log, APT_TIMEOUT, f"apt-get install in the {release.name} root filesystem",
        env=chroot_env(release),
    )  # fmt: skip

    stage(f"user {USER} with passwordless sudo")
    run_logged(
        ["useradd", "--root", str(work), "-m", "-s", "/bin/bash", "-G", "sudo", "-p", "*", USER],
        log, 60, f"creating user {USER}",
    )  # fmt: skip
    write_file(
        work / "etc/sudoers.d/010-retinaface-pi", f"{USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440
    )
    # sudo resets the environment: without this, `sudo apt-get` would run on qemu's `max` CPU.
    write_file(work / "etc/sudoers.d/011-retinaface-pi-cpu", 'Defaults env_keep += "QEMU_CPU"\n', 0o440)
    write_file(work / "etc/hostname", release.host + "\n")
    write_file(work / "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {release.host}\n")
    (work / "usr/sbin/policy-rc.d").unlink()
    (work / "etc/dpkg/dpkg.cfg.d/retinaface-pi-unsafe-io").unlink()
    for key in (work / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # generated per extraction at start time
    for deb in (work / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (work / "run/sshd").mkdir(parents=True, exist_ok=True)
    (work / STAMP).write_text(cache_key(release) + "\n")

    tarball = tarball_path(release)
    stage(f"caching the root filesystem as {tarball}")
    save_tarball(work, tarball, log)
    same_image = re.compile(re.escape(release.image) + r"-[0-9a-f]{12}\.tar\.[a-z]+$")
    for old in tarball.parent.glob(f"{release.image}-*.tar.*"):
        if old != tarball and same_image.match(old.name):
            old.unlink()

    rmtree(dirs["rootfs"])
    os.replace(work, dirs["rootfs"])
    stage(f"{release.name} root filesystem ready")
    return tarball


# ---------------------------------------------------------------- processes


def _same_root(pid: int, rootfs: Path, st: os.stat_result) -> bool:
    """True when PID's root directory is our rootfs: same path and the same inode."""
    try:
        if os.readlink(f"/proc/{pid}/root") != str(rootfs):
            return False
        root = os.stat(f"/proc/{pid}/root")
    except OSError:
        return False
    return (root.st_dev, root.st_ino) == (st.st_dev, st.st_ino)


def _our_rootfs(release: Release) -> Optional[tuple]:
    """(resolved rootfs path, its stat) when the rootfs passes `checked_rootfs`, else None."""
    st = checked_rootfs(release)
    if st is None:
        return None
    return _dirs(release)["rootfs"].resolve(), st


def _running_pid(release: Release) -> Optional[int]:
    """The pid of the release's sshd if it runs (checked against its root, not just the pid file)."""
    dirs = _dirs(release)
    try:
        pid = int(dirs["pid"].read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    ours = _our_rootfs(release)
    return pid if ours is not None and _same_root(pid, *ours) else None


def _is_gone(pid: int) -> bool:
    """True when PID no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def emulator_pids(release: Release) -> List[int]:
    """Every live process of the release's emulator: chrooted in its root or in sshd's namespace.

    Only a rootfs that passes `checked_rootfs` counts, and never the machine's own mount
    namespace (a pid file naming a host process must not make us kill the host's processes).
    """
    ours = _our_rootfs(release)
    if ours is None:
        return []
    rootfs, rootfs_stat = ours
    sshd = _running_pid(release)
    ns = None
    if sshd is not None:
        with contextlib.suppress(OSError):
            ns = os.readlink(f"/proc/{sshd}/ns/mnt")
    host_ns = set()
    for pid in ("self", "1"):
        with contextlib.suppress(OSError):
            host_ns.add(os.readlink(f"/proc/{pid}/ns/mnt"))
    if ns in host_ns:
        ns = None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            root = os.readlink(f"/proc/{pid}/root")
            pid_ns = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        in_root = root == str(rootfs) and _same_root(pid, rootfs, rootfs_stat)
        if (in_root or (ns is not None and pid_ns == ns)) and not _is_gone(pid):
            found.append(pid)
    return sorted(found)


def _wait_gone(pids: List[int], timeout: float) -> List[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        for pid in alive:
            _reap(pid)
        alive = [pid for pid in alive if not _is_gone(pid)]
        if alive:
            time.sleep(0.1)
    for pid in pids:
        _reap(pid)
    return alive


def stop(release: Release) -> List[int]:
    """Stop the release's sshd and every process in its namespace; return the pids stopped."""
    dirs = _dirs(release)
    pids = emulator_pids(release)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    alive = _wait_gone(pids, STOP_TIMEOUT)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    alive = _wait_gone(alive, STOP_TIMEOUT)
    if alive:
        raise EmulatorError(
            f"the {release.name} emulator's processes {alive} survived SIGKILL "
            f"(stuck in the kernel?): check `ps -o pid,stat,cmd -p {','.join(map(str, alive))}`"
        )
    dirs["pid"].unlink(missing_ok=True)
    return pids


def _ensure_login_key() -> Path:
    key = login_key()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_name(f".{key.name}.{os.getpid()}")
        for path in (tmp, Path(f"{tmp}.pub")):
            path.unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "retinaface-pi-emu", "-f", str(tmp)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        os.replace(f"{tmp}.pub", f"{key}.pub")
        os.replace(tmp, key)
    return key


# Inside the rootfs every path is walked one directory at a time with O_NOFOLLOW: the emulated
# Pi's own root (or `pi`, who has sudo) controls that tree, and an absolute symlink there
# (home/pi/.ssh -> /etc) would otherwise make the host's root write or chown host files.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_in_rootfs(rootfs: Path, rel: str, create: bool = False) -> int:
    """A directory fd for ROOTFS/REL, reached without following any symlink (made 0755 if
    missing and `create`); EmulatorError when a component is a symlink or not a directory."""
    fd = os.open(rootfs, _DIR_FLAGS)
    try:
        for part in [p for p in rel.split("/") if p]:
            if part == "..":
                raise EmulatorError(f"{rootfs}/{rel}: `..` in a path inside the rootfs")
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                raise EmulatorError(
                    f"{rootfs}/{rel}: {part!r} is a symlink or not a directory "
                    f"({error.strerror}); refusing to touch it"
                ) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read_in(dir_fd: int, name: str, limit: int = 1 << 20) -> str:
    """Text of the regular file NAME in DIR_FD (not through a symlink), at most LIMIT bytes."""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise EmulatorError(f"{name}: not a regular file in the rootfs (a symlink)") from None
        raise EmulatorError(f"{name}: cannot read it in the rootfs ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise EmulatorError(f"{name}: not a regular file in the rootfs")
        return handle.read(limit).decode(errors="replace")


def _write_in(
    dir_fd: int, name: str, data: bytes, mode: int = 0o644, owner: Optional[tuple] = None
) -> None:
    """Atomically replace NAME in DIR_FD (temp name + rename, both relative to the fd)."""
    tmp = f".{name}.{os.getpid()}.{time.monotonic_ns()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _passwd_ids(rootfs: Path, user: str) -> tuple:
    etc = _open_in_rootfs(rootfs, "etc")
    try:
        text = _read_in(etc, "passwd")
    finally:
        os.close(etc)
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] == user and len(fields) > 3 and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    raise EmulatorError(f"user {user!r} is missing from {rootfs / 'etc/passwd'}")


def _exists_in(dir_fd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise EmulatorError(f"{name}: not a regular file in the rootfs")
    return True


def _prepare(release: Release) -> None:
    """Host key (kept per extraction), the login key authorized for pi, sshd's run dir."""
    if checked_rootfs(release) is None:
        raise EmulatorError(f"the {release.name} root filesystem is missing")
    rootfs = _dirs(release)["rootfs"]
    ssh_etc = _open_in_rootfs(rootfs, "etc/ssh")
    try:
        key = "ssh_host_ed25519_key"
        if not _exists_in(ssh_etc, key):
            with tempfile.TemporaryDirectory(prefix="emu-hostkey-") as tmp:
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{release.host}", "-f", f"{tmp}/k"],
                    check=True, capture_output=True, timeout=60,
                )  # fmt: skip
                _write_in(ssh_etc, key + ".pub", Path(f"{tmp}/k.pub").read_bytes(), 0o644)
                _write_in(ssh_etc, key, Path(f"{tmp}/k").read_bytes(), 0o600)
    finally:
        os.close(ssh_etc)
    os.close(_open_in_rootfs(rootfs, "run/sshd", create=True))
    with contextlib.suppress(OSError):  # today's resolver, for apt or pip inside
        etc = _open_in_rootfs(rootfs, "etc")
        try:
            _write_in(etc, "resolv.conf", Path("/etc/resolv.conf").read_bytes())
        finally:
            os.close(etc)
    uid, gid = _passwd_ids(rootfs, USER)
    home = _open_in_rootfs(rootfs, f"home/{USER}")
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(".ssh", 0o700, dir_fd=home)
        ssh_dir = _open_in_rootfs(rootfs, f"home/{USER}/.ssh")
        try:
            os.fchown(ssh_dir, uid, gid)
            os.fchmod(ssh_dir, 0o700)
            pub = Path(f"{_ensure_login_key()}.pub").read_bytes()
            _write_in(ssh_dir, "authorized_keys", pub, 0o600, owner=(uid, gid))
        finally:
            os.close(ssh_dir)
    finally:
        os.close(home)


def _port_open(port: int, timeout: float = 1.0) -> Optional[bytes]:
    """The first bytes a server on 127.0.0.1:PORT sends, b'' if it sends none, None if closed."""
    try:
        with socket.create_connection((ADDRESS, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            try:
                return sock.recv(64)
            except socket.timeout:
                return b""
    except OSError:
        return None


def start(release: Release) -> int:
    """Start sshd for RELEASE in a private namespace; wait until it greets; return its pid."""
    dirs = _dirs(release)
    _release_dir(release)
    if checked_rootfs(release) is None or not _rootfs_ready(release):
        raise EmulatorError(f"the {release.name} root filesystem at {dirs['rootfs']} is not ready")
    if _port_open(release.port) is not None:
        raise EmulatorError(
            f"port {release.port} on {ADDRESS} is already in use by another program; "
            f"stop it before `invoke emu-up --release {release.name}`"
        )
    _prepare(release)
    sshd = [
        "/usr/sbin/sshd", "-D", "-e", "-p", str(release.port),
        "-o", f"ListenAddress={ADDRESS}",
        "-o", "HostKey=/etc/ssh/ssh_host_ed25519_key",
        "-o", "PasswordAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no",
        "-o", "PermitRootLogin=no",
        "-o", "UsePAM=no",
        "-o", "UseDNS=no",
        "-o", f"AllowUsers={USER}",
    ]  # fmt: skip
    if release.cpu:  # sshd builds each session's environment afresh: hand it the CPU model
        sshd += ["-o", f"SetEnv=QEMU_CPU={release.cpu}"]
    log = open(dirs["log"], "ab")
    try:
        proc = subprocess.Popen(
            namespace_argv(release, dirs["rootfs"], sshd),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=chroot_env(release), start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()
    write_file(dirs["pid"], f"{proc.pid}\n")
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            dirs["pid"].unlink(missing_ok=True)
            raise EmulatorError(
                f"sshd of the {release.name} emulator exited with code {proc.returncode} "
                f"(log {dirs['log']}):\n{tail(dirs['log'])}"
            )
        banner = _port_open(release.port)
        ours = _our_rootfs(release)
        if banner and banner.startswith(b"SSH-") and ours and _same_root(proc.pid, *ours):
            return proc.pid
        if time.monotonic() > deadline:
            stop(release)
            raise EmulatorError(
                f"sshd of the {release.name} emulator did not answer on {ADDRESS}:{release.port} "
                f"within {SSHD_START_TIMEOUT:.0f} s (log {dirs['log']})"
            )
        time.sleep(0.2)


def record_host_key(release: Release) -> Path:
    """Record the emulator's fresh host key in the project known_hosts (deploy.hosts.trust)."""
    ssh_etc = _open_in_rootfs(_dirs(release)["rootfs"], "etc/ssh")
    try:  # the rootfs's own file, not whatever a symlink there points at
        words = _read_in(ssh_etc, "ssh_host_ed25519_key.pub", 16384).split()
    finally:
        os.close(ssh_etc)
    if len(words) < 2 or not re.match(r"^[A-Za-z0-9+/=]+$", words[1]):
        raise EmulatorError(f"the {release.name} emulator's host key is not an OpenSSH key")
    kind, blob = words[:2]
    return record_own_host_key(f"[{ADDRESS}]:{release.port}", kind, blob)


# ---------------------------------------------------------------- what the tasks call


def status(release: Release) -> EmuStatus:
    """What runs and what is on disk for RELEASE."""
    dirs = _dirs(release)
    tarball = tarball_path(release)
    pid = _running_pid(release)
    return EmuStatus(
        release=release.name,
        host=release.host,
        address=ADDRESS,
        port=release.port,
        running=pid is not None,
        pid=pid,
        rootfs=dirs["rootfs"],
        rootfs_ready=_rootfs_ready(release),
        tarball=tarball,
        cached=tarball.exists(),
        key_file=login_key(),
    )


def up(
    name: str = DEFAULT_RELEASE, progress: Progress = lambda _msg: None, fresh: bool = False
) -> EmuStatus:
    """Build or restore the root filesystem, start sshd, trust its host key; idempotent.

    FRESH stops a running emulator and restores the root filesystem from the cached tarball,
    dropping whatever was installed or left in it since.
    """
    release = release_of(name)
    check_host(0, arch=release.arch)
    with locked(release):
        if fresh:
            if emulator_pids(release):
                progress(f"stopping {release.host} for a fresh root filesystem")
                stop(release)
            if tarball_path(release).exists():
                check_host(RESTORE_BYTES, [state_root()], release.arch)
                progress(
                    f"restoring a fresh {release.name} root filesystem from {tarball_path(release)}"
                )
                _restore(release, tarball_path(release))
        ensure_rootfs(release, progress)
        if _running_pid(release) is None:
            progress(f"starting sshd of {release.host} on {ADDRESS}:{release.port}")
            start(release)
        else:
            _prepare(release)  # a new login key would otherwise be refused
        record_host_key(release)
    return status(release)


def prepare(name: str = DEFAULT_RELEASE, progress: Progress = lambda _msg: None) -> str:
    """Make the release's root filesystem ready without starting it: 'present', 'restored' or
    'built'. Holds the release's lock, so an `up` meanwhile waits for it instead of racing."""
    release = release_of(name)
    check_host(0, arch=release.arch)
    with locked(release):
        return ensure_rootfs(release, progress)


def down(name: Optional[str] = None) -> List[EmuStatus]:
    """Stop one release's emulator (or all); return the status of those that were running."""
    check_root("emu-down")
    names = [name] if name else sorted(RELEASES)
    stopped = []
    for each in names:
        release = release_of(each)
        with locked(release):
            if emulator_pids(release):
                stop(release)
                stopped.append(status(release))
            else:
                _dirs(release)["pid"].unlink(missing_ok=True)
    return stopped


def status_all() -> List[EmuStatus]:
    """Status of every known release."""
    return [status(release_of(name)) for name in sorted(RELEASES)]
