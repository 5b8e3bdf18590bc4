"""Report rendering against golden files, the schema check, the chart, HTML escaping, compare."""

import csv
import io
import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.hosts.scripts import render
from deploy.results import model, svg
from deploy.results.compare import compare
from deploy.results.model import load_results
from deploy.results.render import render_reports, render_tables
from deploy.results.sections.tables import facts_table, reference_rows
from deploy.workflow.remote_bench import BenchOptions, new_stamp, parse_poll, signal_name
from tests.fixtures.golden import check_golden

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RESULTS = GOLDEN / "bench-runs"  # two recorded bench.json: a real run here and a test fixture


def test_single_host_table_matches_golden():
    results = load_results(RESULTS / "local")
    texts = render_tables(results, "golden: one host")
    check_golden("table-local.md", texts["table.md"])


def test_two_host_tables_match_golden():
    results = load_results(RESULTS)
    assert [r.host for r in results] == ["fixture-b", "local"]
    texts = render_tables(results, "golden: two hosts")
    check_golden("table-two-hosts.md", texts["table.md"])
    check_golden("table-two-hosts.csv", texts["table.csv"])


def test_table_layout_and_reference_rows():
    text = render_tables(load_results(RESULTS / "local"), "t")["table.md"]
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| ms per frame"))
    assert header == "| ms per frame | torch | fp32 | fp32-opt | int8 | opencv |"
    rows = {line.split(" | ")[0].strip("| *"): line for line in lines if line.startswith("|")}
    for label in ("end to end p50 (ms)", "end to end p90 (ms)", "end to end p99 (ms)"):
        assert label in rows
    for label in ("FPS (median of windows)", "pre-process p50 (ms)", "inference p50 (ms)"):
        assert label in rows
    study = next(line for line in lines if line.startswith("| *study Pi 4"))
    assert "(published, not measured here)" in study
    assert study.endswith("| 3,700–4,200 | 520–570 | 490–530 |  |  |")
    # MNN's and ncnn's published numbers stand in their engines' columns, absent from this run.
    assert not any(line.startswith(("| *MNN", "| *ncnn")) for line in lines)
    rows = dict(reference_rows(["fp32", "mnn-fp32", "mnn-int8", "ncnn-fp32"]))
    mnn = rows["MNN Pi 4, 640×480, threads 4 (published, not measured here)"]
    ncnn = rows["ncnn Pi 4, 320×240, threads ? (published, not measured here)"]
    assert mnn == ["", "96", "61", ""] and ncnn == ["", "", "", "~35"]


def test_skipped_and_invalid_variants_are_marked():
    text = render_tables(load_results(RESULTS / "fixture-b"), "t")["table.md"]
    p50 = next(line for line in text.splitlines() if line.startswith("| end to end p50"))
    cells = [cell.strip() for cell in p50.strip("|").split("|")][1:]
    assert cells[0] == "skipped" and cells[3].endswith("⚠")
    assert "- torch: skipped — torch cannot be imported on this host" in text
    assert "- int8: INVALID — throttle bits changed 0x0 -> 0x20002" in text


def test_csv_is_long_format_and_parses():
    rows = list(csv.DictReader(io.StringIO(render_tables(load_results(RESULTS), "t")["table.csv"])))
    measured = [r for r in rows if r["kind"] == "measured"]
    local = [r for r in measured if r["host"] == "local"]
    assert {r["stage"] for r in local} == {"pre", "infer", "post", "e2e"}
    assert len(local) == 5 * 4
    fp32 = next(r for r in local if r["variant"] == "fp32" and r["stage"] == "e2e")
    data = json.loads((RESULTS / "local" / "bench.json").read_text())
    assert float(fp32["p50"]) == pytest.approx(data["variants"]["fp32"]["stages"]["e2e"]["p50"])
    published = [r for r in rows if r["kind"] == "published, not measured here"]
    assert {"3,700–4,200", "96", "61"} <= {r["p50"] for r in published}
    skipped = next(r for r in measured if r["host"] == "fixture-b" and r["variant"] == "torch")
    assert skipped["status"] == "skipped" and "cannot be imported" in skipped["note"]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "rect", "line"):
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in ("rect", "line"):
            return
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_has_a_chart_and_host_facts():
    html = render_tables(load_results(RESULTS), "t")["report.html"]
    parser = _Collect()
    parser.feed(html)
    assert parser.stack == []
    rects = [attrs for tag, attrs in parser.tags if tag == "rect" and "width" in attrs]
    # Main chart: 3 legend boxes + 3 stage segments for each of the 9 variants that ran (5 + 4);
    # pre/post chart: 2 legend boxes + 2 segments each.
    assert len(rects) == 3 + 3 * 9 + 2 + 2 * 9
    text = " ".join(parser.text)
    assert "fixture-b · int8 ⚠" in text and "local · fp32" in text
    assert "Host facts" in text and "not a Raspberry Pi" in text
    assert "published, not measured here" in text


def test_html_escapes_what_hosts_report(tmp_path):
    host = tmp_path / "evil"
    host.mkdir()
    data = json.loads((RESULTS / "local" / "bench.json").read_text())
    data["host"]["cpu"] = "<script>alert(1)</script>"
    (host / "bench.json").write_text(json.dumps(data))
    html = render_tables(load_results(tmp_path), "t")["report.html"]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_chart_scale_and_bars():
    geometry = svg.chart(load_results(RESULTS / "local"))
    assert geometry["ticks"][-1]["label"] == "1,000 ms"  # torch p90 ~ 800 ms → nice max 1000
    torch_row = geometry["rows"][0]
    widths = sum(segment["w"] for segment in torch_row["segments"])
    plot = geometry["ticks"][-1]["x"] - geometry["ticks"][0]["x"]
    data = json.loads((RESULTS / "local" / "bench.json").read_text())["variants"]["torch"]
    mean_sum = sum(data["stages"][s]["mean"] for s in ("pre", "infer", "post"))
    assert widths == pytest.approx(plot * mean_sum / 1000.0, abs=0.05)
    # each mark is labelled with the statistic it shows: the bar its mean, the tick its p90
    p90 = data["stages"]["e2e"]["p90"]
    assert torch_row["value"] == f"mean {model.ms_text(mean_sum)} ms · p90 {model.ms_text(p90)} ms"
    assert torch_row["tick_x"] == pytest.approx(geometry["left"] + plot * p90 / 1000.0, abs=0.01)
    stages = svg.stage_chart(load_results(RESULTS / "local"))
    assert stages["ticks"][-1]["label"] != "1,000 ms"  # pre/post on their own, finer scale
    assert (
        svg.nice_max(0.7) == 1.0 and svg.nice_max(34) == 50 and svg.nice_max(101) == 200
    )


def test_render_reports_writes_three_files(tmp_path):
    shutil.copytree(RESULTS, tmp_path / "run")
    files = render_reports(tmp_path / "run")
    assert sorted(p.name for p in files.paths) == ["report.html", "table.csv", "table.md"]
    assert (tmp_path / "run" / "table.md").read_text() == files.markdown
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.pop("variants"), "field variants is missing"),
        (
            lambda d: d["variants"]["fp32"]["stages"]["e2e"].pop("p99"),
            "variants.fp32.stages.e2e.p99",
        ),
        (lambda d: d["variants"]["int8"].pop("valid"), "field variants.int8.valid is missing"),
        (lambda d: d.update(format=7), "unknown format 7"),
        (lambda d: d["order"].append("ghost"), "field variants.ghost is missing"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, mutate, words):
    data = json.loads((RESULTS / "local" / "bench.json").read_text())
    mutate(data)
    path = tmp_path / "h" / "bench.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(DeployError) as error:
        load_results(tmp_path)
    assert str(path) in str(error.value) and words in str(error.value)


def test_missing_results_are_clear(tmp_path):
    with pytest.raises(DeployError, match="no <host>/bench.json"):
        load_results(tmp_path)
    with pytest.raises(DeployError, match="no such results folder"):
        load_results(tmp_path / "nope")
    with pytest.raises(DeployError, match="no results yet"):
        model.latest_results(tmp_path)


def test_compare_shows_deltas(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(RESULTS, new)
    old = tmp_path / "old"
    shutil.copytree(RESULTS / "local", old / "local")
    data = json.loads((old / "local" / "bench.json").read_text())
    data["variants"]["fp32"]["stages"]["e2e"]["p50"] = 50.0
    data["config"]["threads"] = 4
    (old / "local" / "bench.json").write_text(json.dumps(data))
    text = compare(new, old)
    p50 = json.loads((new / "local" / "bench.json").read_text())["variants"]["fp32"]["stages"]
    p50 = p50["e2e"]["p50"]
    line = next(row for row in text.splitlines() if row.startswith("| local | fp32 |"))
    assert f"({p50 - 50.0:+.1f} ms, {100 * (p50 - 50.0) / 50.0:+.1f} %)" in line
    assert "threads None vs 4" in line
    assert "- fixture-b: only in the new run" in text


# --- the remote side of deploy/workflow/remote_bench.py: its scripts and the parsing of their output -------


def test_bench_scripts_render_and_pass_bash_n_and_shellcheck(tmp_path):
    options = BenchOptions(threads=4, variants=["fp32", "int8"], cooldown_below_c=65.0)
    args = options.runner_args("/d/current/models", "/d/current/probe.jpg", "/r/b.json", "/r/p")
    assert args[args.index("--size") + 1] == "640x480"
    assert args[args.index("--variants") + 1] == "fp32,int8"
    assert args[args.index("--cooldown-below") + 1] == "65.0"
    scripts = {
        "run": render("bench_run.sh.j2", run_dir="/r x", python="/d/venv/bin/python", args=args),
        "poll": render("bench_poll.sh.j2", run_dir="/r x", kill=False),
        "stop": render("bench_poll.sh.j2", run_dir="/r x", kill=True),
    }
    for name, text in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, f"{name}: {check.stderr}"
        lint = subprocess.run(
            ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True
        )
        assert lint.returncode == 0, f"{name}: {lint.stdout}"
    assert "'/r x'" in scripts["run"] and "kill -TERM" in scripts["stop"]
    assert "kill -TERM" not in scripts["poll"]


def test_bench_scripts_run_a_detached_command_and_poll_it(tmp_path):
    """The real scripts on this machine, with a stand-in "python" that exits 3."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "args: $*" >&2\nexit 3\n')
    fake.chmod(0o755)
    run_dir = tmp_path / "run"
    script = render("bench_run.sh.j2", run_dir=str(run_dir), python=str(fake), args=["--x", "a b"])
    started = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert started.returncode == 0 and started.stdout.startswith("started ")
    poll = render("bench_poll.sh.j2", run_dir=str(run_dir), kill=False)
    for _ in range(100):
        state = parse_poll(
            subprocess.run(["bash", "-c", poll], capture_output=True, text=True).stdout
        )
        if state["rc"] is not None:
            break
        time.sleep(0.05)
    assert state["rc"] == 3
    stderr = (run_dir / "stderr.log").read_text()
    assert stderr == "args: -B -m retinaface.runner bench --x a b\n"


def test_parse_poll_and_exit_names():
    text = 'progress {"variant": "fp32", "phase": "timed", "done": 3}\nrc 139\nalive no\n'
    assert parse_poll(text) == {
        "progress": {"variant": "fp32", "phase": "timed", "done": 3},
        "rc": 139,
        "alive": False,
    }
    assert parse_poll("alive yes\n") == {"progress": None, "rc": None, "alive": True}
    assert signal_name(139) == "killed by signal 11 (SIGSEGV)"
    assert signal_name(137) == "killed by signal 9 (SIGKILL)"
    assert signal_name(1) == "exit 1"


def test_new_stamp_never_reuses_a_folder(tmp_path):
    first = new_stamp(tmp_path)
    (tmp_path / first).mkdir()
    second = new_stamp(tmp_path)
    assert second != first and second.startswith(first)


def test_host_facts_rows_are_not_repeated():
    """Deploy's probe and the runner both report kernel and Pi model: each key shows once."""
    results = model.load_results(
        Path(__file__).resolve().parent.parent / "golden" / "bench-runs" / "local"
    )
    for result in results:
        result.data.setdefault("facts", {}).update({"kernel": "6.1", "pi model": "Raspberry Pi 4"})
        keys = [key for key, _ in facts_table(result)["rows"]]
        assert len(keys) == len(set(keys))
        assert "runner host" in keys and "versions" in keys


def test_emulated_timings_are_labelled_in_every_table(tmp_path):
    """A host whose facts say qemu-user is marked as emulated in table.md, table.csv and HTML."""
    for name in ("local", "fixture-b"):
        shutil.copytree(RESULTS / name, tmp_path / name)
    path = tmp_path / "fixture-b" / "bench.json"
    data = json.loads(path.read_text())
    data.setdefault("facts", {})["emulated"] = "qemu-user"
    path.write_text(json.dumps(data))
    texts = render_tables(load_results(tmp_path), "emulated")
    md = texts["table.md"]
    assert "## fixture-b (emulated)" in md and "## local\n" in md
    assert "warning: EMULATED: an ARM userland under qemu-user" in md
    assert "| variant | fixture-b (emulated) | local |" in md
    rows = list(csv.DictReader(io.StringIO(texts["table.csv"])))
    kinds = {(r["host"], r["kind"]) for r in rows if r["kind"] in ("measured", "emulated")}
    assert kinds == {("fixture-b", "emulated"), ("local", "measured")}
    html = texts["report.html"]
    assert "<h2>fixture-b (emulated)</h2>" in html and "EMULATED: an ARM userland" in html
    assert "<th>fixture-b (emulated)</th>" in html
