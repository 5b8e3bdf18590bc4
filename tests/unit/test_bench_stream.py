"""Stream FPS against single-frame latency: `runner bench --stream` (what `invoke remote-bench
--stream` runs on each host) and its section in the reports."""

from __future__ import annotations

import json

from deploy.results.model import HostResult
from deploy.results.render import render_tables
from deploy.results.sections.stream import stream_rows
from retinaface.bench.run import STREAM_FRAMES, STREAM_ROUNDS
from retinaface.runner import main
from tests.paths import REPO

PROBE = REPO / "deploy" / "assets" / "probe.jpg"


def _bench(models_dir, tmp_path, *extra):
    out = tmp_path / "bench.json"
    argv = ["bench", "--models", str(models_dir), "--image", str(PROBE), "--size", "320x240"]
    argv += ["--runs", "2", "--warmup", "0", "--windows", "1", "--min-time", "0"]
    argv += ["--sample-every", "0", "--json", str(out), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_runner_bench_stream_measures_each_onnx_variant(models_dir, tmp_path):
    data = _bench(models_dir, tmp_path, "--variants", "fp32,int8-qop,torch", "--stream")
    for variant in ("fp32", "int8-qop"):
        record = data["variants"][variant]
        stream = record["stream"]
        assert record["status"] == "ok" and stream["model"] == f"{variant}.onnx"
        assert stream["size"] == "320x240" and stream["rounds"] == STREAM_ROUNDS
        assert stream["stream_frames"] == STREAM_FRAMES * STREAM_ROUNDS
        assert stream["e2e_ms"] > 0 and stream["stream_fps"] > 0
        assert abs(stream["single_frame_fps"] - 1000.0 / stream["e2e_ms"]) < 0.5
        assert abs(stream["ratio"] - stream["stream_fps"] / stream["single_frame_fps"]) < 0.01
        # The video plays three times faster than inference: frames must have been dropped.
        assert stream["stream_dropped"] > 0
    assert "stream" not in data["variants"]["torch"]  # the stream pipeline is ONNX-only

    texts = render_tables([HostResult("local", tmp_path / "bench.json", data)], "stream")
    md = texts["table.md"]
    assert "## local: stream against single frame (--stream)" in md
    rows = [line for line in md.splitlines() if line.startswith(("| fp32 |", "| int8-qop |"))]
    assert len(rows) == 2 and all("320x240" in row for row in rows)
    assert "stream against single frame" in texts["report.html"]


def test_without_the_flag_no_stream_is_measured_or_shown(models_dir, tmp_path):
    data = _bench(models_dir, tmp_path, "--variants", "fp32")
    assert "stream" not in data["variants"]["fp32"]
    texts = render_tables([HostResult("local", tmp_path / "bench.json", data)], "plain")
    assert "stream against single frame" not in texts["table.md"]


def test_hostile_stream_records_are_left_out():
    def record(stream):
        return {"status": "ok", "cell": {"variant": "fp32", "size": [320, 240], "threads": 2},
                "stream": stream}  # fmt: skip

    good = {"e2e_ms": 40.0, "single_frame_fps": 25.0, "stream_fps": 24.0, "ratio": 0.96,
            "busy_share": 0.98, "stream_frames": 60, "stream_dropped": 80}  # fmt: skip
    data = {
        "order": ["a", "b", "c", "d"],
        "variants": {
            "a": record(good),
            "b": record(dict(good, stream_fps=float("nan"))),
            "c": record(dict(good, ratio="<script>")),
            "d": record(dict(good, stream_dropped="<b>many</b>")),
        },
    }
    rows = stream_rows(HostResult("evil", None, data))
    assert [row["stream_fps"] for row in rows] == ["24.00", "24.00"]
    assert rows[0]["ratio"] == "0.96×" and rows[0]["meets_goal"]
    assert rows[1]["frames"] == "?"  # a count that is not a count is not printed
