"""Every script template, rendered with a hostile value in every field, runs no injected command.

A value like `x$(touch MARKER)` once reached bash unquoted inside double quotes
(templates/deploy_venv.sh.j2). Here each templates/*.sh.j2 is rendered with such a value for
every variable it uses, checked with `bash -n`, then really executed in a sandbox: external
commands other than a few harmless readers are no-ops, `exit` returns, `set -e` is off, so every
line runs, and the marker file shows whether any interpolation became code.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta

from deploy.hosts.scripts import TEMPLATES, environment
from pi_setup.build_wheels import Package

# Real commands the scripts may use that change nothing outside the sandbox; `touch` is the
# one the injected payload uses, so it must work.
HARMLESS = ("touch", "dirname", "basename", "cat", "head", "tail", "date", "sed", "awk", "stat")
HARMLESS += ("uname", "id", "cut", "tr", "sort", "wc")
PIPE_TEMPLATES = ("build_wheels.sh.j2", "setup_pi.sh.j2")  # rendered by pi_setup


def hostile(marker: Path) -> str:
    """Every way out of a bash word at once: quotes, $(), backticks, ;, newlines, heredoc ends."""
    touch = f"touch {marker}"
    return (
        f"/nonexistent/x'\"$({touch})`{touch}`;{touch};\\\n$({touch})\n"
        f"MARKER\n{touch}\nPY\n{touch} #"
    )


class CrossPackage:
    """What templates/cross_build.sh.j2 reads of a pi_setup.cross package, every field hostile."""

    def __init__(self, bad: str, requirements: bool):
        self.name = self.spec = bad
        self.requirements = bad if requirements else None
        self.env = ((bad, bad),)
        self._bad = bad

    def sdist_digest(self) -> str:
        return self._bad


def contexts(bad: str):
    """(template, context) pairs: hostile strings in every field, every branch's flags."""
    package = Package(name=bad, version=bad, repo=bad, ref=bad, env=((bad, bad),), install=True)
    cross_common = {"target": bad, "triplet": bad, "crossenv_version": bad, "crossenv_dir": bad}
    fixed = {
        "bench_poll.sh.j2": {"run_dir": bad},
        "bench_run.sh.j2": {"run_dir": bad, "python": bad, "args": [bad, bad]},
        "build_wheels.sh.j2": {
            "packages": [package],
            "jobs": bad,
            "need_mb": bad,
            "swapfile": bad,
            "python": bad,
            "apt_packages": [bad],
            "arch_note": bad,
        },
        "bundle_unpack.sh.j2": {"deploy_dir": bad, "release_id": bad},
        "cross_build.sh.j2": {
            **cross_common,
            "packages": [CrossPackage(bad, True), CrossPackage(bad, False)],
            "out_dir": bad,
            "jobs": bad,
        },
        "cross_root.sh.j2": {
            **cross_common,
            "release": bad,
            "python": bad,
            "apt_packages": [bad],
            "target_debs": [bad],
            "target_prefix": bad,
            "tool_side": [bad],
            "build_side": [bad],
            "cross_side": [bad],
        },
        "deploy_activate.sh.j2": {"deploy_dir": bad, "keep": bad, "release_id": bad},
        "deploy_link.sh.j2": {
            "deploy_dir": bad,
            "release_dir": bad,
            "release_id": bad,
            "dirs": [bad],
            "links": [{"rel": bad, "source": bad, "sha256": bad}],
        },
        "deploy_lock.sh.j2": {"deploy_dir": bad, "owner": bad},
        "deploy_state.sh.j2": {"deploy_dir": bad, "release_id": bad},
        "deploy_venv.sh.j2": {
            "deploy_dir": bad,
            "wheelhouse": bad,
            "python": bad,
            "apt_packages": [bad],
            "pip_requirements": [bad],
            "install": [bad],
            "marker": [bad],
        },
        "facts.sh.j2": {"python": bad},
        "service_env.sh.j2": {"env_file": bad, "keep": True},
        "service_install.sh.j2": {"deploy_dir": bad, "unit_path": bad, "unit": bad},
        "setup_pi.sh.j2": {
            "deploy_dir": bad,
            "python": bad,
            "swap_mb": bad,
            "swapfile": bad,
            "apt_packages": [bad],
        },
    }
    branches = {
        "bench_poll.sh.j2": {"kill": [True, False]},
        "service_env.sh.j2": {"keep": [True, False]},
        "build_wheels.sh.j2": {"add_swap": [True, False], "emulated": [True, False]},
        "deploy_lock.sh.j2": {"action": [bad, "take", "drop", "break"]},
        "deploy_venv.sh.j2": {"create": [True, False], "share_site": [True, False]},
        "bundle_unpack.sh.j2": {"action": [bad, "unpack", "commit"]},
        "facts.sh.j2": {"deploy_dir": [bad, "~/" + bad]},
        "setup_pi.sh.j2": {"check": [True, False], "ros": [True, False]},
    }
    for name, base in fixed.items():
        options = branches.get(name, {})
        for values in itertools.product(*options.values()):
            yield name, {**base, **dict(zip(options, values))}


def env_for(name: str) -> jinja2.Environment:
    if name in ("build_wheels.sh.j2", "cross_build.sh.j2", "cross_root.sh.j2"):
        return environment()
    if name == "setup_pi.sh.j2":
        return environment()
    return environment()


def run_sandboxed(script: str, tmp: Path) -> subprocess.CompletedProcess:
    """Run `script` so every line executes and nothing outside `tmp` can change."""
    stub = tmp / "bin"
    stub.mkdir(exist_ok=True)
    for command in HARMLESS:
        link = stub / command
        if not link.exists():
            real = subprocess.run(["bash", "-c", f"command -v {command}"], capture_output=True)
            link.symlink_to(real.stdout.decode().strip())
    preamble = (
        "command_not_found_handle() { return 0; }\n"  # every other command: a no-op
        "exit() { return 0; }\n"  # an error branch must not end the run early
        f"PATH={stub}\n"
    )
    body = script.replace("set -euo pipefail", "set +e")
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    path = work / "script.sh"
    path.write_text(preamble + body)
    return subprocess.run(
        [shutil.which("bash"), str(path)],
        cwd=work,
        env={"HOME": str(tmp / "home"), "PATH": str(stub)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_script_template_gets_a_hostile_value_in_every_field(tmp_path):
    """The list below covers each template and each variable it reads (new fields too)."""
    covered: dict = {}
    for name, context in contexts("x"):
        covered.setdefault(name, set()).update(context)
    names = sorted(p.name for p in TEMPLATES.glob("*.sh.j2"))
    assert sorted(covered) == names
    for name in names:
        env = env_for(name)
        used = meta.find_undeclared_variables(env.parse((TEMPLATES / name).read_text()))
        assert used <= covered[name], f"{name}: no hostile value for {used - covered[name]}"


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.sh.j2")))
def test_hostile_values_never_run_as_code(name, tmp_path):
    marker = tmp_path / "MARKER"
    bad = hostile(marker)
    runs = 0
    for template, context in contexts(bad):
        if template != name:
            continue
        script = env_for(name).get_template(name).render(**context)
        path = tmp_path / f"rendered-{runs}.sh"
        path.write_text(script)
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{name} {context}: {syntax.stderr}"
        run_sandboxed(script, tmp_path)
        assert not marker.exists(), f"{name} ran injected code with {sorted(context)}"
        runs += 1
    assert runs >= 1
    assert not any(Path(tmp_path / "home").glob("**/MARKER"))


def test_the_sandbox_catches_an_unquoted_value(tmp_path):
    """The check above can fail: the same value, unquoted in double quotes, runs `touch`."""
    marker = tmp_path / "MARKER"
    script = jinja2.Template('set -euo pipefail\necho "cannot use {{ python }}"\n').render(
        python=hostile(marker)
    )
    run_sandboxed(script, tmp_path)
    assert marker.exists()
    os.unlink(marker)
