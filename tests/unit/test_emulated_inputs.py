"""The emulated tier's numpy wheel is used only when its digest matches its cross-build record
(tests/emulated/deploys.py), so a warm machine cannot deploy a stale or tampered wheel."""

import json

from pi_setup import cross
from retinaface.files import sha256_file
from tests.emulated.deploys import chosen_numpy, verified_numpy_wheel

NAME = f"numpy-{cross.NUMPY.version}-cp39-cp39-linux_armv7l.whl"
ROOT_KEY = cross.cache_key(cross.target_of(cross.DEFAULT_TARGET))


def _wheels(tmp_path, **entry):
    wheel = tmp_path / NAME
    wheel.write_bytes(b"a cross-built numpy wheel")
    record = {"version": cross.NUMPY.version, "sha256": sha256_file(wheel)}
    record["sysroot"] = f"Debian bullseye amd64 build root with armhf multiarch (key {ROOT_KEY})"
    record.update(entry)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "wheels": {NAME: record}}))
    return wheel


def test_the_recorded_wheel_is_used(tmp_path):
    wheel = _wheels(tmp_path)
    assert verified_numpy_wheel(tmp_path) == wheel
    assert chosen_numpy(tmp_path) == wheel


def test_a_changed_stale_or_unrecorded_wheel_is_not(tmp_path):
    wheel = _wheels(tmp_path)
    wheel.write_bytes(b"changed after the build")
    assert verified_numpy_wheel(tmp_path) is None
    _wheels(tmp_path, sysroot="Debian bullseye amd64 build root (key 000000000000)")
    assert verified_numpy_wheel(tmp_path) is None  # an older build root
    _wheels(tmp_path, version="1.21.0")
    assert verified_numpy_wheel(tmp_path) is None  # another pinned version
    (tmp_path / "manifest.json").unlink()
    assert verified_numpy_wheel(tmp_path) is None


def test_another_numpy_wheel_beside_it_is_what_deploy_would_ship(tmp_path):
    _wheels(tmp_path)
    other = tmp_path / "numpy-1.26.4-cp39-cp39-linux_armv7l.whl"
    other.write_bytes(b"someone else's build")
    assert chosen_numpy(tmp_path) == other  # so the fixture refuses to go on (conftest.py)
