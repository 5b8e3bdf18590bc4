"""The cross build root's pip installs are hash-pinned (issue 21 item 10): the rendered root
script installs each side with --require-hashes from requirements files naming a sha256 for
every file, and those digests are the ones PyPI serves: pip itself downloads each pin for the
two platforms the root's pips install for, with --require-hashes, and refuses a wrong digest."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pi_setup import cross

# (platform, what pip there picks): the build side is x86_64 cp39, the cross side linux_armv7l.
PLATFORMS = [("manylinux2014_x86_64", cross.BUILD_TOOLS), ("linux_armv7l", cross.BUILD_TOOLS)]


def _download(requirements: str, platform: str, tmp_path):
    (tmp_path / "req.txt").write_text(requirements)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--require-hashes",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.9",
            "--implementation",
            "cp",
            "--platform",
            platform,
            "-d",
            str(tmp_path / platform),
            "-r",
            str(tmp_path / "req.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_pip_install_of_the_root_requires_hashes():
    script = cross.render_root_script(cross.TARGETS[cross.DEFAULT_TARGET])
    installs = [line for line in script.splitlines() if re.search(r"pip install", line)]
    assert len(installs) == 3
    assert all("--require-hashes -r /tmp/" in line for line in installs)
    for pin in (*cross.BUILD_TOOLS, *cross.CROSSENV_TOOL):
        assert re.search(re.escape(pin) + r" --hash=sha256:[0-9a-f]{64}", script), pin


@pytest.mark.parametrize(
    "platform, pins", PLATFORMS + [("manylinux2014_x86_64", cross.CROSSENV_TOOL)]
)
def test_pypi_serves_exactly_the_pinned_digests(platform, pins, tmp_path):
    result = _download("\n".join(cross.hashed(pins)) + "\n", platform, tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / platform).iterdir())) == len(pins)


def test_a_wrong_digest_is_refused(tmp_path):
    line = cross.hashed(["wheel==0.37.0"])[0].replace("sha256:2", "sha256:3", 1)
    result = _download(line + "\n", "linux_armv7l", tmp_path)
    assert result.returncode != 0 and "DO NOT MATCH THE HASHES" in result.stderr
