"""A hostile builder (a real sshd on 127.0.0.1 whose every command prints crafted facts) cannot
reach the terminal with escape sequences through stderr: `build-wheels --print-script` names
the facts it rendered for on stderr, shown through the terminal-safe text helper."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.ssh


def test_print_script_note_on_stderr_is_escaped(lab, tmp_path):
    server = lab.add("evil-builder", start=False)
    # The builder answers the probe with an OS codename that clears the screen and sets the
    # terminal's title.
    answer = tmp_path / "evil-probe.sh"
    answer.write_text(
        "#!/bin/sh\nprintf 'os_codename=\\033[2Jbullseye\\033]0;owned\\007\\ndpkg_arch=armhf\\n'\n"
    )
    answer.chmod(0o755)
    server.extra_config = [f"ForceCommand {answer}"]
    server.start()
    lab.trust("evil-builder")
    inventory = lab.write_inventory()
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "build-wheels", "--print-script"]
        + ["--builder", "evil-builder", "--inventory", str(inventory), "--packages", "torch"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"recipe for " in proc.stderr
    assert b"\\x1b[2Jbullseye\\x1b]0;owned\\x07" in proc.stderr  # shown, inert
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr


def test_build_status_on_a_crafted_state_file_prints_one_line(lab, tmp_path):
    lab.add("builder")
    lab.trust("builder")
    work = tmp_path / "builder-work"
    work.mkdir()
    (work / "state").write_text("100 start jobs=2\n150 \n151 built torch seconds=x\n152 failed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "build-status", "--builder", "builder"]
        + ["--inventory", str(lab.write_inventory()), "--work-dir", str(work)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("builder: failed; stage start")
    assert "  ignored 2 malformed line(s) in the builder's state file\n" in proc.stdout
