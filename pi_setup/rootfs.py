"""The toolkit for root-owned state under /var/tmp: the emulated Pis, the cross build root and
the wheel gate all build, lock, chroot into and remove trees with these, under one set of checks.

Another local user can create files in a shared sticky folder such as /var/tmp before we do.
Every path here is therefore checked before root writes, chroots or runs anything in it:
`secure_dir` (each component a real directory owned by root or us, not writable by others),
`private_subdir` (0700, ours), `checked_tree` (a tree we made, not a symlink to elsewhere),
`locked` (never through a symlink, never truncating, owned by us).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Optional

from pi_setup.errors import EmulatorError
from retinaface.files import write_atomic

TAR_TIMEOUT = 15 * 60

# Runs a command chrooted in ROOT inside the (already private) mount and UTS namespace that
# `unshare` made for it: the mounts and the host name vanish with the last process.
NAMESPACE_SCRIPT = r"""set -euo pipefail
root=$1; name=$2; cpus=$3; shift 3
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
if [ -n "$cpus" ]; then
  # The host's x86 CPU topology and caches would reach an ARM guest's cpuinfo library (used by
  # onnxruntime on aarch64), which crashes on them: it sees CPUS and nothing else.
  mount -t tmpfs -o size=64k,mode=0755 cpus "$root/sys/devices/system/cpu"
  echo "$cpus" > "$root/sys/devices/system/cpu/possible"
  echo "$cpus" > "$root/sys/devices/system/cpu/present"
fi
mount --rbind /dev "$root/dev"
hostname "$name"
exec chroot "$root" "$@"
"""

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "LANG": "C",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}


# ---------------------------------------------------------------- checked state


def secure_dir(path: Path, what: str, create: bool = True) -> Path:
    """PATH, checked: every component a real directory (no symlink) owned by root or us and not
    writable by others (a sticky one such as /var/tmp excepted); PATH itself made 0700 when ours.
    Missing components are made 0700 when `create` (else PATH is returned unchecked below the
    first missing one). `what` names the state in messages, e.g. "the emulator's state,
    RETINAFACE_PI_EMU_ROOT". Another local user must not be able to redirect, pre-create or
    fill the place where root chroots, chowns and kills."""
    root = Path(os.path.abspath(path))
    me = os.geteuid()
    current = Path("/")
    st = os.lstat(current)
    for part in root.parts[1:]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                return root
            os.mkdir(current, 0o700)
            st = os.lstat(current)
        check_component(current, st, what)
    if st.st_uid == me and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(root, 0o700)  # ours and reached only through checked directories
    return root


def check_component(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse PATH (lstat ST) as a step towards root's state: a symlink, not a directory, another
    user's, or writable by others without the sticky bit."""
    where = f"{path} (on the way to {what})"
    if stat.S_ISLNK(st.st_mode):
        raise EmulatorError(f"{where}: is a symlink; refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise EmulatorError(f"{where}: is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise EmulatorError(f"{where}: belongs to uid {st.st_uid}, another user; refusing")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise EmulatorError(f"{where}: other users may write in it (mode {st.st_mode & 0o7777:o})")


def private_subdir(parent: Path, name: str, what: str) -> Path:
    """PARENT/NAME made 0700 when missing, then checked like a component (PARENT already is)."""
    base = parent / name
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    check_component(base, os.lstat(base), what)
    return base


def checked_tree(path: Path, parent: Path, what: str) -> Optional[os.stat_result]:
    """lstat of PATH if it is a tree we may chroot into, None if there is none.

    Refused (EmulatorError): a symlink, anything but a directory, a directory owned by neither
    root nor us, or one that resolves outside PARENT. A stamp file inside proves nothing by
    itself: these checks (and PARENT's, by `secure_dir`) are what makes the tree ours.
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, PermissionError):  # a non-root user cannot look into the state
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise EmulatorError(f"{path}: {what} is not a real directory")
    if st.st_uid not in (0, os.geteuid()):
        raise EmulatorError(f"{path}: belongs to uid {st.st_uid}, not to us; refusing")
    if path.resolve().parent != parent.resolve():
        raise EmulatorError(f"{path}: resolves outside {parent}; refusing")
    return st


@contextlib.contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive flock on LOCK (its folder already checked by the caller).

    Opened never through a symlink and never truncating what is there; refused unless it is a
    regular file of ours (a file another user planted is not a lock we may trust)."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise EmulatorError(f"{lock}: cannot open the lock file ({error.strerror})") from None
    with os.fdopen(fd, "w") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EmulatorError(f"{lock}: the lock is not a regular file")
        if st.st_uid != os.geteuid():
            raise EmulatorError(f"{lock}: the lock belongs to uid {st.st_uid}, not to us")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- files and trees


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """TEXT to PATH whole or not at all (retinaface.files.write_atomic), parents made."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode)


def rmtree(path: Path) -> None:
    """Remove a tree quickly: rename it aside, then delete it in a detached low-priority `rm`.

    Refuses while anything is mounted below it (it would delete through the mount).
    """
    if not path.exists():
        return
    if mounts_under(path):
        raise EmulatorError(f"cannot remove {path}: something is still mounted below it")
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.replace(path, trash)
    subprocess.Popen(
        ["nice", "-n", "19", "rm", "-rf", "--one-file-system", str(trash)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def mounts_under(path: Path) -> List[str]:
    """Mount points of this mount namespace at or below PATH."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def check_disk(path: Path, need: int, what: str, hint: str) -> None:
    """Refuse when the disk holding PATH (or its nearest existing parent) has less than NEED."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise EmulatorError(
            f"not enough disk for {what} at {path}: {free / 1e9:.1f} GB free, "
            f"{need / 1e9:.1f} GB needed; {hint}"
        )


# ---------------------------------------------------------------- running things


def quote(path) -> str:
    """One shell word."""
    return shlex.quote(str(path))


def tail(path: Path, lines: int = 15) -> str:
    """The last LINES lines of a log ('' when unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_logged(cmd: List[str], log: Path, timeout: float, what: str, env=None) -> None:
    """Run CMD appending its output to LOG; an EmulatorError with the log tail on failure."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                timeout=timeout, env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise EmulatorError(f"{what} took more than {timeout:.0f} s (log: {log})") from None
    if proc.returncode != 0:
        raise EmulatorError(
            f"{what} failed with exit code {proc.returncode} (log: {log}):\n{tail(log)}"
        )


def in_namespace(root: Path, name: str, argv: List[str], cpus: str = "") -> List[str]:
    """argv that runs ARGV chrooted in ROOT inside a private mount + UTS namespace.

    CPUS (e.g. "0"): hide the host's /sys/devices/system/cpu behind a tmpfs listing only these
    CPUs (for aarch64 guests, whose cpuinfo library reads it)."""
    return [
        "unshare", "--mount", "--uts", "--propagation", "private",
        "bash", "-c", NAMESPACE_SCRIPT, "emu-ns", str(root), name, cpus, *argv,
    ]  # fmt: skip


# ---------------------------------------------------------------- cached tarballs


def compressor() -> tuple:
    """(suffix, compress argv, decompress argv): zstd when installed, else gzip."""
    if shutil.which("zstd"):
        return ".tar.zst", ["zstd", "-q", "-T0", "-3"], ["zstd", "-q", "-d", "-c"]
    return ".tar.gz", ["gzip", "-1"], ["gzip", "-d", "-c"]


def extract_tarball(tarball: Path, dest: Path, log: Path, what: str) -> None:
    """Unpack a cached root filesystem into DEST (made fresh), owners and modes kept."""
    rmtree(dest)
    dest.mkdir(parents=True)
    decompress = ["zstd", "-q", "-d", "-c"] if tarball.suffix == ".zst" else ["gzip", "-d", "-c"]
    script = (
        f"set -o pipefail; {' '.join(decompress)} {quote(tarball)} | "
        f"tar -x --numeric-owner -p -C {quote(dest)} -f -"
    )
    run_logged(["bash", "-c", script], log, TAR_TIMEOUT, what)


def save_tarball(tree: Path, tarball: Path, log: Path) -> None:
    """Cache TREE as TARBALL (written as .part, then renamed)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tmp = tarball.with_name(tarball.name + ".part")
    compress = " ".join(compressor()[1])
    script = (
        f"set -o pipefail; tar -c --numeric-owner -C {quote(tree)} -f - . | {compress} > {quote(tmp)}"
    )
    run_logged(["bash", "-c", script], log, TAR_TIMEOUT, f"writing {tarball}")
    os.replace(tmp, tarball)


def mirror_url(sources: Optional[List[Path]] = None) -> str:
    """The Debian mirror this machine's apt uses ($RETINAFACE_PI_MIRROR overrides).

    Reads one-line (`deb URL …`) and deb822 (`URIs: URL`) sources; the first URL ending in
    /debian wins (not -security, not third-party repositories).
    """
    override = os.environ.get("RETINAFACE_PI_MIRROR")
    if override:
        return override
    if sources is None:
        sources = [Path("/etc/apt/sources.list")]
        sources += sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:^URIs:|^deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.M):
            url = match.group(1).rstrip("/")
            if url.endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"
