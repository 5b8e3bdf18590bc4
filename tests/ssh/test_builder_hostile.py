"""A hostile builder (a real sshd on 127.0.0.1 whose work dir it crafted) cannot choose where
`build-status --pull` writes on the workstation, nor make it pull files that are not the plan's
wheels."""

from __future__ import annotations

import json

import pytest

from pi_setup import build_wheels as bw
from pi_setup.errors import WheelError

pytestmark = pytest.mark.ssh

WHEEL = "pi_probe-0.1.0-cp39-cp39-linux_armv7l.whl"


def _builder(lab, tmp_path, pid_text: str):
    """A builder host whose work dir claims a finished build, with a forged build.pid."""
    lab.add("builder")
    lab.trust("builder")
    work = tmp_path / "builder-work"
    (work / "dist").mkdir(parents=True)
    (work / "dist" / WHEEL).write_bytes(b"PK not really a wheel")
    (work / "state").write_text("100 start jobs=2\n101 stage pi-probe:build\n102 finished\n")
    plan = bw.make_plan(["pi-probe"], sources={"pi-probe": "/src/pi_probe"}, apt=False)
    (work / "plan.json").write_text(json.dumps(bw.plan_record(plan)))
    bw.remember_plan("builder", str(work), bw.plan_record(plan))  # what start_build records
    (work / "build.pid").write_text(pid_text)
    checkout = tmp_path / "checkout"
    (checkout / "wheels").mkdir(parents=True)
    (checkout / "tasks.py").write_text("ORIGINAL\n")
    return work, checkout


def _pull(lab, work, checkout):
    # The loopback builder is this x86 machine: its wheel cannot pass the armhf gate (tested in
    # tests/cross and tests/unit/test_elf_check.py); here the names and paths are under test.
    return bw.status_on(
        "builder",
        inventory=str(lab.inventory),
        work=str(work),
        pull=True,
        dest=checkout / "wheels",
        gate=False,
    )


def test_forged_build_pid_cannot_overwrite_the_checkout(lab, tmp_path):
    work, checkout = _builder(lab, tmp_path, "123 no\nwheel ../tasks.py\nx")
    (work / "tasks.py").write_text("import os  # the builder's code\n")
    status, pulled = _pull(lab, work, checkout)
    assert (checkout / "tasks.py").read_text() == "ORIGINAL\n"
    assert status.pid is None and status.wheels == (WHEEL,)
    assert [p.path for p in pulled] == [(checkout / "wheels" / WHEEL).resolve()]
    assert sorted(p.name for p in (checkout / "wheels").iterdir()) == sorted(
        [WHEEL, "manifest.json"]
    )


def test_forged_absolute_wheel_name_cannot_write_anywhere(lab, tmp_path):
    victim = tmp_path / "victim" / "owned.txt"
    work, checkout = _builder(lab, tmp_path, f"1 no\nwheel {victim}\nx")
    planted = work / "dist" / str(victim).lstrip("/")
    planted.parent.mkdir(parents=True)
    planted.write_text("owned\n")
    status, _ = _pull(lab, work, checkout)
    assert not victim.exists() and status.pid is None


def test_a_file_that_is_not_a_wheel_of_the_plan_is_refused(lab, tmp_path):
    work, checkout = _builder(lab, tmp_path, "4242\n")
    (work / "dist" / "tasks-1.0-py3-none-any.whl").write_text("x")
    with pytest.raises(WheelError, match="tasks-1.0-py3-none-any.whl is not a wheel of the plan"):
        _pull(lab, work, checkout)
    assert sorted(p.name for p in (checkout / "wheels").iterdir()) == []


@pytest.mark.parametrize(
    "name", ["../tasks.py", "/etc/x.whl", "../../x.whl", "a/b.whl", "..whl", "x.whl\x1b[2J"]
)
def test_status_lines_with_path_like_wheel_names_are_rejected(name):
    status = bw.parse_status(f"now 5\npid 7 no\nwheel {name}\nstate 1 start\nstate 2 finished")
    assert status.wheels == () and status.rejected == (name.strip(),)


def test_the_builders_plan_json_is_never_read(lab, tmp_path):
    """A builder that renames its package "numpy" (whose self-check the gate would import) and
    widens the wheel prefix gets neither: names come from the plan this workstation sent."""
    work, checkout = _builder(lab, tmp_path, "4242\n")
    plan = json.loads((work / "plan.json").read_text())
    plan["packages"][0].update(name="numpy", version="9.9.9", wheel_prefix="tasks")
    (work / "plan.json").write_text(json.dumps(plan))
    (work / "dist" / "tasks-1.0-py3-none-any.whl").write_text("x")
    with pytest.raises(WheelError, match="tasks-1.0-py3-none-any.whl is not a wheel of the plan"):
        _pull(lab, work, checkout)
    (work / "dist" / "tasks-1.0-py3-none-any.whl").unlink()
    _, pulled = _pull(lab, work, checkout)
    manifest = json.loads((checkout / "wheels" / "manifest.json").read_text())
    assert manifest["wheels"][WHEEL]["package"] == "pi-probe"
    assert manifest["wheels"][WHEEL]["version"] == "0.1.0"


def test_a_builder_this_workstation_sent_no_plan_is_not_pulled(lab, tmp_path):
    work, checkout = _builder(lab, tmp_path, "4242\n")
    for recorded in (tmp_path / "home" / ".cache" / "retinaface-pi" / "build-plans").iterdir():
        recorded.unlink()
    with pytest.raises(WheelError, match="this workstation started no build in"):
        _pull(lab, work, checkout)
    assert list((checkout / "wheels").iterdir()) == []


def test_a_wheel_that_lock_yaml_pins_is_refused_from_a_builder(lab, tmp_path):
    work, checkout = _builder(lab, tmp_path, "4242\n")
    (work / "dist" / "onnxruntime-9.9.9-py3-none-any.whl").write_bytes(b"PK not onnxruntime")
    with pytest.raises(WheelError, match="onnxruntime is pinned in wheels/lock.yaml"):
        _pull(lab, work, checkout)
    assert list((checkout / "wheels").iterdir()) == []


def test_a_differing_local_wheel_is_not_overwritten(lab, tmp_path):
    work, checkout = _builder(lab, tmp_path, "4242\n")
    mine = checkout / "wheels" / WHEEL
    mine.write_bytes(b"PK the user's own build")
    with pytest.raises(WheelError, match="already exists with another sha256 .* not overwritten"):
        _pull(lab, work, checkout)
    assert mine.read_bytes() == b"PK the user's own build"
