"""What a hostile host can put into bench.json: formulas, markup, odd types, terminal escapes.

Each test crafts a result file the way a compromised Pi could write it and checks the tables,
the report task and the terminal text neutralise it.
"""

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.results.model import load_results
from deploy.results.render import render_tables
from tests.paths import REPO

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOOD = json.loads((GOLDEN / "bench-runs" / "local" / "bench.json").read_text())


def write_host(root: Path, name: str, data) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    path = folder / "bench.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def crafted(**changes) -> dict:
    data = copy.deepcopy(GOOD)
    data.pop("inventory_host", None)  # the folder name names the host
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split(".")
        for key in parents:
            target = target[key]
        target[last] = value
    return data


FORMULAS = [
    '=HYPERLINK("http://x","y")',
    "=cmd|' /C calc'!A0",
    "@SUM(A1:A2)",
    "+1+2",
    "-2+3",
    "\t=1",
    "\r=1",
]


def test_csv_cells_from_hosts_cannot_be_formulas(tmp_path):
    data = crafted()
    data["order"] = ["fp32"] + [f"v{i}" for i in range(len(FORMULAS))]
    for i, formula in enumerate(FORMULAS):
        record = copy.deepcopy(GOOD["variants"]["fp32"])
        record.update(status="skipped", skipped=formula, backend=formula)
        data["variants"][f"v{i}"] = record
    data["variants"]["fp32"]["backend"] = "=1+1"
    write_host(tmp_path, "pi", data)
    text = render_tables(load_results(tmp_path), "t")["table.csv"]
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            if cell.startswith("-"):
                float(cell)  # only a number may start with a minus
    notes = [row["note"] for row in rows if row["variant"].startswith("v")]
    assert notes == ["'" + formula for formula in FORMULAS]
    fp32 = next(r for r in rows if r["variant"] == "fp32" and r["stage"] == "e2e")
    assert fp32["backend"] == "'=1+1"
    assert float(fp32["p50"]) == pytest.approx(GOOD["variants"]["fp32"]["stages"]["e2e"]["p50"])


def test_markdown_escapes_html_from_hosts(tmp_path):
    data = crafted(
        **{"host.cpu": "<script>alert(1)</script>", "warnings": ['"><svg onload=alert(2)>']}
    )
    data["variants"]["int8"].update(status="skipped", skipped="<img src=x onerror=alert(3)>")
    data["inventory_host"] = "<b>pi</b>"
    write_host(tmp_path, "pi", data)
    text = render_tables(load_results(tmp_path), "t")["table.md"]
    assert "<" not in text
    assert "&lt;script>alert(1)&lt;/script>" in text
    assert '- warning: ">&lt;svg onload=alert(2)>' in text
    assert "## &lt;b>pi&lt;/b>" in text
    assert "int8: skipped — &lt;img src=x onerror=alert(3)>" in text


BAD_FILES = [
    ('"p90": Infinity', "variants.fp32.stages.e2e.p90", "not JSON (Infinity"),
    ("versions as a list", "host.versions", "is not an object"),
    ("fps NaN", "variants.fp32.fps", "not JSON (NaN"),
    ("size as text", "config.size", "is not a [width, height] pair"),
    ("faces a float", "variants.fp32.faces", "is not an integer"),
    ("valid as text", "variants.fp32.valid", "is not a bool"),
    ("huge cpu name", "host.cpu", "is longer than"),
    ("warnings a dict", "warnings", "is not a list"),
    ("loadavg text", "telemetry.start.loadavg[0]", "is missing or not a number"),
    ("p50 negative", "variants.fp32.stages.pre.p50", "is below 0"),
    ("p90 1e999", "variants.fp32.stages.e2e.p90", "is not a finite number"),
]


def bad_file(kind: str) -> str:
    data = crafted()
    fp32 = data["variants"]["fp32"]
    if kind.startswith('"p90"'):
        return json.dumps(data).replace(
            f'"p90": {json.dumps(fp32["stages"]["e2e"]["p90"])}', '"p90": Infinity', 1
        )
    if kind == "fps NaN":
        fp32["fps"] = float("nan")
        return json.dumps(data)
    if kind == "p90 1e999":
        return json.dumps(data).replace(
            f'"p90": {json.dumps(fp32["stages"]["e2e"]["p90"])}', '"p90": 1e999', 1
        )
    changes = {
        "versions as a list": ("host.versions", ["onnxruntime", "1.8"]),
        "size as text": ("config.size", "640x480"),
        "faces a float": ("variants.fp32.faces", 1.5),
        "valid as text": ("variants.fp32.valid", "yes"),
        "huge cpu name": ("host.cpu", "x" * 100000),
        "warnings a dict": ("warnings", {"a": 1}),
        "loadavg text": ("telemetry.start.loadavg", ["high"]),
        "p50 negative": ("variants.fp32.stages.pre.p50", -1.0),
    }
    key, value = changes[kind]
    return json.dumps(crafted(**{key: value}))


@pytest.mark.parametrize("kind, field, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_crafted_bench_json_is_one_line_naming_the_field(tmp_path, kind, field, words):
    path = write_host(tmp_path, "pi", bad_file(kind))
    with pytest.raises(DeployError) as error:
        load_results(tmp_path)
    message = str(error.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message
    if "not JSON" not in words:
        assert f"field {field} " in message


def test_report_renders_the_good_hosts_and_names_the_bad_ones(tmp_path):
    """`invoke report` once died with a traceback on one bad host and wrote nothing."""
    run = tmp_path / "run"
    write_host(run, "pi-inf", bad_file('"p90": Infinity'))
    write_host(run, "pi-list", bad_file("versions as a list"))
    write_host(run, "pi-good", crafted())
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "report", str(run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    left_out = [line for line in result.stdout.splitlines() if line.startswith("left out: ")]
    assert len(left_out) == 2
    assert "pi-inf/bench.json: not JSON (Infinity" in left_out[0]
    assert "pi-list/bench.json: field host.versions is not an object" in left_out[1]
    table = (run / "table.md").read_text()
    assert "## pi-good" in table and "pi-inf" not in table and "pi-list" not in table
    assert sorted(p.name for p in run.iterdir()) == [
        "pi-good",
        "pi-inf",
        "pi-list",
        "report.html",
        "table.csv",
        "table.md",
    ]


ESCAPES = "\x1b[2J\x1b[HFAKE: all targets met\x07\x9b31m\u202e"


def invoke(*argv):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_safe_text_shows_control_characters():
    from deploy.console import safe_text

    assert (
        safe_text("a\x1b[2Jb\tc\nd\re\x7f\x9b\u202ef") == "a\\x1b[2Jb\tc\nd\\x0de\\x7f\\x9b\\u202ef"
    )
    assert safe_text("plain ünïcode — 12 ms") == "plain ünïcode — 12 ms"


def test_report_prints_no_escape_sequence_from_a_host(tmp_path):
    """A warning with an escape sequence once cleared the screen and printed a fake verdict."""
    data = crafted(**{"warnings": [ESCAPES], "host.cpu": ESCAPES})
    write_host(tmp_path / "run", "pi", data)
    result = invoke("report", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    for char in "\x1b\x07\x9b\u202e":
        assert char not in result.stdout + result.stderr
    assert "\\x1b[2J\\x1b[HFAKE: all targets met\\x07\\x9b31m\\u202e" in result.stdout


def test_an_error_line_from_a_host_prints_no_escape_sequence(tmp_path):
    data = crafted()
    data["order"].append("\x1b]0;owned\x07ghost")
    write_host(tmp_path / "run", "pi", data)
    result = invoke("report", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "field variants.\\x1b]0;owned\\x07ghost is missing" in result.stderr
