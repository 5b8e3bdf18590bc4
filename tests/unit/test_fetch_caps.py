"""fetch-ort against a hostile mirror (a loopback HTTP server): an endless body or a huge
announced size stops at the cap, and the partial file is dropped, not kept for a resume."""

from __future__ import annotations

import dataclasses
import time

import pytest

from pi_setup import ort
from pi_setup.errors import WheelError
from tests.fixtures.fake_ort_wheel import NAME, serve_fixture_wheel
from tests.paths import REPO

LOCK = REPO / "tests" / "fixtures" / "ort_lock.yaml"


@pytest.fixture(scope="module")
def server():
    with serve_fixture_wheel() as httpd:
        yield httpd


def _wheel(server, mode):
    lock = ort.load_lock(LOCK)
    port = server.server_address[1]
    lock = dataclasses.replace(lock, url=f"http://127.0.0.1:{port}/{mode}/{{os}}/{{file}}")
    wheel = next(w for w in lock.wheels if w.file == NAME and w.os == "bullseye")
    assert wheel.size is None  # the lock does not know it: only the cap protects
    return lock, wheel


def test_endless_body_stops_at_the_cap_and_leaves_nothing(server, tmp_path):
    lock, wheel = _wheel(server, "endless")
    with pytest.raises(WheelError, match="more than the 2097152 bytes allowed; download stopped"):
        ort.fetch(lock, wheel, tmp_path, max_bytes=2 * 1024**2)
    assert list(tmp_path.iterdir()) == []


def test_default_cap_applies_to_an_endless_body(server, tmp_path, monkeypatch):
    monkeypatch.setattr(ort, "MAX_WHEEL_BYTES", 3 * 1024**2)  # the default, made quick to hit
    lock, wheel = _wheel(server, "endless")
    with pytest.raises(WheelError, match="more than the"):
        ort.fetch(lock, wheel, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_huge_announced_size_is_refused_before_reading(server, tmp_path):
    lock, wheel = _wheel(server, "huge")
    with pytest.raises(WheelError, match="announces 10737418240 bytes, more than the"):
        ort.fetch(lock, wheel, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_trickling_mirror_is_stopped_at_the_total_deadline(server, tmp_path, monkeypatch):
    """One byte every 0.1 s: each read waits far less than the 30 s network timeout, so only a
    deadline checked while reading stops it (it used to be checked between 64 KiB reads)."""
    monkeypatch.setattr(ort, "FETCH_DEADLINE", 1.0)
    lock, wheel = _wheel(server, "trickle")
    before = server.trickle_cut_short
    with pytest.raises(WheelError, match="took longer than the 1 s allowed"):
        ort.fetch(lock, wheel, tmp_path)
    for _ in range(100):  # the server sees the hang-up on its next byte
        if server.trickle_cut_short > before:
            break
        time.sleep(0.05)
    assert server.trickle_cut_short == before + 1  # we hung up, not the mirror


def test_a_directory_mirror_is_copied_with_the_same_cap(tmp_path):
    lock = ort.load_lock(LOCK)
    wheel = next(w for w in lock.wheels if w.file == NAME and w.os == "bullseye")
    mirror = tmp_path / "mirror" / "bullseye"
    mirror.mkdir(parents=True)
    with open(mirror / NAME, "wb") as handle:
        handle.truncate(3 * 1024**2)  # a sparse 3 MiB file
    dest = tmp_path / "wheels"
    with pytest.raises(WheelError, match="more than the 2097152 bytes allowed; nothing kept"):
        ort.fetch(lock, wheel, dest, mirror=str(tmp_path / "mirror"), max_bytes=2 * 1024**2)
    assert list(dest.iterdir()) == []
