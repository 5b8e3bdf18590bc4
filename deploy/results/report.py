"""Latency tables from pulled benchmark results: table.md, table.csv, report.html (+ SVG chart).

    results/<stamp>/<host>/bench.json  →  results/<stamp>/{table.md, table.csv, report.html}

Variants are columns (the study's layout); several hosts also get one comparison table. The
study's Pi 4 numbers and published peer numbers (each with its source link) are reference rows marked
"published, not measured here". `compare()` gives per host and variant deltas of two runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import jinja2

from deploy.results.schema import check_bench, read_bench
from deploy.errors import DeployError
from deploy.paths import REPO_ROOT, RESULTS_DIR, TEMPLATES
from retinaface.files import write_atomic as write_bytes_atomic

STAGES = ("pre", "infer", "post", "e2e")
STAGE_NAMES = {
    "pre": "pre-process",
    "infer": "inference",
    "post": "post-process",
    "e2e": "end to end",
}
STATS = ("p50", "p90", "p99", "mean", "std", "min", "max")
PUBLISHED_MARK = "published, not measured here"


@dataclass(frozen=True)
class Published:
    """One published Pi 4 number (ms per frame) and where it was published."""

    source: str
    short: str  # the row label in the variant tables
    runtime: str
    size: str
    threads: str
    values: dict  # our variant name -> "520–570" (text: ranges stay ranges)
    note: str = ""
    url: str = ""  # where the number was published (none for the study's own table)


PUBLISHED = (
    Published(
        "the original study (Pi 4, armv7l)",
        "study",
        "PyTorch 1.7 / ONNX Runtime 1.9.1",
        "not stated",
        "default",
        {"torch": "3,700–4,200", "fp32": "520–570", "fp32-opt": "490–530"},
        'its "ONNX optimized" file was the unoptimized model saved again',
    ),
    Published(
        "MNN, RetinaFace mnet0.25 (MXNet weights)",
        "MNN",
        "MNN",
        "640×480",
        "4",
        {"fp32": "96", "int8": "61"},
        "1/2/3/4 threads: fp32 167/116/105/96, int8 183/102/76/61",
        "https://github.com/Charrin/RetinaFace-Cpp/issues/31",
    ),
    Published(
        "ncnn, RetinaFace mnet0.25",
        "ncnn",
        "ncnn",
        "320×240",
        "?",
        {"fp32": "~35"},
        "64-bit OS",
        "https://github.com/Qengineering/Face-Recognition-Raspberry-Pi-64-bits",
    ),
    Published(
        "YuNet (libfacedetection), a different detector",
        "YuNet",
        "libfacedetection",
        "640×480",
        "1 / 4",
        {},
        "640×480: 404.6 / 125.5 ms; 320×240: 105.7 / 33.0 ms",
        "https://github.com/ShiqiYu/libfacedetection#cnn-based-face-detection-on-arm-linux-raspberry-pi-4-b",
    ),
)


EMULATED_WARNING = (
    "EMULATED: an ARM userland under qemu-user on an x86 CPU; these timings are not a Pi's "
    "and not proportional to one"
)


@dataclass
class HostResult:
    """One host's pulled bench.json."""

    host: str
    path: Path
    data: dict

    @property
    def variants(self) -> list:
        return list(self.data["order"])

    def variant(self, name: str) -> Optional[dict]:
        return self.data["variants"].get(name)

    @property
    def emulated(self) -> bool:
        """Measured on an emulated Pi (deploy's facts: ARM userland on an x86 CPU, qemu-user)."""
        facts = self.data.get("facts") or {}
        return isinstance(facts, dict) and facts.get("emulated") not in (None, "no")

    @property
    def label(self) -> str:
        """The host's name as every table shows it: emulated timings say so."""
        return f"{self.host} (emulated)" if self.emulated else self.host


@dataclass
class ReportFiles:
    """What `render_reports` wrote, and the markdown table to print."""

    directory: Path
    paths: list = field(default_factory=list)
    markdown: str = ""
    failures: list = field(default_factory=list)  # one line per host whose bench.json is bad


def validate_result(data: dict, path: Path) -> None:
    """Check a bench.json against the runner's schema; the error names the file and field."""
    check_bench(data, path)


def load_result(path: Path, host: Optional[str] = None) -> HostResult:
    """One bench.json, read size-capped and validated (deploy.results.schema)."""
    path = Path(path)
    data = read_bench(path)
    return HostResult(host or data.get("inventory_host") or path.parent.name, path, data)


def load_results(results_dir: Path) -> list:
    """Every `<host>/bench.json` under a results folder (or the one in a host folder), by host."""
    results, failures = collect_results(results_dir)
    if failures:
        raise DeployError(failures[0])
    return results


def collect_results(results_dir: Path) -> tuple:
    """(results, failure lines): a bad host file is one line, the other hosts still load."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DeployError(f"{results_dir}: no such results folder")
    if (results_dir / "bench.json").is_file():
        return [load_result(results_dir / "bench.json")], []
    found = sorted(results_dir.glob("*/bench.json"))
    if not found:
        raise DeployError(f"{results_dir}: no <host>/bench.json inside")
    results, failures = [], []
    for path in found:
        try:
            results.append(load_result(path))
        except DeployError as error:
            failures.append(str(error))
    return results, failures


def latest_results(root: Path = RESULTS_DIR) -> Path:
    """The newest results/<stamp> folder."""
    stamps = sorted(p for p in Path(root).glob("*") if p.is_dir() and any(p.glob("*/bench.json")))
    if not stamps:
        raise DeployError(f"{root}: no results yet (run `invoke remote-bench` first)")
    return stamps[-1]


# --- the table model ---------------------------------------------------------------------


def _ms(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _cell(record: Optional[dict], value: Optional[float], fmt=_ms) -> str:
    if record is None:
        return "—"
    if record["status"] != "ok":
        return record["status"]
    text = fmt(value)
    return text if record["valid"] else f"{text} ⚠"


def variant_columns(results: list) -> list:
    """Variant names in first-seen order over all hosts."""
    names: list = []
    for result in results:
        names += [name for name in result.variants if name not in names]
    return names


def host_rows(result: HostResult, columns: list) -> list:
    """(label, cells) rows of one host's table, variants as columns."""
    records = [result.variant(name) for name in columns]

    def stat(stage, key):
        return [
            _cell(r, r["stages"][stage][key] if r and r["status"] == "ok" else None)
            for r in records
        ]

    rows = [(f"end to end {key} (ms)", stat("e2e", key)) for key in ("p50", "p90", "p99", "mean")]
    rows.append(
        (
            "FPS (median of windows)",
            [
                _cell(r, r["fps"] if r and r["status"] == "ok" else None, lambda v: f"{v:.1f}")
                for r in records
            ],
        )
    )
    for stage in ("pre", "infer", "post"):
        rows.append((f"{STAGE_NAMES[stage]} p50 (ms)", stat(stage, "p50")))
    for key, label in (("init_ms", "model load (ms)"), ("first_ms", "first frame (ms)")):
        rows.append(
            (
                label,
                [_cell(r, r.get(key) if r and r["status"] == "ok" else None) for r in records],
            )
        )
    rows.append(
        (
            "faces on the probe image",
            [_cell(r, r["faces"] if r and r["status"] == "ok" else None, str) for r in records],
        )
    )
    rows.append(
        (
            "valid",
            [
                "—"
                if r is None
                else ("yes" if r["valid"] else "no")
                if r["status"] == "ok"
                else r["status"]
                for r in records
            ],
        )
    )
    return rows


def reference_rows(columns: list) -> list:
    """Published numbers that fall in our variant columns, marked as such."""
    rows = []
    for ref in PUBLISHED:
        if not any(name in ref.values for name in columns):
            continue
        size = "size not stated" if ref.size == "not stated" else ref.size
        label = f"{ref.short} Pi 4, {size}, threads {ref.threads} ({PUBLISHED_MARK})"
        rows.append((label, [ref.values.get(name, "") for name in columns]))
    return rows


def _notes(result: HostResult, columns: list) -> list:
    notes = []
    for name in columns:
        record = result.variant(name)
        if record is None:
            continue
        if record["status"] != "ok":
            notes.append(f"{name}: {record['status']} — {record['skipped']}")
        elif not record["valid"]:
            notes.append(f"{name}: INVALID — {'; '.join(record['invalid_reasons'])}")
    return notes


def _describe(result: HostResult) -> dict:
    data = result.data
    host, config = data["host"], data["config"]
    facts = data.get("facts") or {}
    machine = host.get("pi_model") or host.get("cpu") or "?"
    size = config["size"]
    threads = config.get("threads") or "runtime default"
    sizes, counts = config.get("sizes"), config.get("thread_counts")
    if isinstance(sizes, list) and isinstance(counts, list) and len(sizes) * len(counts) > 1:
        from deploy.results.sweep import sweep_setting

        size, threads = sweep_setting(sizes, counts)
    warnings = list(data.get("warnings", []))
    if result.emulated:
        warnings.insert(0, EMULATED_WARNING)
    return {
        "name": result.label,
        "machine": f"{machine} ({host.get('machine', '?')}, {host.get('cpu_count', '?')} CPUs)",
        "os": facts.get("os", host.get("platform", "?")),
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(host.get("versions", {}).items())),
        "setup": (
            f"input {size if isinstance(size, str) else f'{size[0]}×{size[1]}'}, "
            f"threads {threads}, {config['warmup']} warm-up, "
            f"≥{config['runs']} timed runs in {config['windows']} windows, "
            f"probe image {config.get('image_size', ['?', '?'])[0]}×"
            f"{config.get('image_size', ['?', '?'])[1]}"
        ),
        "started": data.get("started", "?"),
        "warnings": warnings,
        "telemetry": _telemetry_line(data.get("telemetry", {})),
    }


def _telemetry_line(tele: dict) -> str:
    start, end = tele.get("start") or {}, tele.get("end") or {}

    def temp(snap):
        value = snap.get("temperature_c")
        return f"{value:.1f} °C" if value is not None else "?"

    parts = [f"temperature {temp(start)} → {temp(end)}"]
    if start.get("throttled_hex") or end.get("throttled_hex"):
        parts.append(f"throttled {start.get('throttled_hex')} → {end.get('throttled_hex')}")
    else:
        parts.append("throttle state unknown")
    parts.append(f"governor {start.get('governor') or '?'}")
    if start.get("loadavg"):
        parts.append(f"load {start['loadavg'][0]:.2f}")
    if start.get("mem_available_mb") is not None:
        parts.append(f"{start['mem_available_mb']} MB free")
    return ", ".join(parts)


def comparison_rows(results: list, columns: list) -> list:
    """One row per variant, one column per host: end-to-end p50 and FPS."""
    rows = []
    for name in columns:
        cells = []
        for result in results:
            record = result.variant(name)
            if record is None:
                cells.append("—")
            elif record["status"] != "ok":
                cells.append(record["status"])
            else:
                text = f"{_ms(record['stages']['e2e']['p50'])} ms ({record['fps']:.1f} FPS)"
                cells.append(text if record["valid"] else text + " ⚠")
        rows.append((name, cells))
    return rows


def table_context(results: list, title: str) -> dict:
    """Everything the templates need, computed once."""
    columns = variant_columns(results)
    return {
        "title": title,
        "mark": PUBLISHED_MARK,
        "columns": columns,
        "hosts": [
            {
                **_describe(result),
                "rows": host_rows(result, columns),
                "notes": _notes(result, columns),
            }
            for result in results
        ],
        "references": reference_rows(columns),
        "published": PUBLISHED,
        "comparison": comparison_rows(results, columns) if len(results) > 1 else [],
        "host_names": [result.label for result in results],
        "csv_rows": csv_rows(results),
    }


def csv_rows(results: list) -> list:
    """Long-format rows: one per host, variant and stage, then the published numbers."""
    rows = []
    config_keys = ("size", "threads", "warmup", "runs", "windows")
    for result in results:
        config = result.data["config"]
        size = "x".join(str(v) for v in config["size"])
        for name in result.variants:
            record = result.variant(name)
            cell = record.get("cell") if isinstance(record.get("cell"), dict) else {}
            base = {
                "kind": "emulated" if result.emulated else "measured",
                "host": result.host,
                "variant": name,
                "backend": record.get("backend") or "",
                "status": record["status"],
                "valid": "yes" if record["valid"] else "no",
                "size": size,
                **{key: config.get(key) for key in config_keys if key != "size"},
                **_cell_setting(cell),
                "note": record.get("skipped") or "; ".join(record.get("invalid_reasons", [])),
            }
            if record["status"] != "ok":
                rows.append({**base, "stage": "", "fps": "", "faces": ""})
                continue
            for stage in STAGES:
                stats = record["stages"][stage]
                rows.append(
                    {
                        **base,
                        "stage": stage,
                        **{key: f"{stats[key]:.3f}" for key in STATS},
                        "fps": f"{record['fps']:.3f}",
                        "faces": record["faces"],
                    }
                )
    for ref in PUBLISHED:
        for name, value in ref.values.items():
            rows.append(
                {
                    "kind": PUBLISHED_MARK,
                    "host": ref.source,
                    "variant": name,
                    "backend": ref.runtime,
                    "status": "",
                    "valid": "",
                    "size": ref.size,
                    "threads": ref.threads,
                    "stage": "e2e",
                    "p50": value,
                    "note": ref.note,
                }
            )
    return rows


def _cell_setting(cell: dict) -> dict:
    """A sweep cell's own size and threads (they override the run's first setting)."""
    out = {}
    size = cell.get("size")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        out["size"] = f"{size[0]}x{size[1]}"
    if "threads" in cell and (cell["threads"] is None or isinstance(cell["threads"], int)):
        out["threads"] = cell["threads"]
    return out


CSV_COLUMNS = (
    "kind",
    "host",
    "variant",
    "backend",
    "status",
    "valid",
    "size",
    "threads",
    "warmup",
    "runs",
    "windows",
    "stage",
    *STATS,
    "fps",
    "faces",
    "note",
)


# --- the chart -----------------------------------------------------------------------------

CHART_COLORS = {"pre": "#8da0cb", "infer": "#fc8d62", "post": "#66c2a5"}
# Conservative width of one character of the chart's 12px sans-serif text, so that labels are
# laid out from their length and never cross the SVG's edge (a browser test checks it).
CHAR_PX = 7.5
ROW_BAR, ROW_GAP, PLOT_MIN = 18, 8, 320


def _chart_entries(results: list) -> list:
    """(label, record) of every variant that ran, in table order."""
    entries = []
    for result in results:
        for name in result.variants:
            record = result.variant(name)
            if record and record["status"] == "ok":
                label = name if len(results) == 1 else f"{result.label} · {name}"
                entries.append((label + ("" if record["valid"] else " ⚠"), record))
    return entries


def _text_px(text: str) -> float:
    return len(text) * CHAR_PX


def chart(results: list, width: int = 760) -> dict:
    """The main chart: mean pre + inference + post stacked per variant, a tick at the
    end-to-end p90; each row says its mean total and its p90 in figures."""

    def value(record):
        total = sum(record["stages"][stage]["mean"] for stage in CHART_COLORS)
        return f"mean {_ms(total)} ms · p90 {_ms(record['stages']['e2e']['p90'])} ms"

    legend = [(color, f"{STAGE_NAMES[stage]} (mean)") for stage, color in CHART_COLORS.items()]
    legend.append((None, "end to end p90"))
    return _stacked_chart(
        _chart_entries(results), tuple(CHART_COLORS), value, legend, width, tick_stat="p90"
    )


def stage_chart(results: list, width: int = 760) -> dict:
    """Pre- and post-processing alone, on their own scale: beside inference they are a few
    pixels wide, so this is where they can be read."""

    def value(record):
        pre, post = (record["stages"][stage]["mean"] for stage in ("pre", "post"))
        return f"pre {_ms(pre)} ms · post {_ms(post)} ms (mean)"

    legend = [(CHART_COLORS[stage], f"{STAGE_NAMES[stage]} (mean)") for stage in ("pre", "post")]
    return _stacked_chart(_chart_entries(results), ("pre", "post"), value, legend, width)


def _stacked_chart(entries, stages, value_text, legend, width, tick_stat=None) -> dict:
    """Geometry of a horizontal stacked-bar chart. Columns: row labels | plot | value text;
    the label and value columns are as wide as their longest text, so nothing is cut."""
    if not entries:
        return {"width": width, "height": 60, "rows": [], "ticks": [], "empty": True}
    left = max(_text_px(label) for label, _ in entries) + 16
    values = [value_text(record) for _, record in entries]
    value_w = max(_text_px(text) for text in values) + 16
    plot = max(PLOT_MIN, width - left - value_w)
    width = int(left + plot + value_w + 1)
    top = 40
    peak = max(
        max(
            record["stages"]["e2e"][tick_stat] if tick_stat else 0.0,
            sum(record["stages"][stage]["mean"] for stage in stages),
        )
        for _, record in entries
    )
    scale = _nice_max(peak)
    rows = []
    for index, ((label, record), text) in enumerate(zip(entries, values)):
        y = top + index * (ROW_BAR + ROW_GAP)
        x = left
        segments = []
        for stage in stages:
            mean = record["stages"][stage]["mean"]
            w = max(plot * mean / scale, 0.0)
            title = f"{label}: {STAGE_NAMES[stage]} mean {mean:.2f} ms"
            segments.append(
                {"x": round(x, 2), "w": round(w, 2), "color": CHART_COLORS[stage], "title": title}
            )
            x += w
        row = {"label": label, "y": y, "segments": segments, "value": text}
        if tick_stat:
            row["tick_x"] = round(left + plot * record["stages"]["e2e"][tick_stat] / scale, 2)
        rows.append(row)
    axis_y = top + len(entries) * (ROW_BAR + ROW_GAP)
    ticks = [
        {"x": round(left + plot * i / 4, 2), "label": (_ms(scale * i / 4) if i else "0") + " ms"}
        for i in range(0, 5)
    ]
    keys, x = [], 10.0
    for color, name in legend:
        keys.append({"x": round(x, 2), "color": color, "name": name})
        x += 16 + _text_px(name) + 24
    return {
        "width": max(width, int(x)),
        "height": axis_y + 30,
        "left": left,
        "top": top,
        "bar": ROW_BAR,
        "axis_y": axis_y,
        "value_x": round(left + plot + 10, 2),
        "rows": rows,
        "ticks": ticks,
        "legend": keys,
        "empty": False,
    }


def _nice_max(value: float) -> float:
    """The smallest 1/2/2.5/5 × 10^k not below `value`."""
    if value <= 0:
        return 1.0
    import math

    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


# --- rendering -----------------------------------------------------------------------------


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
    from deploy.results.sweep import extra_sections

    context = table_context(results, title)
    context.update(extra_sections(results, target_fps))
    context["csv_columns"] = CSV_COLUMNS
    context["chart"] = chart(results)
    context["stage_chart"] = stage_chart(results)
    context["facts"] = [_facts_table(result) for result in results]
    return {
        "table.md": render("table.md.j2", **context),
        "table.csv": render("table.csv.j2", **context),
        "report.html": render("report.html.j2", **context),
    }


def _facts_table(result: HostResult) -> dict:
    """Host facts for the HTML report: deploy's probe, then the runner's view."""
    host = result.data["host"]
    rows = list((result.data.get("facts") or {}).items())
    runner_view = [
        ("runner host", host.get("hostname")),
        ("cpu", host.get("cpu")),
        ("kernel", host.get("kernel")),
        ("pi model", host.get("pi_model") or "not a Raspberry Pi"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(host.get("versions", {}).items()))),
    ]
    probed = {key for key, _ in rows}
    rows += [(key, value) for key, value in runner_view if key not in probed]  # no repeated rows
    return {"name": result.host, "rows": [(k, "" if v is None else v) for k, v in rows]}


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


# --- comparing two runs --------------------------------------------------------------------


def compare(new_dir: Path, old_dir: Path) -> str:
    """Markdown deltas of end-to-end p50/p90 and FPS for every host and variant in both runs."""
    new = {r.host: r for r in load_results(new_dir)}
    old = {r.host: r for r in load_results(old_dir)}
    rows = []
    for host in [h for h in new if h in old]:
        for name in variant_columns([new[host], old[host]]):
            a, b = new[host].variant(name), old[host].variant(name)
            row = {"host": host, "variant": name, "p50": "", "p90": "", "fps": "", "note": ""}
            if not a or not b or a["status"] != "ok" or b["status"] != "ok":
                row["note"] = f"new: {_state(a)}, old: {_state(b)}"
                rows.append(row)
                continue
            for key in ("p50", "p90"):
                va, vb = a["stages"]["e2e"][key], b["stages"]["e2e"][key]
                row[key] = f"{_ms(va)} vs {_ms(vb)} ({_delta(va, vb)})"
            row["fps"] = f"{a['fps']:.1f} vs {b['fps']:.1f}"
            notes = [] if a["valid"] and b["valid"] else ["invalid run(s) ⚠"]
            notes += _config_diff(new[host], old[host])
            row["note"] = "; ".join(notes)
            rows.append(row)
    only = sorted(set(new) ^ set(old))
    return render(
        "compare.md.j2",
        new=str(new_dir),
        old=str(old_dir),
        rows=rows,
        only=[(h, "new" if h in new else "old") for h in only],
    )


def _delta(a: float, b: float) -> str:
    if b == 0:
        return "n/a"
    return f"{a - b:+.1f} ms, {100.0 * (a - b) / b:+.1f} %"


def _state(record: Optional[dict]) -> str:
    return record["status"] if record else "absent"


def _config_diff(a: HostResult, b: HostResult) -> list:
    """Settings that differ between two runs (their numbers are then not like for like)."""
    out = []
    for key in ("size", "threads", "runs", "warmup"):
        va, vb = a.data["config"].get(key), b.data["config"].get(key)
        if va != vb:
            out.append(f"{key} {va} vs {vb}")
    return out
