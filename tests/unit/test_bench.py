"""The runner's bench: statistics, variant planning with skip reasons, a real small run, the CLI."""

import json
import shutil

import cv2
import numpy as np
import pytest

from retinaface import backends, manifest
from retinaface.bench import run as bench
from retinaface.bench import schema
from retinaface.bench.run import BenchConfig, plan_variant, run_bench
from retinaface.bench.schema import summarize
from retinaface.bench.telemetry import Telemetry
from retinaface.errors import ModelError
from retinaface.runner import main
from tests.paths import REPO

PROBE = REPO / "deploy" / "assets" / "probe.jpg"


def test_summarize_known_values():
    stats = summarize(list(range(1, 101)))
    assert stats == {
        "p50": 50.5,
        "p90": 90.1,
        "p99": 99.01,
        "mean": 50.5,
        "std": 29.011,
        "min": 1.0,
        "max": 100.0,
    }


def test_summarize_one_sample_and_none():
    assert summarize([4.0]) == {
        "p50": 4.0,
        "p90": 4.0,
        "p99": 4.0,
        "mean": 4.0,
        "std": 0.0,
        "min": 4.0,
        "max": 4.0,
    }
    with pytest.raises(ValueError):
        summarize([])


def test_windows_plan_splits_runs_and_time():
    config = BenchConfig(models_dir="m", image="i", runs=12, windows=5, min_time_s=2.0)
    assert bench._windows_plan(config) == (5, 3, 0.4)


MANIFEST = {
    "format": 1,
    "models": {
        "fp32": {"file": "fp32.onnx", "backend": "onnxruntime"},
        "fp32-static-640x480": {"file": "fp32-static-640x480.onnx", "backend": "opencv"},
        "torch": {"file": "retinaface-mnet025.pth", "backend": "torch"},
        "int8": {"file": "int8.onnx", "backend": "onnxruntime", "sha256": "0" * 64},
    },
}


@pytest.fixture
def fake_models(tmp_path):
    for entry in MANIFEST["models"].values():
        (tmp_path / entry["file"]).write_bytes(b"not really a model")
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def test_plan_unknown_variant(fake_models):
    plan = plan_variant("fp32-opt", MANIFEST, str(fake_models), (640, 480))
    assert plan.skipped == ("not in manifest.json (has: fp32, fp32-static-640x480, int8, torch)")


def test_plan_opencv_needs_a_static_model_of_the_size(fake_models):
    plan = plan_variant("opencv", MANIFEST, str(fake_models), (320, 240))
    assert plan.skipped == (
        "needs fp32-static-320x240 in manifest.json for --size 320x240 (has: fp32-static-640x480)"
    )
    plan = plan_variant("opencv", MANIFEST, str(fake_models), (640, 480))
    assert plan.skipped is None
    assert (plan.backend, plan.file) == ("opencv", "fp32-static-640x480.onnx")


def test_plan_missing_file_and_digest_mismatch(fake_models):
    (fake_models / "fp32.onnx").unlink()
    plan = plan_variant("fp32", MANIFEST, str(fake_models), (640, 480))
    assert plan.skipped.startswith("model file ") and plan.skipped.endswith("fp32.onnx is missing")
    plan = plan_variant("int8", MANIFEST, str(fake_models), (640, 480))
    assert "sha256 differs from manifest.json" in plan.skipped


def test_plan_runtime_not_installed(fake_models, monkeypatch):
    torch = backends.ENGINES["torch"]._replace(requires="no_such_torch_module")
    monkeypatch.setitem(backends.ENGINES, "torch", torch)
    plan = plan_variant("torch", MANIFEST, str(fake_models), (640, 480))
    assert plan.skipped.startswith("no_such_torch_module cannot be imported on this host")
    assert "ModuleNotFoundError" in plan.skipped


def test_load_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(ModelError, match="manifest.json"):
        manifest.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ModelError, match="not a models manifest"):
        manifest.load_manifest(tmp_path)


def _fake_snapshots(values):
    """A telemetry snapshot function returning throttle values in turn."""
    values = iter(values)

    def snapshot(root):
        value = next(values)
        return Telemetry(time=0.0, throttled=value, throttled_hex="0x{:x}".format(value))

    return snapshot


def small_config(models_dir, **kw):
    base = dict(
        models_dir=str(models_dir),
        image=str(PROBE),
        variants=["fp32", "opencv", "no-such"],
        size=(640, 480),
        warmup=1,
        runs=4,
        windows=2,
        min_time_s=0.0,
    )
    base.update(kw)
    return BenchConfig(**base)


def test_run_bench_small_real_run(models_dir):
    events = []
    # start, fp32 before/after, opencv before/after, end: the throttle changes during opencv.
    snapshot = _fake_snapshots([0, 0, 0, 0, 0x20002, 0x20002])
    result = run_bench(small_config(models_dir), progress=events.append, snapshot=snapshot)
    assert result["order"] == ["fp32", "opencv", "no-such"]
    fp32 = result["variants"]["fp32"]
    assert fp32["status"] == "ok" and fp32["valid"] is True
    assert fp32["backend"] == "onnxruntime" and fp32["input_size"] == [640, 480]
    assert fp32["faces"] > 0
    assert fp32["runs"] == 4 and [w["runs"] for w in fp32["windows"]] == [2, 2]
    for stage in schema.STAGES:
        stats = fp32["stages"][stage]
        assert set(stats) == set(schema.STATS)
        assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
        assert len(fp32["samples_ms"][stage]) == 4
    e2e, parts = fp32["stages"]["e2e"]["mean"], fp32["stages"]
    # Each frame's e2e is its pre + infer + post (time_one), so the means agree up to rounding:
    # summarize rounds each of the four to 3 decimals, each off by at most 0.0005 ms.
    # (CI once saw e2e 35.372 against 3.15 + 30.373 + 1.85 = 35.373.)
    stages_sum = parts["pre"]["mean"] + parts["infer"]["mean"] + parts["post"]["mean"]
    assert abs(e2e - stages_sum) <= 4 * 0.0005 + 1e-9, (e2e, stages_sum)
    assert fp32["fps"] > 0
    assert fp32["peak_rss_mb"] > 10 and fp32["init_ms"] > 0 and fp32["first_ms"] > 0
    opencv = result["variants"]["opencv"]
    assert opencv["status"] == "ok" and opencv["valid"] is False
    assert opencv["invalid_reasons"][0].startswith("throttle bits changed 0x0 -> 0x20002")
    assert opencv["faces"] == fp32["faces"]
    skipped = result["variants"]["no-such"]
    assert skipped["status"] == "skipped" and skipped["valid"] is False
    assert skipped["skipped"].startswith("not in manifest.json")
    phases = [(e["variant"], e["phase"]) for e in events]
    assert ("fp32", "load") in phases and ("fp32", "done") in phases
    assert ("no-such", "skipped") in phases
    assert result["config"]["image_size"] == [550, 375]
    json.dumps(result)  # serializable as is


def test_no_face_on_the_image_is_invalid(models_dir, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    config = small_config(models_dir, image=str(blank), variants=["fp32"], runs=2, windows=1)
    record = run_bench(config)["variants"]["fp32"]
    assert record["faces"] == 0 and record["valid"] is False
    assert any("no face found" in reason for reason in record["invalid_reasons"])


def test_a_variant_that_fails_to_load_does_not_stop_the_others(models_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "fp32.onnx").write_bytes(b"garbage")
    manifest["models"]["fp32"].pop("sha256")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    config = small_config(copy, variants=["fp32", "opencv"], runs=2, windows=1)
    result = run_bench(config)
    assert result["variants"]["fp32"]["status"] == "failed"
    assert result["variants"]["fp32"]["skipped"].startswith("cannot load model")
    assert result["variants"]["opencv"]["status"] == "ok"


def test_cli_writes_json_atomically(models_dir, tmp_path, capsys):
    out = tmp_path / "out" / "bench.json"
    progress = tmp_path / "progress.json"
    argv = ["bench", "--models", str(models_dir), "--image", str(PROBE), "--variants", "fp32"]
    argv += ["--runs", "2", "--warmup", "0", "--windows", "1", "--min-time", "0"]
    argv += ["--json", str(out), "--progress", str(progress), "--size", "320x240"]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["config"]["size"] == [320, 240] and data["config"]["runs"] == 2
    assert data["variants"]["fp32"]["input_size"] == [320, 240]
    assert sorted(p.name for p in out.parent.iterdir()) == ["bench.json"]
    assert json.loads(progress.read_text())["phase"] == "done"
    assert "fp32: p50" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    argv = ["bench", "--models", str(tmp_path), "--image", str(PROBE), "--json", "x.json"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read ") and "manifest.json" in err
    assert main(["bench", "--models", str(tmp_path), "--image", str(PROBE), "--runs", "0"]) == 1
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_host_warnings_name_load_and_governor():
    quiet = Telemetry(time=0.0, loadavg=[0.2, 0.1, 0.1], governor="performance")
    assert bench.host_warnings(quiet, 4) == []
    busy = Telemetry(time=0.0, loadavg=[3.0, 2.0, 1.0], governor="ondemand")
    warnings = bench.host_warnings(busy, 4)
    assert warnings[0] == "load average 3.00 on 4 CPU(s) before the run: other work competes"
    assert warnings[1].startswith("CPU governor ondemand: clocks follow the load")
