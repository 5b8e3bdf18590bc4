"""The newcomer test: README command 1, read out of README.md, run as a new user would run it.

A normal (non-root) user, a fresh `git clone` of this repository into a folder with no
../shared beside it, a fresh venv made by Debian's /usr/bin/python3, and the first command of
the README's first bash block run verbatim in it (pip downloads from the package index). Then
results/<stamp>/{table.md, report.html} must exist with fp32, fp32-opt and int8 measured.
The venv's size and the command's time are printed (they go into the README).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.newcomer

USER = "retinaface-newcomer"
DEBIAN_PYTHON = "/usr/bin/python3"
# A pip cache kept between runs makes a warm machine fast; the test also passes without it.
PIP_CACHE = Path(
    os.environ.get("RETINAFACE_PI_NEWCOMER_PIP_CACHE", "/var/tmp/retinaface-pi-newcomer-pip")
)
MEASURED = ("fp32", "fp32-opt", "int8")


def readme_command_1(readme: Path) -> str:
    """The first command of the README's first ```bash block (comments skipped, `\\` joined)."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", text, re.S | re.M)
    assert block, f"{readme}: no ```bash block"
    command = ""
    for line in block.group(1).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if command:
                break
            continue
        command += stripped[:-1].rstrip() + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            break
    assert command, f"{readme}: the first bash block has no command"
    return command


def test_readme_command_1_is_parsed_from_the_first_bash_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n```bash\n# 1. comment\n#    more\npip install a \\\n  b && run c\n\n"
        "# 2. other\nbash .ci/run\n```\n```bash\nnot this\n```\n"
    )
    assert readme_command_1(readme) == "pip install a b && run c"


def _newcomer() -> tuple:
    """(user name, uid, gid, home) of a normal user; created when the tests run as root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        entry = pwd.getpwnam(USER)
    return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir


def _as_user(user: str, home: str, script: str, cwd: Path, timeout: float):
    """Run `script` in bash as `user`, with a login-like environment (no root's PATH or pyenv)."""
    env = {
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PIP_CACHE_DIR": str(PIP_CACHE),
        "PIP_NO_INPUT": "1",
    }
    # The machine's pip settings (index mirror, certificates) hold for every user.
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") and k not in env})
    ids = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return subprocess.run(
        ["/bin/bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **ids,
    )


@pytest.fixture
def workspace():
    """An empty folder the new user owns, outside root's private temp folders."""
    folder = Path(tempfile.mkdtemp(prefix="retinaface-pi-newcomer-", dir="/var/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_readme_command_1_works_for_a_new_user_in_a_fresh_clone_and_venv(workspace, capsys):
    command = readme_command_1(REPO / "README.md")
    user, uid, gid, home = _newcomer()
    clone = workspace / "retinaface-pi"
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(clone)], check=True)
    assert not (workspace / "shared").exists()  # a clone is all the user has
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    for path in [workspace, PIP_CACHE, *workspace.rglob("*"), *PIP_CACHE.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)
    deploy_dir = Path(home) / "retinaface-pi"
    if os.geteuid() == 0:
        shutil.rmtree(deploy_dir, ignore_errors=True)  # the newcomer deploys for the first time

    venv = workspace / "venv"
    made = _as_user(user, home, f"{DEBIAN_PYTHON} -m venv {venv}", workspace, 300)
    assert made.returncode == 0, made.stderr
    started = time.monotonic()
    run = _as_user(user, home, f". {venv}/bin/activate && {command}", clone, 3600)
    seconds = time.monotonic() - started
    assert run.returncode == 0, (
        f"README command 1 failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )

    stamps = sorted(p for p in (clone / "results").iterdir() if p.is_dir())
    assert len(stamps) == 1, stamps
    assert (stamps[0] / "table.md").is_file() and (stamps[0] / "report.html").is_file()
    bench = json.loads((stamps[0] / "local" / "bench.json").read_text())
    for name in MEASURED:
        record = bench["variants"][name]
        assert record["status"] == "ok" and record["faces"] > 0, (name, record)
    assert (clone / "crowd.png").is_file() and json.loads((clone / "crowd.json").read_text())[
        "faces"
    ]
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
    torch_line = bench["variants"].get("torch", {}).get("skipped", "measured")
    with capsys.disabled():
        print(
            f"\nnewcomer: README command 1 as {user} took {seconds:.0f} s; "
            f"venv {size.stdout.split()[0]} MB; torch variant: {torch_line}"
        )
