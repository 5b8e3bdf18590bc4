"""fetch-ort for 64-bit hosts: the registry's aarch64 onnxruntime wheel the host's tags accept,
fetched by a real `pip download` (from a local --find-links folder, no network), kept only when it
matches the lock; and what deploy must meet for it (numpy>=1.21.6, not the armv7l builds' <2)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from pi_setup import ort, wheelhouse
from pi_setup.errors import WheelError

REPO = Path(__file__).resolve().parents[2]
CP313 = "onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_aarch64.whl"
CP311 = "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl"
# an emulated trixie arm64 Pi's pip (shortened)
TRIXIE_TAGS = (
    "cp313-cp313-manylinux_2_41_aarch64",
    "cp313-cp313-manylinux_2_28_aarch64",
    "cp313-cp313-manylinux2014_aarch64",
    "cp313-cp313-linux_aarch64",
    "py3-none-any",
)


def fixture_wheel(folder: Path, name: str, payload: bytes = b"x" * 1000) -> Path:
    tag = "-".join(name[: -len(".whl")].split("-")[2:])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "onnxruntime-1.32.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: onnxruntime\nVersion: 1.32.0\n"
            "Requires-Dist: numpy>=1.21.6\n\n",
        )
        archive.writestr(
            "onnxruntime-1.32.0.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n",
        )
        archive.writestr("onnxruntime/__init__.py", payload)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path


def lock_for(path: Path, wheels) -> Path:
    lines = [
        "format: 1",
        "engines:",
        "  onnxruntime:",
        "    package: onnxruntime",
        '    requires: ["numpy>=1.21.6"]',
        "    wheels:",
    ]
    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines += [f"    - file: {wheel.name}", f'      sha256: "{digest}"']
        lines += [f"      size: {wheel.stat().st_size}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def index(tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    wheels = [fixture_wheel(links, CP313), fixture_wheel(links, CP311)]
    return links, lock_for(tmp_path / "lock.yaml", wheels)


def test_the_hosts_tags_choose_the_wheel_and_pip_fetches_it(index, tmp_path):
    links, lock = index
    dest = tmp_path / "wheels"
    host = ort.Target("trixie", "cp313", "arm64", "pi4-64-emu", TRIXIE_TAGS)
    bookworm = ort.Target("bookworm", "3.11", "arm64")  # no host: Python and arch say
    got = ort.fetch_registry([host, bookworm], lock_path=lock, dest=dest, find_links=str(links))
    assert [(t.python, f.path.name, f.cached) for t, f in got] == [
        ("cp313", CP313, False),
        ("3.11", CP311, False),
    ]
    assert (dest / CP313).read_bytes() == (links / CP313).read_bytes()
    again = ort.fetch_registry([host], lock_path=lock, dest=dest, find_links=str(links))
    assert again[0][1].cached


def test_a_wheel_that_differs_from_the_lock_is_not_kept(index, tmp_path):
    links, lock = index
    fixture_wheel(links, CP313, payload=b"y" * 1000)  # same name, other bytes
    dest = tmp_path / "wheels"
    host = ort.Target("trixie", "cp313", "arm64", "pi4-64-emu", TRIXIE_TAGS)
    with pytest.raises(WheelError, match="sha256 is .* the lock says"):
        ort.fetch_registry([host], lock_path=lock, dest=dest, find_links=str(links))
    assert not list(dest.glob("*.whl"))


def test_no_pinned_wheel_for_the_hosts_python_names_what_is_pinned(index, tmp_path):
    _links, lock = index
    old = ort.Target("bullseye", "3.9", "arm64", "old-pi", ("cp39-cp39-manylinux_2_31_aarch64",))
    with pytest.raises(WheelError, match=r"^old-pi: no pinned onnxruntime .*cp311.*cp313"):
        ort.fetch_registry([old], lock_path=lock, dest=tmp_path / "w")


def test_32_bit_hosts_keep_the_armv7l_builds_and_64_bit_ones_the_registry():
    assert ort.Target("trixie", "3.13", "arm64").from_registry
    assert ort.Target("trixie", "3.13", "aarch64").from_registry
    assert not ort.Target("bullseye", "3.9", "armhf").from_registry


def test_the_repository_lock_pins_both_pythons_and_their_requirements():
    from pi_setup import engine_wheels

    lock = engine_wheels.load_lock(REPO / "wheels" / "lock.yaml")
    pinned = {w.file for w in lock.wheels if w.engine == "onnxruntime"}
    assert {CP313, CP311} <= pinned
    # the official aarch64 wheel needs numpy>=1.21.6 and no extra apt package (trixie ships numpy 2)
    assert wheelhouse.host_requirements(Path(CP313)) == (["numpy>=1.21.6"], [])
    # nknytk's armv7l builds keep theirs
    armv7l = "onnxruntime-1.8.1-cp39-cp39-linux_armv7l.whl"
    assert wheelhouse.host_requirements(Path(armv7l)) == (
        ["numpy>=1.20,<2"],
        ["libgomp1", "libatomic1"],
    )


def test_deploy_meets_the_aarch64_wheel_with_the_hosts_numpy_2():
    from deploy.hosts.facts import parse_facts
    from deploy.workflow.push import missing_requirements

    trixie = parse_facts("pi4-64-emu", "arch=arm64\npython_tag=cp313\nnumpy=2.2.4\n")
    assert missing_requirements("pi4-64-emu", trixie, [CP313]) is None
    # the same numpy would not do for a 32-bit build: that rule stays the armv7l wheels' own
    armv7l = "onnxruntime-1.8.1-cp39-cp39-linux_armv7l.whl"
    assert "needs numpy>=1.20,<2" in missing_requirements("pi4", trixie, [armv7l])
    too_old = parse_facts("pi4-64-emu", "arch=arm64\npython_tag=cp313\nnumpy=1.19.5\n")
    assert "needs numpy>=1.21.6" in missing_requirements("pi4-64-emu", too_old, [CP313])
