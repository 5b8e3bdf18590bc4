"""fetch-ort against a loopback HTTP server serving a fixture wheel pinned by its git blob SHA-1."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.paths import REPO_ROOT
from pi_setup import ort, wheelhouse
from pi_setup.errors import WheelError
from tests.fixtures.fake_ort_wheel import NAME, serve_fixture_wheel, wheel_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TEST_LOCK = FIXTURES / "ort_lock.yaml"
DATA = wheel_bytes()


@pytest.fixture()
def server():
    with serve_fixture_wheel() as httpd:
        yield httpd


def lock_for(server, mode="good"):
    lock = ort.load_lock(TEST_LOCK)
    port = server.server_address[1]
    return dataclasses.replace(lock, url=f"http://127.0.0.1:{port}/{mode}/{{os}}/{{file}}")


def wheel_of(lock):
    return ort.select_wheel(lock, "bullseye", "3.9", "1.9.1")


def test_pinned_sha1_is_git_hash_object(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(DATA)
    git = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    )
    assert ort.git_blob_sha1(path) == git.stdout.strip()
    assert ort.load_lock(TEST_LOCK).wheels[0].blob_sha1 == git.stdout.strip()


def test_success_writes_verified_wheel_and_shows_progress(server, tmp_path):
    lock = lock_for(server)
    updates = []

    class Bar:
        def __init__(self, desc, total, initial):
            updates.append(("start", desc, total, initial))

        def update(self, n):
            updates.append(n)

        def close(self):
            updates.append("close")

    result = ort.fetch(lock, wheel_of(lock), tmp_path, progress=Bar)
    assert result.path == tmp_path / NAME and not result.cached
    assert result.path.read_bytes() == DATA
    assert result.size == len(DATA)
    assert updates[0] == ("start", NAME, len(DATA), 0)
    assert sum(u for u in updates if isinstance(u, int)) == len(DATA)
    assert updates[-1] == "close"
    assert list(tmp_path.iterdir()) == [tmp_path / NAME]  # no .part left behind
    assert server.requests == [(f"/good/bullseye/{NAME}", None)]


def test_cache_hit_makes_no_request(server, tmp_path):
    lock = lock_for(server)
    ort.fetch(lock, wheel_of(lock), tmp_path)
    assert len(server.requests) == 1
    again = ort.fetch(lock, wheel_of(lock), tmp_path)
    assert again.cached and again.path.read_bytes() == DATA
    assert len(server.requests) == 1


def test_damaged_cached_copy_is_fetched_again(server, tmp_path):
    lock = lock_for(server)
    (tmp_path / NAME).write_bytes(b"not the wheel")
    result = ort.fetch(lock, wheel_of(lock), tmp_path)
    assert not result.cached and result.path.read_bytes() == DATA


def test_truncated_file_is_a_digest_mismatch_and_removed(server, tmp_path):
    lock = lock_for(server, "short")
    with pytest.raises(WheelError, match=r"digest mismatch \(git blob SHA-1 is .*removed"):
        ort.fetch(lock, wheel_of(lock), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_digest_removes_the_file(server, tmp_path):
    lock = lock_for(server, "wrong")
    with pytest.raises(WheelError, match=f"{NAME} from http://127.0.0.1.*digest mismatch"):
        ort.fetch(lock, wheel_of(lock), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sha256_and_size_in_the_lock_are_checked(server, tmp_path):
    lock = lock_for(server)
    wheel = dataclasses.replace(wheel_of(lock), sha256="0" * 64)
    with pytest.raises(WheelError, match="sha256 is .* the lock says 0000"):
        ort.fetch(lock, wheel, tmp_path)
    wheel = dataclasses.replace(wheel_of(lock), size=len(DATA) + 1)
    with pytest.raises(WheelError, match="size is"):
        ort.fetch(lock, wheel, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_http_404(server, tmp_path):
    lock = lock_for(server, "missing")
    with pytest.raises(WheelError, match=r"/missing/bullseye/.*HTTP 404"):
        ort.fetch(lock, wheel_of(lock), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    lock = lock_for(server, "drop")
    with pytest.raises(
        WheelError, match=r"interrupted after \d+ of 300377 bytes; run again to resume"
    ):
        ort.fetch(lock, wheel_of(lock), tmp_path)
    part = tmp_path / (NAME + ".part")
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    result = ort.fetch(lock, wheel_of(lock), tmp_path)
    assert result.path.read_bytes() == DATA
    assert not part.exists()
    assert server.requests[-1] == (f"/drop/bullseye/{NAME}", f"bytes={kept}-")


def test_no_network_is_one_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lock = ort.load_lock(TEST_LOCK)
    lock = dataclasses.replace(lock, url=f"http://127.0.0.1:{port}/{{file}}")
    with pytest.raises(WheelError, match=r"cannot reach 127.0.0.1:\d+ .*refused.*--mirror"):
        ort.fetch(lock, wheel_of(lock), tmp_path)


def test_mirror_url_and_directory(server, tmp_path):
    lock = ort.load_lock(TEST_LOCK)  # its own URL points nowhere
    port = server.server_address[1]
    result = ort.fetch(
        lock, wheel_of(lock), tmp_path / "a", mirror=f"http://127.0.0.1:{port}/good/"
    )
    assert result.url == f"http://127.0.0.1:{port}/good/bullseye/{NAME}"
    mirror_dir = tmp_path / "mirror" / "bullseye"
    mirror_dir.mkdir(parents=True)
    (mirror_dir / NAME).write_bytes(DATA)
    result = ort.fetch(lock, wheel_of(lock), tmp_path / "b", mirror=str(tmp_path / "mirror"))
    assert result.path.read_bytes() == DATA
    with pytest.raises(WheelError, match="mirror directory .* neither"):
        ort.fetch(lock, wheel_of(lock), tmp_path / "c", mirror=str(tmp_path))


def test_selection_lists_what_exists():
    lock = ort.load_lock(ort.LOCK_PATH)
    wheel = ort.select_wheel(lock, "bullseye", "3.9", "1.9.1", arch="armhf")
    assert wheel.blob_sha1 == "bf32d667f7f72b674cd22705055dbb4c98dfef32"
    assert wheel.url(lock.url) == (
        "https://raw.githubusercontent.com/nknytk/built-onnxruntime-for-raspberrypi-linux/"
        "876423fe9b003c2cb11c35ebcaeb78a65c96e465/wheels/bullseye/"
        "onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl"
    )
    with pytest.raises(WheelError) as error:
        ort.select_wheel(lock, "buster", "3.7", "1.9.1")
    message = str(error.value)
    assert "no onnxruntime 1.9.1 wheel for buster/cp37m/armv7l" not in message
    assert "buster/cp37/armv7l" in message and "bullseye/cp39/armv7l" in message
    assert "versions for buster/cp37/armv7l: 1.8.1" in message
    with pytest.raises(WheelError, match="bookworm/cp311/aarch64"):
        ort.select_wheel(lock, "bookworm", "3.11", arch="arm64")


def test_real_lock_matrix():
    lock = ort.load_lock(ort.LOCK_PATH)
    tags = {w.python_tag for w in lock.wheels if w.version == "1.9.1" and w.os == "bullseye"}
    assert tags == {"cp36", "cp37", "cp38", "cp39", "cp310"}
    assert all(w.arch == "armv7l" for w in lock.wheels)
    assert {w.commit for w in lock.wheels if w.version == "1.9.1"} == {
        "876423fe9b003c2cb11c35ebcaeb78a65c96e465"
    }


def test_bad_lock_names_file_and_field(tmp_path):
    bad = tmp_path / "lock.yaml"
    bad.write_text(
        "onnxruntime:\n  url: http://x/{file}\n  wheels:\n  - file: onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl\n"
        "    os: bullseye\n    commit: abc\n    blob_sha1: xyz\n"
    )
    with pytest.raises(WheelError, match=f"{bad}: wheel onnxruntime-1.9.1-cp39.*blob_sha1"):
        ort.load_lock(bad)
    bad.write_text("onnxruntime:\n  url: http://x/{file}\n  wheels:\n  - os: bullseye\n")
    with pytest.raises(WheelError, match=r"wheels\[0\]: field 'file' is required"):
        ort.load_lock(bad)


def test_record_sha256_keeps_comments(tmp_path):
    lock_path = tmp_path / "lock.yaml"
    lock_path.write_text(TEST_LOCK.read_text())
    wheel = wheel_of(ort.load_lock(lock_path))
    assert ort.record_sha256(lock_path, wheel, "a" * 64, 123)
    text = lock_path.read_text()
    assert text.startswith("# Test lock")
    relock = ort.load_lock(lock_path)
    assert wheel_of(relock).sha256 == "a" * 64 and wheel_of(relock).size == 123
    other = ort.select_wheel(relock, "bullseye", "3.7", "1.9.1")
    assert other.sha256 is None and other.size is None


def test_host_requirements(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(DATA)
    assert wheelhouse.host_requirements(path) == (["numpy>=1.20,<2"], ["libgomp1", "libatomic1"])
    assert wheelhouse.host_requirements(Path("tiny-0.1-py3-none-any.whl")) == ([], [])
    assert wheelhouse.wheel_metadata(path)["Requires-Dist"] == ["numpy>=1.16.6"]


def test_cli_mirror_from_config_file(server, tmp_path):
    """`invoke fetch-ort` like a user, with the mirror from the config key wheels.mirror.
    The test lock's own URL points at a closed loopback port: nothing else can be contacted."""
    port = server.server_address[1]
    config = tmp_path / "invoke.yaml"
    config.write_text(f"wheels:\n  mirror: http://127.0.0.1:{port}/good\n")
    argv = [sys.executable, "-m", "invoke", "-f", str(config), "fetch-ort"]
    argv += ["--os", "bullseye", "--python", "3.9", "--lock", str(TEST_LOCK)]
    argv += ["--wheels-dir", str(tmp_path / "wheels")]
    result = subprocess.run(
        argv, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"downloaded from http://127.0.0.1:{port}/good/bullseye/{NAME}" in result.stdout
    assert (tmp_path / "wheels" / NAME).read_bytes() == DATA
    assert "numpy>=1.20,<2" in result.stdout and "libgomp1 libatomic1" in result.stdout
    assert server.requests == [(f"/good/bullseye/{NAME}", None)]
    # digest mismatch from the command line: one line, exit 1, the file removed
    result = subprocess.run(
        argv[:-1] + [str(tmp_path / "other")] + ["--mirror", f"http://127.0.0.1:{port}/wrong"],
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]  # after the progress bar (stderr too)
    assert (
        line.startswith(f"error: {NAME} from http://127.0.0.1:{port}/wrong/") and "removed" in line
    )
    assert list((tmp_path / "other").iterdir()) == []


def test_cli_host_facts_pick_the_target():
    """--host takes OS, Python and arch from facts; this x86 machine has no armv7l wheel."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "fetch-ort", "--host", "local"],
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    tag = "cp%d%d" % sys.version_info[:2]
    assert "no onnxruntime 1.9.1 wheel for " in result.stderr
    assert f"/{tag}/x86_64" in result.stderr and "1.9.1 exists for: bullseye/cp36" in result.stderr
