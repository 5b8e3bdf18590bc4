"""The one report environment: table.md, table.csv and report.html from the sections, with the
CSV and Markdown escaping of text that came from hosts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import jinja2

from deploy.errors import DeployError
from deploy.paths import TEMPLATES
from deploy.results.model import collect_results
from deploy.results.sections.counts import count_sections
from deploy.results.sections.profile import profile_rows
from deploy.results.sections.stream import stream_rows, trace_rows
from deploy.results.sections.sweep import is_sweep, sweep_section
from deploy.results.sections.tables import CSV_COLUMNS, facts_table, table_context
from deploy.results.svg import chart, stage_chart
from retinaface.files import write_atomic as write_bytes_atomic


@dataclass
class ReportFiles:
    """What `render_reports` wrote, and the markdown table to print."""

    directory: Path
    paths: list = field(default_factory=list)
    markdown: str = ""
    failures: list = field(default_factory=list)  # one line per host whose bench.json is bad


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_field(value) -> str:
    """One CSV cell; a host's text that a spreadsheet would run as a formula gets a leading `'`."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text  # OWASP's CSV-injection advice; numbers like -1.5 stay numbers
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _md_cell(value) -> str:
    """Text for a Markdown table cell or line: HTML escaped (forges render inline HTML), one line."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;")  # no tag or entity can open
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """StrictUndefined; HTML templates autoescape (host names and messages come from hosts)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["csv"] = _csv_field
    env.filters["md"] = _md_cell
    return env


def render(name: str, **context) -> str:
    return _environment().get_template(name).render(**context)


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` atomically (temp name, then rename); returns the path."""
    write_bytes_atomic(path, text.encode("utf-8"))
    return Path(path)


def render_tables(results: list, title: str, target_fps: Optional[float] = None) -> dict:
    """{file name: text} of table.md, table.csv and report.html for `results`."""
    context = table_context(results, title)
    context.update(extra_sections(results, target_fps))
    context["csv_columns"] = CSV_COLUMNS
    context["chart"] = chart(results)
    context["stage_chart"] = stage_chart(results)
    context["facts"] = [facts_table(result) for result in results]
    return {
        "table.md": render("table.md.j2", **context),
        "table.csv": render("table.csv.j2", **context),
        "report.html": render("report.html.j2", **context),
    }


def render_reports(
    results_dir: Path, title: Optional[str] = None, target_fps: Optional[float] = None
) -> ReportFiles:
    """(Re-)render table.md, table.csv and report.html into `results_dir`.

    Hosts whose bench.json is bad are left out and listed in `failures`.
    """
    results_dir = Path(results_dir)
    results, failures = collect_results(results_dir)
    if not results:
        raise DeployError(failures[0] if len(failures) == 1 else "; ".join(failures)[:2000])
    texts = render_tables(
        results, title or f"RetinaFace mnet0.25 latency — {results_dir.name}", target_fps
    )
    files = ReportFiles(directory=results_dir, markdown=texts["table.md"], failures=failures)
    for name, text in texts.items():
        files.paths.append(write_atomic(results_dir / name, text))
    return files


def extra_sections(results: list, target_fps: Optional[float] = None) -> dict:
    """The sweep, profile and trace context for the templates (empty lists when absent)."""
    profiles = [{"host": r.host, "rows": profile_rows(r)} for r in results]
    traces = [{"host": r.host, "rows": trace_rows(r)} for r in results]
    streams = [{"host": r.host, "rows": stream_rows(r)} for r in results]
    return {
        "streams": [item for item in streams if item["rows"]],
        "sweeps": [sweep_section(r, target_fps) for r in results if is_sweep(r)],
        "profiles": [item for item in profiles if item["rows"]],
        "traces": [item for item in traces if item["rows"]],
        "counts": count_sections(results),  # bench.json "counts": `invoke count --into`
    }
