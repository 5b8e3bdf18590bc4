"""Bad input gives one clear line naming the file, a non-zero exit and no traceback."""

import json
import subprocess
import sys

import pytest
import torch

from tests.paths import IMAGES, REPO


def run(*argv):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clear_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_detect_writes_png_and_json(tmp_path, models_dir):
    out, js = tmp_path / "crowd.png", tmp_path / "crowd.json"
    model = models_dir / "fp32.onnx"
    result = run(
        "detect",
        "--image",
        str(IMAGES / "crowd.jpg"),
        "--model",
        str(model),
        "--out",
        str(out),
        "--json",
        str(js),
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(js.read_text())
    assert (payload["width"], payload["height"]) == (1024, 624)
    assert len(payload["faces"]) == 25
    face = payload["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0.6 < face["score"] <= 1
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "25 faces" in result.stdout


def test_missing_image(tmp_path, models_dir):
    missing = tmp_path / "nothere.jpg"
    assert_clear_error(
        run("detect", "--image", str(missing), "--model", str(models_dir / "fp32.onnx")),
        str(missing),
    )


def test_text_file_as_image(tmp_path, models_dir):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    result = run(
        "detect",
        "--image",
        str(text),
        "--model",
        str(models_dir / "fp32.onnx"),
        "--json",
        str(tmp_path / "o.json"),
    )
    assert_clear_error(result, str(text))
    assert not (tmp_path / "o.json").exists()


def test_corrupt_pth(tmp_path):
    bad = tmp_path / "mobilenet0.25_Final.pth"
    bad.write_bytes(b"garbage" * 100)
    assert_clear_error(
        run("detect", "--image", str(IMAGES / "selfie.jpg"), "--model", str(bad)), str(bad)
    )


def test_checkpoint_of_another_architecture(tmp_path):
    other = tmp_path / "Resnet50_Final.pth"
    torch.save({"module.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    assert_clear_error(
        run("detect", "--image", str(IMAGES / "selfie.jpg"), "--model", str(other)),
        str(other),
        "missing",
    )


def test_corrupt_onnx(tmp_path):
    bad = tmp_path / "fp32.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert_clear_error(
        run("detect", "--image", str(IMAGES / "selfie.jpg"), "--model", str(bad)), str(bad)
    )


def test_bad_size_flag(models_dir):
    result = run(
        "detect",
        "--image",
        str(IMAGES / "selfie.jpg"),
        "--model",
        str(models_dir / "fp32.onnx"),
        "--size",
        "big",
    )
    assert_clear_error(result, "--size")


@pytest.mark.parametrize("task", ["detect", "models"])
def test_every_task_has_help(task):
    import tasks

    body = getattr(tasks, task)
    result = run("--help", task)
    assert result.returncode == 0, result.stderr
    shown = " ".join(result.stdout.split())  # invoke wraps the text to the terminal width
    assert body.__doc__, f"{task}: no docstring (invoke prints 'none')"
    assert " ".join(body.__doc__.split()) in shown
    assert body.help, f"{task}: no option has a help text"
    for option, text in body.help.items():
        assert f"--{option.replace('_', '-')}" in shown and " ".join(text.split()) in shown, option


def test_runner_reports_a_missing_model_in_one_line(tmp_path):
    missing = tmp_path / "int8.onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retinaface.runner",
            "detect",
            "--model",
            str(missing),
            "--image",
            str(IMAGES / "selfie.jpg"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clear_error(result, str(missing))
