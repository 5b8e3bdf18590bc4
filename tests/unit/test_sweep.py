"""Benchmark sweeps (variant x size x threads, interleaved), telemetry sampled during the timed
runs, onnxruntime's profiler (what INT8 really executes) and the study's table layout."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy.results.model import HostResult, load_result
from deploy.results.render import render_tables
from deploy.results.sections.sweep import best_lines, cells, parse_sweep, sweep_section
from deploy.results.study import study_table
from retinaface.bench import telemetry
from retinaface.bench.ort_profile import int8_verdict, op_summary, profile_model
from retinaface.bench.run import BenchConfig, run_bench
from retinaface.bench.telemetry import Telemetry
from retinaface.detector import Detector
from retinaface.errors import ModelError
from retinaface.imageio import read_image
from retinaface.runner import main
from tests.paths import REPO

PROBE = REPO / "deploy" / "assets" / "probe.jpg"
GOLDEN = REPO / "tests" / "golden"
SWEEP = GOLDEN / "bench-sweep" / "local" / "bench.json"


def test_runner_sweeps_every_cell_in_interleaved_rounds(models_dir, tmp_path):
    out, progress = tmp_path / "bench.json", []
    argv = ["bench", "--models", str(models_dir), "--image", str(PROBE)]
    argv += ["--variants", "fp32,int8", "--threads", "1,2", "--size", "320x240,640x480"]
    argv += ["--runs", "2", "--warmup", "0", "--windows", "2", "--min-time", "0"]
    argv += ["--json", str(out), "--sample-every", "0"]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    keys = [
        f"{v} {s} {t}t" for s in ("320x240", "640x480") for t in (1, 2) for v in ("fp32", "int8")
    ]
    assert data["order"] == keys
    assert data["config"]["sizes"] == [[320, 240], [640, 480]]
    assert data["config"]["thread_counts"] == [1, 2]
    for key in keys:
        record = data["variants"][key]
        variant, size, threads = key.split()
        assert record["status"] == "ok" and record["faces"] == 11
        assert record["cell"] == {
            "variant": variant,
            "size": [int(n) for n in size.split("x")],
            "threads": int(threads[:-1]),
        }
        assert record["input_size"] == record["cell"]["size"]
        assert [w["runs"] for w in record["windows"]] == [1, 1]

    # The order of the timed windows: round 1 in cell order, round 2 starting one cell later.
    config = BenchConfig(
        models_dir=str(models_dir),
        image=str(PROBE),
        variants=["fp32", "int8"],
        sizes=[(320, 240)],
        thread_counts=[1, 2],
        runs=2,
        warmup=0,
        windows=2,
        min_time_s=0.0,
        sample_every_s=0,
    )
    run_bench(config, progress=progress.append)
    # One entry per window (a window may also report while it runs: consecutive repeats fold).
    timed = [
        key for key, _ in itertools.groupby(e["variant"] for e in progress if e["phase"] == "timed")
    ]
    first = ["fp32 320x240 1t", "int8 320x240 1t", "fp32 320x240 2t", "int8 320x240 2t"]
    assert timed == first + first[1:] + first[:1]


def test_sweep_flags_are_checked():
    assert parse_sweep("320x240,640x480,320x240", "1,2", "10") == (
        [(320, 240), (640, 480)],
        [1, 2],
        10.0,
    )
    assert parse_sweep("640x480", None, None) == ([(640, 480)], [None], None)
    for args, words in (
        (("320x240,abc", None, None), "--size 'abc'"),
        (("320x240", "1,0", None), "--threads '0'"),
        (("320x240", "two", None), "--threads 'two'"),
        (("320x240", None, "fast"), "--target-fps 'fast'"),
        (("320x240", None, "-3"), "must be above 0"),
    ):
        with pytest.raises(ModelError, match=words):
            parse_sweep(*args)


def test_recorded_sweep_renders_the_golden_tables():
    result = load_result(SWEEP, "local")
    texts = render_tables([result], "sweep", target_fps=5.0)
    assert texts["table.md"] == (GOLDEN / "table-sweep.md").read_text()
    html = texts["report.html"]
    assert html.count('<svg class="sweep"') == 2  # one latency-vs-threads chart per size
    assert "end-to-end p50 against threads at 320x240" in html


def test_best_and_target_lines_pick_the_right_cells():
    def rec(p50, fps, valid=True):
        return {"status": "ok", "valid": valid, "fps": fps, "stages": {"e2e": {"p50": p50}}}

    found = [
        ("fp32", (320, 240), 1, rec(40, 25)),
        ("fp32", (320, 240), 2, rec(30, 33)),
        ("fp32", (640, 480), 1, rec(120, 8)),
        ("fp32", (640, 480), 2, rec(20, 50, valid=False)),  # fastest, but throttled: ignored
        ("fp32", (640, 480), 4, rec(60, 16)),
    ]
    (line,) = best_lines(found, 15.0)
    assert line.startswith("fp32: fastest 30.0 ms (33.0 FPS) at 320x240, 2 threads")
    # Fewest threads first (1), then the largest size that still reaches 15 FPS at 1 thread.
    assert line.endswith("reaches 15 FPS with 1 thread at 320x240 (25.0 FPS)")
    (line,) = best_lines(found, 100.0)
    assert line.endswith("no cell reaches 100 FPS")


def test_hostile_sweep_fields_are_ignored_not_rendered():
    data = json.loads(SWEEP.read_text())
    first = data["order"][0]
    data["variants"][first]["cell"] = {"variant": "<script>", "size": [1, 2], "threads": 1}
    data["variants"][data["order"][1]]["cell"]["size"] = ["320", 240]
    record = data["variants"][data["order"][2]]
    record["profile"] = {"ops": {"Conv<img src=x>": {"count": 1, "share": 1.0}}, "kind": "evil"}
    record["telemetry"]["trace"] = [{"temperature_c": float("inf"), "throttled": "0x5"}]
    result = HostResult("local", SWEEP, data)
    assert [c[0] for c in cells(result)].count("<script>") == 0
    texts = render_tables([result], "t")
    for text in texts.values():
        assert "<script>" not in text and "<img" not in text
    section = sweep_section(result)
    assert len(cells(result)) == len(data["order"]) - 2
    assert section["tables"]


def _flip_sysfs(root: Path, value: str) -> None:
    path = root / "sys/devices/platform/soc/soc:firmware/get_throttled"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)


def test_a_throttle_in_the_middle_of_a_cell_makes_only_that_cell_invalid(models_dir, tmp_path):
    """Before and after every cell the firmware reports 0; between them, while the 2-thread
    cell runs its first window, it reports under-voltage and throttling (0x50005)."""
    root = tmp_path / "root"
    _flip_sysfs(root, "0")
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("48000\n")

    def read():
        return telemetry.sample(str(root), telemetry.no_vcgencmd)

    sampler = telemetry.Sampler(0.02, read)
    flips = iter(["50005", "0"])

    def progress(event):
        if event["phase"] == "timed":  # after each window: flip for the next one, then back
            _flip_sysfs(root, next(flips, "0"))

    config = BenchConfig(
        models_dir=str(models_dir),
        image=str(PROBE),
        variants=["fp32"],
        sizes=[(320, 240)],
        thread_counts=[1, 2],
        runs=2,
        warmup=0,
        windows=2,
        min_time_s=0.6,  # each window lasts 0.3 s: many samples in each
        telemetry_root=str(root),
    )
    snapshot = lambda r: Telemetry(time=0.0, throttled=0, throttled_hex="0x0")  # noqa: E731
    result = run_bench(config, progress=progress, snapshot=snapshot, sampler=sampler)
    one, two = result["variants"]["fp32 320x240 1t"], result["variants"]["fp32 320x240 2t"]
    assert one["valid"] is True, one["invalid_reasons"]
    assert two["valid"] is False
    assert two["invalid_reasons"][0].startswith(
        "throttle bits changed during the timed runs: 0x0 -> 0x50005"
    )
    trace = two["telemetry"]["trace"]
    assert len(trace) >= 5 and {s["temperature_c"] for s in trace} == {48.0}
    assert 0x50005 in {s["throttled"] for s in trace}
    assert {s["throttled"] for s in one["telemetry"]["trace"]} == {0}


def test_trace_validity_current_bits_without_a_change():
    before = Telemetry(time=0.0, throttled=0x4, throttled_hex="0x4")
    (reason,) = telemetry.trace_validity([{"throttled": 0x4}], before)
    assert reason == "throttled during the timed runs: currently throttled"
    assert telemetry.trace_validity([{"throttled": None}], before) == []


def test_profile_of_the_real_models_names_what_ran(models_dir):
    image = read_image(PROBE)
    blob = Detector(models_dir / "fp32-opt.onnx", size=(320, 240)).preprocess(image)
    fp32 = profile_model(models_dir / "fp32-opt.onnx", blob, threads=1, runs=2)
    assert fp32["kind"] == "float"
    # x86 onnxruntime re-optimizes FusedConv into its NCHWc Conv at load; ARM keeps FusedConv.
    convs = sum(fp32["ops"].get(op, {}).get("count", 0) for op in ("Conv", "FusedConv"))
    assert convs >= 50
    assert abs(sum(op["share"] for op in fp32["ops"].values()) - 1.0) < 0.01
    int8 = profile_model(models_dir / "int8.onnx", blob, threads=1, runs=2)
    assert int8["ops"]["QLinearConv"]["count"] > 30
    assert int8["kind"] in ("integer", "mixed")
    qop = profile_model(models_dir / "int8-qop.onnx", blob, threads=1, runs=2)
    assert qop["ops"]["QLinearConv"]["count"] == 47
    assert qop["ops"]["QLinearLeakyRelu"]["count"] == 38 and "LeakyRelu" not in qop["ops"]


def test_op_summary_reads_a_real_profiler_file(models_dir, tmp_path):
    """A profile written by onnxruntime itself, then parsed: every node event is counted once per
    node name, and only kernel events count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "p")
    session = ort.InferenceSession(str(models_dir / "int8.onnx"), options)
    blob = np.zeros((1, 3, 64, 64), np.float32)
    session.run(None, {session.get_inputs()[0].name: blob})
    events = json.loads(Path(session.end_profiling()).read_text())
    ops = op_summary(events)
    nodes = {e["name"] for e in events if e.get("cat") == "Node" and "kernel_time" in e["name"]}
    assert sum(op["count"] for op in ops.values()) == len(nodes)


def test_int8_verdicts():
    def ops(**counts):
        return {name: {"count": n, "us": 1.0, "share": 0.1} for name, n in counts.items()}

    assert int8_verdict(ops(QLinearConv=47, QuantizeLinear=1))[0] == "integer"
    kind, text = int8_verdict(ops(Conv=47, DequantizeLinear=49, QuantizeLinear=51))
    assert kind == "fallback" and "fell back to float" in text
    assert int8_verdict(ops(QLinearConv=47, Conv=9, DequantizeLinear=9))[0] == "mixed"
    assert int8_verdict(ops(Conv=56))[0] == "float"


def test_study_layout_has_the_study_rows_and_numbers():
    text = study_table([load_result(SWEEP, "local")])
    assert "| model | measured here | study Pi 4 (published, not measured here) |" in text
    assert "| PyTorch | not run | 3,700–4,200 |" in text
    assert "| ONNX INT8 |" in text and "| ONNX optimized |" in text
    assert "## local: 320x240, 1 thread" in text and "## local: 640x480, 2 threads" in text


def test_cli_sweep_on_the_local_host_writes_the_8_cell_tables(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "all:\n  hosts:\n    local:\n      connection: local\n"
        f"      deploy_dir: {tmp_path / 'deploy'}\n"
    )
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "invoke", "remote-bench", "--host", "local",
            "--inventory", str(inventory), "--out", str(out),
            "--threads", "1,2", "--size", "320x240,640x480", "--variants", "fp32,int8",
            "--runs", "2", "--warmup", "0", "--min-time", "0", "--target-fps", "1", "--profile",
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # the venv's own runner
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stamp = next(out.iterdir())
    table = (stamp / "table.md").read_text()
    assert "## local: sweep, end to end p50 (FPS)" in table
    assert "### 320x240" in table and "### 640x480" in table
    assert "| 1 thread |" in table and "| 2 threads |" in table
    assert table.count("- best: ") == 2 and "reaches 1 FPS" in table
    assert "what onnxruntime executed" in table and "QLinearConv" in table
    data = json.loads((stamp / "local" / "bench.json").read_text())
    assert len(data["order"]) == 8
    assert all(data["variants"][k]["status"] == "ok" for k in data["order"])
    html = (stamp / "report.html").read_text()
    assert html.count('<svg class="sweep"') == 2
    study = subprocess.run(
        [sys.executable, "-m", "invoke", "report", str(stamp), "--style", "study"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert study.returncode == 0, study.stderr
    assert "| ONNX INT8 |" in study.stdout and (stamp / "study.md").is_file()
