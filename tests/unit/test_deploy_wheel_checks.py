"""Deploy ships a wheel from wheels/ only when it is checked (issue 21 item 3): onnxruntime must
be a file lock.yaml pins, with its digest; every other wheel must be in wheels/manifest.json with
its sha256; the newest version is taken by number, not the highest name."""

from __future__ import annotations

import json
import shutil

import pytest

from deploy.errors import DeployError
from deploy.hosts.facts import parse_facts
from deploy.workflow.release import check_wheel
from pi_setup.wheelhouse import matching_wheels as _matching
from retinaface.files import sha256_file
from tests.paths import SHARED

ORT = "onnxruntime-1.8.1-cp39-cp39-linux_armv7l.whl"  # pinned in wheels/lock.yaml (buster)
def matching_wheels(folder, tags):
    """What plan_release ships from `folder`: the matching wheels, each checked."""
    paths = _matching(folder, tags)
    for path in paths:
        check_wheel(path)
    return paths


TAGS = parse_facts("pi", "tag=cp39-cp39-linux_armv7l\ntag=py3-none-any\n").tags


def _manifest(folder, *paths):
    entries = {p.name: {"file": p.name, "sha256": sha256_file(p)} for p in paths}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "wheels": entries}))


def test_the_pinned_onnxruntime_ships(tmp_path):
    shutil.copy(SHARED / "wheels" / "buster" / ORT, tmp_path / ORT)
    assert [p.name for p in matching_wheels(tmp_path, TAGS)] == [ORT]


def test_a_builders_onnxruntime_is_refused_though_its_name_is_highest(tmp_path):
    shutil.copy(SHARED / "wheels" / "buster" / ORT, tmp_path / ORT)
    planted = tmp_path / "onnxruntime-9.9.9-py3-none-any.whl"
    planted.write_bytes(b"PK a builder's onnxruntime")
    _manifest(tmp_path, planted)  # even recorded in the manifest: the lock owns the name
    with pytest.raises(DeployError, match="9.9.9.*not the onnxruntime wheel lock.yaml pins"):
        matching_wheels(tmp_path, TAGS)


def test_other_bytes_under_the_pinned_name_are_refused(tmp_path):
    (tmp_path / ORT).write_bytes(b"PK not the pinned build")
    with pytest.raises(DeployError, match="lock.yaml pins \\(size is 23 bytes, the lock says"):
        matching_wheels(tmp_path, TAGS)


def test_other_wheels_ship_only_as_manifest_json_recorded_them(tmp_path):
    old = tmp_path / "numpy-1.9.0-cp39-cp39-linux_armv7l.whl"
    new = tmp_path / "numpy-1.10.0-cp39-cp39-linux_armv7l.whl"  # "1.9" sorts after "1.10"
    old.write_bytes(b"PK old")
    new.write_bytes(b"PK new")
    with pytest.raises(DeployError, match="numpy-1.10.0.*not in .*manifest.json"):
        matching_wheels(tmp_path, TAGS)
    _manifest(tmp_path, old, new)
    assert matching_wheels(tmp_path, TAGS) == [new]
    new.write_bytes(b"PK changed after the gate")
    with pytest.raises(DeployError, match="is not the one manifest.json recorded"):
        matching_wheels(tmp_path, TAGS)


def _engine_lock(folder, wheel, sha256, size):
    (folder / "lock.yaml").write_text(
        "onnxruntime:\n  wheels: []\nengines:\n  ncnn:\n    package: ncnn\n    wheels:\n"
        f"    - file: {wheel}\n      sha256: \"{sha256}\"\n      size: {size}\n"
    )


def test_a_registry_engine_wheel_ships_by_its_lock_digest_without_a_manifest(tmp_path):
    wheel = tmp_path / "ncnn-1.0.20261020-cp39-cp39-manylinux_2_31_armv7l.whl"
    wheel.write_bytes(b"PK the registry's ncnn")
    _engine_lock(tmp_path, wheel.name, sha256_file(wheel), wheel.stat().st_size)
    tags = parse_facts("pi", "tag=cp39-cp39-manylinux_2_31_armv7l\n").tags
    assert [p.name for p in matching_wheels(tmp_path, tags)] == [wheel.name]


def test_a_registry_engine_wheel_with_other_bytes_is_refused_even_if_recorded(tmp_path):
    wheel = tmp_path / "ncnn-1.0.20261020-cp39-cp39-manylinux_2_31_armv7l.whl"
    wheel.write_bytes(b"PK the registry's ncnn")
    _engine_lock(tmp_path, wheel.name, sha256_file(wheel), wheel.stat().st_size)
    wheel.write_bytes(b"PK a swapped ncnn!!!!!")  # same size, other bytes
    _manifest(tmp_path, wheel)  # a manifest record does not override the lock
    tags = parse_facts("pi", "tag=cp39-cp39-manylinux_2_31_armv7l\n").tags
    with pytest.raises(DeployError, match="not the ncnn wheel lock.yaml pins \\(sha256 is"):
        matching_wheels(tmp_path, tags)
