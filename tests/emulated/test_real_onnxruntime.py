"""The stack the user runs, for real: a community armv7l onnxruntime build on emulated bullseye.

Through the user's own commands: `invoke fetch-ort --os buster --python 3.9 --version 1.8.1
--mirror ../shared/wheels` (the real bytes, pinned by sha256 in wheels/lock.yaml), `invoke
deploy --host pi4-emu` (bullseye, Python 3.9, Debian's numpy 1.19.5; deploy ships our armv7l
numpy >= 1.20 wheel from wheels/ and never reaches a package index), then on the emulated Pi the
runner on fp32, fp32-opt, int8 and int8-qop finds the same faces as x86, with nothing on stderr,
and `invoke remote-bench --host pi4-emu --profile` runs end to end with emulated timings
labelled and says which operators 1.8.1 executes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from .conftest import invoke, ssh
from .deploys import ORT_FILE
from .test_runner_emulated import (
    DEPLOY_DIR,
    IMAGE_NAMES,
    IMAGES,
    REMOTE,
    SIZE,
    _x86_faces,
    assert_same_faces,
    manifest,  # noqa: F401  (fixture)
    models,  # noqa: F401  (fixture)
)

C_API_ERROR = "compiled against API version"
VENV_PY = f"{DEPLOY_DIR}/venv/bin/python"


@pytest.fixture
def deployed(pi4_emu_deployed):
    """pi4-emu with the real wheels (conftest.py: idempotent, whatever ran before)."""
    return pi4_emu_deployed


def test_the_venv_imports_onnxruntime_181_with_our_numpy_and_no_c_api_error(deployed, real_wheels):
    probe = (
        f"{VENV_PY} -c 'import numpy, onnxruntime, cv2; "
        "print(onnxruntime.__version__, numpy.__version__, cv2.__version__)'"
    )
    out = ssh(deployed, probe, timeout=600)
    assert out.returncode == 0, out.stderr
    ort_version, numpy_version, cv2_version = out.stdout.split()
    assert ort_version == "1.8.1"
    assert real_wheels["numpy"].name.startswith(f"numpy-{numpy_version}-")
    assert tuple(int(p) for p in numpy_version.split(".")[:2]) >= (1, 20)
    assert cv2_version.startswith("4.5.1")  # Debian's OpenCV keeps working on the newer numpy
    assert out.stderr == "", out.stderr  # no "compiled against API version 0xe" spam
    system = ssh(deployed, "python3 -c 'import numpy; print(numpy.__version__)'")
    assert system.stdout.strip() == "1.19.5"  # deploy left Debian's own numpy alone


def _remote_detect(st, model_file: str, image: str) -> tuple:
    cmd = (
        f"{VENV_PY} -m retinaface.runner detect --model {DEPLOY_DIR}/current/models/{model_file} "
        f"--image {REMOTE}/images/{image} --backend onnxruntime --size {SIZE[0]}x{SIZE[1]} "
        f"--json {REMOTE}/faces.json > /dev/null && cat {REMOTE}/faces.json"
    )
    out = ssh(st, cmd, timeout=900)
    assert out.returncode == 0, f"{model_file} {image}: {out.stderr[-2000:]}"
    return json.loads(out.stdout)["faces"], out.stderr


@pytest.mark.parametrize("variant", ["fp32", "fp32-opt", "int8", "int8-qop"])
def test_onnxruntime_181_finds_the_x86_faces(deployed, models, variant):  # noqa: F811
    """Every ONNX variant loads on the real 1.8.1 build and finds what x86 finds, stderr clean."""
    model = models[variant]
    for image in IMAGE_NAMES:
        x86 = _x86_faces(model, "onnxruntime", IMAGES / image)
        assert x86, f"{image}: no face on x86, the comparison would prove nothing"
        arm, stderr = _remote_detect(deployed, model.name, image)
        # int8 kernels differ between x86 (VNNI, onnxruntime 1.32) and ARM (1.8.1): measured
        # there, same 11 faces in group.jpg but one box at IoU 0.887; fp32 variants meet 0.9.
        min_iou = 0.85 if variant.startswith("int8") else 0.9
        assert_same_faces(arm, x86, f"onnxruntime 1.8.1 {model.name} {image}", min_iou)
        assert stderr == "", stderr


ONNX_VARIANTS = ("fp32", "fp32-opt", "int8", "int8-qop")


def test_remote_bench_runs_end_to_end_with_emulated_timings_labelled(deployed, tmp_path):
    """remote-bench --profile on the real 1.8.1 build: what that onnxruntime executes per variant
    (operator types; the emulated times mean nothing)."""
    out = invoke(
        "remote-bench", "--host", "pi4-emu", "--variants", ",".join(ONNX_VARIANTS), "--profile",
        "--size", f"{SIZE[0]}x{SIZE[1]}", "--runs", "5", "--warmup", "1", "--min-time", "0",
        "--out", str(tmp_path), timeout=3600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    md = (run_dir / "table.md").read_text()
    assert "## pi4-emu (emulated)" in md and "EMULATED" in md
    assert "<h2>pi4-emu (emulated)</h2>" in (run_dir / "report.html").read_text()
    rows = list(csv.DictReader((run_dir / "table.csv").open()))
    e2e = {r["variant"]: r for r in rows if r["host"] == "pi4-emu" and r["stage"] == "e2e"}
    assert set(e2e) == set(ONNX_VARIANTS)
    for variant, row in e2e.items():
        assert row["kind"] == "emulated" and row["status"] == "ok", row
        assert int(row["faces"]) > 0 and float(row["p50"]) > 0, (variant, row)
    print("\n" + md)
    bench = json.loads((run_dir / "pi4-emu" / "bench.json").read_text())
    ops = {v: bench["variants"][v]["profile"]["ops"] for v in ONNX_VARIANTS}
    kinds = {v: bench["variants"][v]["profile"]["kind"] for v in ONNX_VARIANTS}
    for variant in ONNX_VARIANTS:
        summary = ", ".join(f"{op} x{stats['count']}" for op, stats in ops[variant].items())
        print(f"onnxruntime 1.8.1 armv7l executes {variant}: {kinds[variant]}: {summary}")
    assert kinds["fp32"] == kinds["fp32-opt"] == "float"
    assert "FusedConv" in ops["fp32-opt"]  # the offline optimization survives on 1.8.1
    # QDQ: 1.8.1 fuses the convolutions into QLinearConv but runs every LeakyReLU in float
    # between a DequantizeLinear and a QuantizeLinear.
    assert ops["int8"]["QLinearConv"]["count"] == 47 and ops["int8"]["LeakyRelu"]["count"] == 38
    assert ops["int8"]["DequantizeLinear"]["count"] > 38
    # QOperator: the same convolutions and the LeakyReLUs run as integer kernels.
    assert ops["int8-qop"]["QLinearConv"]["count"] == 47
    assert ops["int8-qop"]["QLinearLeakyRelu"]["count"] == 38 and "LeakyRelu" not in ops["int8-qop"]
    assert ops["int8-qop"]["DequantizeLinear"]["count"] < ops["int8"]["DequantizeLinear"]["count"]


def _probe(st, python: str, model_file: str, env: str = "") -> dict:
    """tests/emulated/ort_numpy_probe.py run by PYTHON on the emulated Pi."""
    script = (Path(__file__).parent / "ort_numpy_probe.py").read_text()
    model = f"{DEPLOY_DIR}/current/models/{model_file}"
    out = ssh(st, f"{env} {python} - {model}", timeout=900, input=script)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_what_numpy_1195_breaks_for_onnxruntime_181(deployed):
    """The decision for the wheel, measured: the same onnxruntime 1.8.1 files under Debian's
    numpy 1.19.5 (C-API 0xd) and under the shipped numpy (0xe). Every call we and onnxruntime's
    Python API make gives identical bytes; 1.19.5 costs the C-API error lines on stderr at every
    import (and would need filtering fd 2 of every process to hide)."""
    site = f"$HOME/{DEPLOY_DIR}/ort-only"
    unpack = (
        # pip, not unzip: this wheel keeps its package under onnxruntime-1.8.1.data/purelib/
        f"rm -rf {site} && {VENV_PY} -m pip install -q --no-deps --no-index --target {site} "
        f"{DEPLOY_DIR}/current/wheelhouse/{ORT_FILE} && ls {site}/onnxruntime/capi >&2"
    )
    unpacked = ssh(deployed, unpack, timeout=600)
    assert unpacked.returncode == 0 and "_pybind_state" in unpacked.stderr, unpacked.stderr
    old = _probe(deployed, "python3", "fp32.onnx", env=f"PYTHONPATH={site}")
    new = _probe(deployed, VENV_PY, "fp32.onnx")
    print("\nnumpy 1.19.5:", json.dumps(old, indent=1), "\nshipped numpy:", json.dumps(new))
    assert old["numpy"] == "1.19.5" and old.get("onnxruntime") == new["onnxruntime"] == "1.8.1"
    assert (
        "module compiled against API version 0xe but this version of numpy is 0xd"
        in (old["import_stderr"])
    )
    assert old["import_error"] is None and new["import_error"] is None
    assert new["import_stderr"] == ""
    assert old["pybind_names"] == new["pybind_names"]
    assert old["calls"] == new["calls"]
    broken = [k for k, v in new["calls"].items() if "ERROR" in str(v) and k != "run float64"]
    assert broken == []
    assert new["calls"]["run float64"].startswith("ERROR")  # refused on both, as on x86
    ssh(deployed, f"rm -rf {site}")
