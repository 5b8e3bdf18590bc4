"""What a hostile host can put into bench.json: formulas, markup, odd types, terminal escapes.

Each test crafts a result file the way a compromised Pi could write it and checks the tables,
the report task and the terminal text neutralise it.
"""

import copy
import csv
import io
import json
from pathlib import Path

import pytest

from deploy.report import load_results, render_tables

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
