"""Counted instructions where users look: bench.json's `counts` record (checked at the edge),
the "counted on <cpu>" section of table.md / report.html, and `invoke count`'s bad input."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.results.model import load_results
from deploy.results.render import render_tables

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "tests" / "golden" / "bench-runs" / "local" / "bench.json"
MIX = {"simd": 600_000_000, "fp": 20_000_000, "int": 150_000_000, "ldst": 200_000_000,
       "branch": 30_000_000}  # fmt: skip


def _record(variant, scale):
    mix = {k: int(v * scale) for k, v in MIX.items()}
    e2e = sum(mix.values())
    return {"host": "local", "variant": variant, "cpu": "cortex-a72", "qemu_cpu": "cortex-a15",
            "target": "arm", "size": "640x480", "pre": e2e // 100, "infer": e2e - e2e // 10,
            "post": e2e // 10 - e2e // 100, "e2e": e2e, "mix": {s: dict(mix) for s in
            ("pre", "infer", "post", "e2e")},
            "predicted_ms": {"low": 500.0 * scale, "mid": 600.0 * scale, "high": 700.0 * scale,
                             "model": "1 CPI factor (test)"}}  # fmt: skip


COUNTS = {"format": 1, "records": [_record("study", 2.0), _record("fp32", 1.0),
          {"host": "local", "variant": "opencv", "cpu": "cortex-a72", "qemu_cpu": "cortex-a15",
           "size": "640x480", "skipped": "needs fp32-static-640x480"}]}  # fmt: skip


def _results(tmp_path, counts):
    data = json.loads(BENCH.read_text())
    data["counts"] = counts
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "bench.json").write_text(json.dumps(data))
    return load_results(tmp_path)


def test_the_report_shows_counted_instructions_apart_from_times(tmp_path):
    texts = render_tables(_results(tmp_path, COUNTS), "counts")
    md = texts["table.md"]
    assert "## local: counted on cortex-a72 (instructions per frame, millions)" in md
    assert "instructions, not a time" in md
    assert "| fp32 | 10.0 | 900.0 | 90.0 | 1,000.0 | simd 60% fp 2% int 15% ldst 20% branch 3% |" in md
    assert "| 0.50 | 600 (500–700) |" in md  # ours / study, then the prediction
    assert "predicted ms (1 CPI factor (test))" in md
    assert "opencv" not in md.split("counted on cortex-a72")[1]  # skipped: no row
    html = texts["report.html"]
    assert "<h2>local: counted on cortex-a72 (instructions per frame, millions)</h2>" in html
    plain = render_tables(load_results(BENCH.parents[1]), "plain")["table.md"]
    assert "counted on" not in plain  # no counts record, no section


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda c: c.update(format=2), "counts.format"),
        (lambda c: c["records"][1].update(e2e=1.5), "counts.records[1].e2e"),
        (lambda c: c["records"][1].update(infer=-1), "counts.records[1].infer"),
        (lambda c: c["records"][1].update(infer=True), "counts.records[1].infer"),
        (lambda c: c["records"][1]["mix"]["e2e"].pop("simd"), "counts.records[1].mix.e2e.simd"),
        (lambda c: c["records"][0].update(variant=["x"]), "counts.records[0].variant"),
        (lambda c: c["records"][1]["predicted_ms"].update(mid="fast"), "predicted_ms.mid"),
    ],
)
def test_a_bad_counts_record_is_one_error_naming_the_field(tmp_path, mutate, words):
    counts = copy.deepcopy(COUNTS)
    mutate(counts)
    with pytest.raises(DeployError, match=words.replace("[", r"\[").replace("]", r"\]")):
        _results(tmp_path, counts)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--host", "nope"], "--host nope: counting runs on an emulated Pi"),
        (["--host", "pi4-emu", "--size", "64"], "--size"),
        (["--host", "pi4-emu", "--cpu", "cortex-a53"], "--cpu cortex-a53: choose"),
        (["--host", "pi4-emu", "--variants", "fp16"], "--variants fp16: choose from"),
        (["--host", "pi4-emu", "--frames", "1"], "--frames 1: at least 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args, words):
    out = subprocess.run([sys.executable, "-m", "invoke", "count", *args], cwd=str(REPO),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: ") and words in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
