"""The emulated Pi's root-owned state cannot be redirected by another local user or by the tree
inside the rootfs: crafted state roots (RETINAFACE_PI_EMU_ROOT in tmp, a second local user's
files, symlinks) against the lock, the rootfs check, emulator_pids, _prepare and start — called
directly, no qemu, no emulator started."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from pi_setup import emulator
from pi_setup.errors import EmulatorError

pytestmark = pytest.mark.root  # chown to a second user, chroot, useradd

NEIGHBOUR = "rfpi-neighbour"
REL = emulator.release_of("bullseye")


@pytest.fixture
def neighbour() -> int:
    """uid of a second, unprivileged local user (created when missing; the tests run as root)."""
    try:
        return pwd.getpwnam(NEIGHBOUR).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NEIGHBOUR],
            check=True,
        )
        return pwd.getpwnam(NEIGHBOUR).pw_uid


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "state" / "emu"
    monkeypatch.setenv("RETINAFACE_PI_EMU_ROOT", str(root))
    monkeypatch.setenv("RETINAFACE_PI_CACHE", str(tmp_path / "cache"))
    return root


def _rootfs(state: Path) -> Path:
    """A minimal crafted rootfs: etc/passwd with pi, etc/ssh, home/pi."""
    rootfs = state / REL.name / "rootfs"
    for rel in ("etc/ssh", "home/pi", "run"):
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (rootfs / emulator.STAMP).write_text(emulator.cache_key(REL) + "\n")
    os.chmod(state, 0o700)
    return rootfs


def test_state_root_is_made_0700_and_its_lock_is_a_plain_file(state):
    with emulator.locked(REL):
        pass
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert (state / REL.name / ".lock").is_file()


def test_symlinked_lock_is_refused_and_its_target_kept(state, tmp_path):
    (state / REL.name).mkdir(parents=True)
    victim = tmp_path / "root-owned.conf"
    victim.write_text("precious\n")
    (state / REL.name / ".lock").symlink_to(victim)
    with pytest.raises(EmulatorError, match=r"\.lock: cannot open the lock file"):
        with emulator.locked(REL):
            pass
    assert victim.read_text() == "precious\n"


def test_state_dir_precreated_by_another_user_is_refused(state, tmp_path, neighbour):
    shared = state.parent
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /var/tmp
    state.mkdir()
    os.chown(state, neighbour, neighbour)
    (state / REL.name).mkdir()
    os.chown(state / REL.name, neighbour, neighbour)
    with pytest.raises(EmulatorError, match=f"belongs to uid {neighbour}, another user"):
        with emulator.locked(REL):
            pass
    with pytest.raises(EmulatorError, match="another user"):
        emulator.emulator_pids(REL)


def test_world_writable_or_symlinked_components_are_refused(state, tmp_path):
    state.parent.mkdir()
    os.chmod(state.parent, 0o777)  # writable by all, not sticky
    with pytest.raises(EmulatorError, match="other users may write in it"):
        emulator.secure_state_root()
    os.chmod(state.parent, 0o755)
    real = tmp_path / "elsewhere"
    real.mkdir()
    state.symlink_to(real)
    with pytest.raises(EmulatorError, match="is a symlink"):
        emulator.secure_state_root()


def test_rootfs_symlink_to_slash_selects_no_host_process(state):
    (state / REL.name).mkdir(parents=True)
    (state / REL.name / "rootfs").symlink_to("/")
    (state / REL.name / "sshd.pid").write_text("1\n")  # init: in the host's namespace
    with pytest.raises(EmulatorError, match="not a real directory"):
        emulator.emulator_pids(REL)
    with pytest.raises(EmulatorError, match="not a real directory"):
        emulator.checked_rootfs(REL)
    with pytest.raises(EmulatorError, match="not a real directory"):
        emulator.down(REL.name)  # refuses instead of SIGTERMing the host's processes


def test_rootfs_owned_by_another_user_is_refused(state, neighbour):
    rootfs = _rootfs(state)
    os.chown(rootfs, neighbour, neighbour)
    with pytest.raises(EmulatorError, match=f"belongs to uid {neighbour}"):
        emulator.checked_rootfs(REL)


def test_start_refuses_a_symlinked_rootfs_before_anything_runs(state, tmp_path):
    target = _rootfs(tmp_path / "planted")
    (state / REL.name).mkdir(parents=True)
    (state / REL.name / "rootfs").symlink_to(target)
    with pytest.raises(EmulatorError, match="not a real directory"):
        emulator.start(REL)
    assert not (state / REL.name / "sshd.pid").exists()


def test_emulator_pids_finds_only_processes_chrooted_in_our_rootfs(state):
    rootfs = _rootfs(state)
    pid = os.fork()
    if pid == 0:  # child: chroot into the crafted rootfs and wait to be found
        try:
            os.chroot(str(rootfs))
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while emulator.emulator_pids(REL) != [pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emulator.emulator_pids(REL) == [pid]
        # A pid file naming init (host namespace) adds nothing.
        (state / REL.name / "sshd.pid").write_text("1\n")
        assert emulator.emulator_pids(REL) == [pid]
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("planted", ["home/pi/.ssh", "etc/ssh", "etc"])
def test_prepare_does_not_write_or_chown_through_symlinks(state, tmp_path, planted):
    rootfs = _rootfs(state)
    victim = tmp_path / "host-dir"
    victim.mkdir()
    if planted == "etc":  # the passwd _prepare reads must exist at the link's target too
        (victim / "passwd").write_text((rootfs / "etc/passwd").read_text())
        (victim / "ssh").mkdir()
    link = rootfs / planted
    if link.exists():
        os.rename(link, tmp_path / "moved-away")
    link.symlink_to(victim)
    before = sorted(p.name for p in victim.iterdir())
    with pytest.raises(EmulatorError, match="symlink or not a directory"):
        emulator._prepare(REL)
    assert sorted(p.name for p in victim.iterdir()) == before
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)
    assert oct(victim.stat().st_mode & 0o777) == "0o755"


def test_prepare_on_a_clean_tree_authorizes_the_login_key(state):
    rootfs = _rootfs(state)
    emulator._prepare(REL)
    ssh_dir = rootfs / "home/pi/.ssh"
    auth = ssh_dir / "authorized_keys"
    assert (ssh_dir.stat().st_uid, oct(ssh_dir.stat().st_mode & 0o777)) == (1000, "0o700")
    assert (auth.stat().st_uid, oct(auth.stat().st_mode & 0o777)) == (1000, "0o600")
    assert auth.read_text() == Path(f"{emulator.login_key()}.pub").read_text()
    assert (rootfs / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert (rootfs / "run/sshd").is_dir()


def test_recorded_host_key_is_the_rootfs_own_file(state, tmp_path, monkeypatch):
    rootfs = _rootfs(state)
    monkeypatch.setenv("RETINAFACE_PI_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    host_file = tmp_path / "host-secret"
    host_file.write_text("ssh-ed25519 SECRETFROMTHEHOST\n")
    (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").symlink_to(host_file)
    with pytest.raises(EmulatorError, match="not a regular file"):
        emulator.record_host_key(REL)
    assert not (tmp_path / "known_hosts").exists()
    (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").unlink()
    emulator._prepare(REL)
    emulator.record_host_key(REL)
    line = (tmp_path / "known_hosts").read_text()
    assert line.startswith(f"[127.0.0.1]:{REL.port} ssh-ed25519 ") and "SECRET" not in line
