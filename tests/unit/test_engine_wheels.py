"""Engine wheels from the registry: the lock, the choice per host's tags, and a real `pip download`
(from a local --find-links folder, no network) whose file enters wheels/ only when it matches."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pi_setup import engine_wheels, ort, wheelhouse
from pi_setup.errors import WheelError

REPO = Path(__file__).resolve().parents[2]
FILE = "tflite_runtime-2.13.0-cp39-cp39-manylinux2014_armv7l.whl"
# What a bullseye armv7l Pi's pip 20.3.4 reports (most preferred first, shortened).
BULLSEYE_TAGS = [
    "cp39-cp39-manylinux_2_31_armv7l",
    "cp39-cp39-manylinux2014_armv7l",
    "cp39-cp39-linux_armv7l",
    "cp39-abi3-linux_armv7l",
    "py3-none-any",
]


def fixture_wheel(folder: Path, name: str = FILE, payload: bytes = b"x" * 1000) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "tflite_runtime-2.13.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: tflite-runtime\nVersion: 2.13.0\n\n",
        )
        archive.writestr(
            "tflite_runtime-2.13.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp39-cp39-manylinux2014_armv7l\n",
        )
        archive.writestr("tflite_runtime/payload.bin", payload)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path


def lock_file(tmp_path: Path, wheel: Path, sha256: str = "", size: int = 0) -> Path:
    path = tmp_path / "lock.yaml"
    path.write_text(
        "engines:\n  tflite:\n    package: tflite-runtime\n"
        '    requires: ["numpy>=1.21.2,<2"]\n    wheels:\n'
        f"    - file: {wheel.name}\n"
        f'      sha256: "{sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest()}"\n'
        f"      size: {size or wheel.stat().st_size}\n"
    )
    return path


def test_project_lock_pins_tflite_runtime_for_cp37_to_cp310_on_both_arms():
    lock = engine_wheels.load_lock(REPO / "wheels" / "lock.yaml")
    got = {(w.python_tag, w.platform, w.version) for w in lock.wheels if w.engine == "tflite"}
    assert ("cp39", "manylinux2014_armv7l", "2.13.0") in got
    assert ("cp39", "manylinux2014_aarch64", "2.13.0") in got
    assert ("cp37", "manylinux2014_armv7l", "2.11.0") in got
    assert ort.load_lock(REPO / "wheels" / "lock.yaml").wheels  # the onnxruntime section still reads


def test_choice_follows_the_host_tags():
    lock = engine_wheels.load_lock(REPO / "wheels" / "lock.yaml")
    chosen = engine_wheels.select(lock, ["tflite"], BULLSEYE_TAGS)
    assert [w.file for w in chosen] == [FILE]
    bookworm_arm64 = ["cp311-cp311-manylinux_2_36_aarch64", "cp311-cp311-manylinux2014_aarch64"]
    assert engine_wheels.select(lock, ["tflite"], bookworm_arm64) == []
    assert engine_wheels.python_arch_tags(lock, "cp39", "armv7l") == [
        "cp39-cp39-manylinux2014_armv7l",  # tflite-runtime
        "cp39-cp39-manylinux_2_31_armv7l",  # ncnn
    ]


def test_ncnn_and_mnn_wheels_per_pi():
    """bullseye armv7l: ncnn only (MNN has no armv7l wheel); a 64-bit bookworm Pi: both."""
    lock = engine_wheels.load_lock(REPO / "wheels" / "lock.yaml")
    bullseye = [w.file for w in engine_wheels.select(lock, ["ncnn", "mnn"], BULLSEYE_TAGS)]
    assert bullseye == ["ncnn-1.0.20261020-cp39-cp39-manylinux_2_31_armv7l.whl"]
    bookworm_arm64 = [f"cp311-cp311-manylinux_2_{n}_aarch64" for n in range(36, 16, -1)]
    bookworm_arm64.append("cp311-cp311-manylinux2014_aarch64")
    chosen = [w.file for w in engine_wheels.select(lock, ["ncnn", "mnn"], bookworm_arm64)]
    assert [name.split("-")[0] for name in chosen] == ["ncnn", "mnn"]
    assert all("cp311-cp311-manylinux" in name for name in chosen)


def test_deploy_requirements_come_from_the_lock():
    pip_req, apt = wheelhouse.host_requirements(Path(FILE))
    assert pip_req == ["numpy>=1.21.2,<2"] and apt == []


def test_pip_download_then_verify(tmp_path):
    index, dest = tmp_path / "index", tmp_path / "wheels"
    index.mkdir()
    wheel = fixture_wheel(index)
    lock = engine_wheels.load_lock(lock_file(tmp_path, wheel))
    first = engine_wheels.fetch(lock.wheels[0], dest, find_links=str(index))
    assert not first.cached and first.path.read_bytes() == wheel.read_bytes()
    assert engine_wheels.fetch(lock.wheels[0], dest, find_links=str(index)).cached
    first.path.write_bytes(b"damaged")  # a damaged copy is fetched again
    assert not engine_wheels.fetch(lock.wheels[0], dest, find_links=str(index)).cached
    assert [p.name for p in dest.iterdir()] == [FILE]  # no temp folder left


def test_a_file_that_differs_from_the_lock_is_not_kept(tmp_path):
    index, dest = tmp_path / "index", tmp_path / "wheels"
    index.mkdir()
    wheel = fixture_wheel(index)
    lock = engine_wheels.load_lock(lock_file(tmp_path, wheel, sha256="0" * 64))
    with pytest.raises(WheelError, match="sha256 is .* the lock says 0000"):
        engine_wheels.fetch(lock.wheels[0], dest, find_links=str(index))
    assert list(dest.iterdir()) == []


def test_a_wheel_the_index_lacks_fails_in_one_line(tmp_path):
    index, dest = tmp_path / "index", tmp_path / "wheels"
    index.mkdir()
    wheel = fixture_wheel(tmp_path)  # not in the index
    lock = engine_wheels.load_lock(lock_file(tmp_path, wheel))
    with pytest.raises(WheelError, match=f"pip download of {FILE} failed"):
        engine_wheels.fetch(lock.wheels[0], dest, find_links=str(index))


@pytest.mark.parametrize(
    "body, message",
    [
        ("engines: [1]\n", "must map engine names"),
        ("engines:\n  TF:\n    package: x\n    wheels: []\n", "plain lower-case name"),
        ("engines:\n  tflite:\n    package: tflite-runtime\n    wheels: []\n", "non-empty list"),
        (
            "engines:\n  tflite:\n    package: tflite-runtime\n    wheels:\n"
            "    - {file: ../x.whl, sha256: '" + "a" * 64 + "', size: 3}\n",
            "not a wheel file name",
        ),
        (
            "engines:\n  tflite:\n    package: ncnn\n    wheels:\n"
            f"    - {{file: {FILE}, sha256: '" + "a" * 64 + "', size: 3}\n",
            "not a wheel of ncnn",
        ),
        (
            "engines:\n  tflite:\n    package: tflite-runtime\n    wheels:\n"
            f"    - {{file: {FILE}, sha256: abc, size: 3}}\n",
            "64 hex digits",
        ),
    ],
)
def test_bad_lock_entries_are_named(tmp_path, body, message):
    path = tmp_path / "lock.yaml"
    path.write_text(body)
    with pytest.raises(WheelError, match=message):
        engine_wheels.load_lock(path)


def test_task_says_which_engine_is_skipped_and_fails_on_an_unknown_one(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    wheel = fixture_wheel(index)
    lock = lock_file(tmp_path, wheel)
    base = [sys.executable, "-m", "invoke", "fetch-engines", "--lock", str(lock)]
    base += ["--wheels-dir", str(tmp_path / "w"), "--find-links", str(index)]
    ok = subprocess.run(base + ["--python", "3.9", "--arch", "armhf"], capture_output=True,
                        text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "sha256 matches the lock" in ok.stdout and (tmp_path / "w" / FILE).is_file()
    none = subprocess.run(base + ["--python", "3.11", "--arch", "arm64"], capture_output=True,
                          text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert none.returncode == 0 and "tflite is skipped there" in none.stdout
    bad = subprocess.run(base + ["--python", "3.9", "--arch", "armhf", "--engines", "ncnn"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: unknown engine 'ncnn'")
    assert "Traceback" not in bad.stderr
