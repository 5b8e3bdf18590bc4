"""A newcomer's mistakes: each is one line naming what is wrong, a non-zero exit, no traceback.

Every test runs the real command line (`invoke …` or `python -m retinaface.runner …`) in a
subprocess, the way a user types it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.paths import IMAGES, REPO


def run(*argv, env=None, module="invoke"):
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def assert_one_line(result, *needles):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (("remote-bench", "--runs", "abc"), "--runs"),
        (("remote-bench", "--warmup", "1.5"), "--warmup"),
        (("remote-bench", "--min-time", "abc"), "--min-time"),
        (("remote-bench", "--timeout", "inf"), "--timeout"),
        (("remote-bench", "--cooldown-below", "hot"), "--cooldown-below"),
        (("detect", "--image", "x.jpg", "--long-side", "abc"), "--long-side"),
        (("detect", "--image", "x.jpg", "--conf", "abc"), "--conf"),
        (("detect", "--image", "x.jpg", "--conf", "nan"), "--conf"),
        (("build-wheels", "--print-script", "--jobs", "two"), "--jobs"),
        (("setup-pi", "--swap-mb", "lots"), "--swap-mb"),
        (("bench-local", "--rounds", "x"), "--rounds"),
    ],
)
def test_a_number_flag_given_text_is_one_line(argv, flag):
    assert_one_line(run(*argv), flag)


@pytest.mark.parametrize("value", ["2", "0", "-0.5"])
def test_conf_outside_0_1_is_refused_before_any_model_is_built(value):
    line = assert_one_line(run("detect", "--image", "x.jpg", "--conf", value), "--conf")
    assert "(0, 1]" in line


def test_long_side_zero_is_refused():
    assert_one_line(run("detect", "--image", "x.jpg", "--long-side", "0"), "--long-side")


def test_out_in_a_folder_that_does_not_exist(tmp_path):
    out = tmp_path / "nothere" / "x.png"
    line = assert_one_line(run("detect", "--image", "x.jpg", "--out", str(out)), str(out))
    assert "does not exist" in line
    assert not out.parent.exists()


def test_out_with_an_extension_that_names_no_format(tmp_path):
    out = tmp_path / "faces.gif2"
    line = assert_one_line(run("detect", "--image", "x.jpg", "--out", str(out)), str(out))
    assert ".png" in line and ".jpg" in line
    assert not out.exists()


def test_image_that_is_a_folder_says_folder(models_dir):
    line = assert_one_line(
        run("detect", "--image", str(IMAGES), "--model", str(models_dir / "fp32.onnx")),
        str(IMAGES),
    )
    assert "is a folder" in line and "not found" not in line


def test_out_writes_the_format_its_extension_names_and_boxes_stay_inside(tmp_path, models_dir):
    out, js = tmp_path / "crowd.jpg", tmp_path / "crowd.json"
    model = str(models_dir / "fp32.onnx")
    image = str(IMAGES / "crowd.jpg")
    result = run("detect", "--image", image, "--model", model, "--out", str(out), "--json", str(js))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes under a .jpg name
    payload = json.loads(js.read_text())
    for face in payload["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 <= x2 <= payload["width"] and 0 <= y1 <= y2 <= payload["height"]
    # crowd.jpg has faces cut by the top edge: their boxes were negative before clipping
    assert any(face["box"][1] == 0 for face in payload["faces"])


def _blocked_packages(tmp_path):
    """A folder that makes `import numpy` and `import cv2` fail, as on a host without them."""
    for name in ("numpy", "cv2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('No module named {name}')\n"
        )
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}


@pytest.mark.parametrize("argv", [("--help",), ("detect", "--help"), ("bench", "--help")])
def test_runner_help_works_without_numpy_and_cv2(tmp_path, argv):
    result = run(*argv, env=_blocked_packages(tmp_path), module="retinaface.runner")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m retinaface.runner" in result.stdout


def test_runner_without_numpy_says_so_in_one_line(tmp_path):
    result = run(
        "detect",
        "--model",
        "m.onnx",
        "--image",
        "x.jpg",
        env=_blocked_packages(tmp_path),
        module="retinaface.runner",
    )
    assert_one_line(result, "numpy")


def test_runner_bad_flag_is_one_line():
    result = run(
        "detect", "--model", "m.onnx", "--image", "x.jpg", "--conf", "7", module="retinaface.runner"
    )
    assert_one_line(result, "--conf")


def test_inventory_that_is_not_yaml_is_one_line(tmp_path):
    bad = tmp_path / "inventory.yaml"
    bad.write_text("all:\n  hosts:\n    pi4: {address: [x\n  oops: : :\n")
    line = assert_one_line(run("facts", "--inventory", str(bad)), str(bad))
    assert "not valid YAML" in line and "line 4" in line


def _free_port():
    with socket.socket() as probe:  # a port nobody listens on: the builder does not answer
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _builder_inventory(tmp_path, extra=""):
    path = tmp_path / "inventory.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            all:
              hosts:
                local: {{connection: local}}
                far: {{address: 127.0.0.1, port: {_free_port()}, user: pi{extra}}}
            """
        )
    )
    return path


def test_print_script_without_a_reachable_builder_says_what_it_assumed(tmp_path):
    inventory = _builder_inventory(tmp_path)
    result = run(
        "build-wheels", "--builder", "far", "--print-script", "--inventory", str(inventory)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/usr/bin/env bash")
    script = tmp_path / "recipe.sh"
    script.write_text(result.stdout)
    subprocess.run(["bash", "-n", str(script)], check=True)
    note = result.stderr.strip()
    assert note.startswith("note: recipe for bullseye (assumed), python3 (assumed), native")
    assert "unreachable" in note and "--os" in note


def test_print_script_facts_from_flags_and_inventory(tmp_path):
    inventory = _builder_inventory(tmp_path, extra=", python: python3.9")
    result = run(
        "build-wheels",
        "-b",
        "far",
        "--print-script",
        "-i",
        str(inventory),
        "--os",
        "trixie",
        "--emulated",
    )
    assert result.returncode == 0, result.stderr
    assert "python3.9 -m venv" in result.stdout
    assert "NEON flags forced" in result.stdout
    note = result.stderr
    assert "trixie (flag)" in note and "python3.9 (inventory)" in note and "emulated (flag)" in note
    flagged = run("build-wheels", "--print-script", "--os", "bullseye", "--python", "3.11")
    assert "python3.11 -m venv" in flagged.stdout
    assert "bullseye (flag), python3.11 (flag), native (assumed)" in flagged.stderr


def test_print_script_probes_a_builder_that_answers():
    result = run("build-wheels", "--builder", "local", "--print-script")
    assert result.returncode == 0, result.stderr
    assert "(probed)" in result.stderr and "assumed" not in result.stderr


def test_print_script_refuses_a_bad_os_flag():
    assert_one_line(run("build-wheels", "--print-script", "--os", "Bulls eye"), "--os")


@pytest.mark.root  # seteuid
def test_emu_down_as_a_normal_user_names_emu_down():
    # The effective uid drops to nobody after the imports (root's home is not readable by nobody).
    code = textwrap.dedent(
        """
        import os, sys
        from pi_setup import emulator
        from pi_setup.errors import EmulatorError
        os.seteuid(65534)
        try:
            emulator.down(None)
        except EmulatorError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "invoke emu-down" in result.stdout and "emu-up" not in result.stdout, result


def _task_names():
    listing = run("--list").stdout.splitlines()
    return [line.split()[0] for line in listing if line.startswith("  ")]


def test_short_flags_mean_one_thing_everywhere_and_never_h():
    names = _task_names()
    assert "build-wheels" in names and "deploy" in names
    for name in names:
        text = run("--help", name).stdout
        flags = [
            line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  -")
        ]
        shorts = [flag for flag in flags if not flag.startswith("--")]
        assert "-h" not in shorts, (name, text)
        allowed = {"-H": "--host", "-i": "--inventory", "-b": "--builder"}
        for line in text.splitlines():
            first = line.split()[0].rstrip(",") if line.startswith("  -") else ""
            if first in allowed:
                assert allowed[first] in line, (name, line)
            else:
                assert not (first and not first.startswith("--")), (name, line)


@pytest.mark.parametrize(
    "task, flag", [("deploy", "--host"), ("detect", "--image"), ("build-status", "--builder")]
)
def test_task_dash_h_is_help(task, flag):
    # detect's image and build-status's builder used to be positional and swallowed -h
    for helpflag in ("-h", "--help"):
        result = run(task, helpflag)
        assert result.returncode == 0 and "Usage:" in result.stdout and flag in result.stdout


def test_report_dash_h_points_to_help_instead_of_a_folder_named_h():
    assert_one_line(run("report", "-h"), "invoke --help report")


def test_detect_without_image_is_one_line():
    assert_one_line(run("detect"), "--image")
