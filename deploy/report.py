"""Latency tables from pulled benchmark results: table.md, table.csv, report.html (+ SVG chart).

    results/<stamp>/<host>/bench.json  →  results/<stamp>/{table.md, table.csv, report.html}

Variants are columns (the study's layout); several hosts also get one comparison table. The
study's Pi 4 numbers and published peer numbers (../shared/FACTS.md) are reference rows marked
"published, not measured here". `compare()` gives per host and variant deltas of two runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import jinja2

from deploy.errors import DeployError
from deploy.hostkeys import REPO_ROOT
from retinaface.imageio import write_atomic as write_bytes_atomic

TEMPLATES = REPO_ROOT / "templates"
RESULTS_DIR = REPO_ROOT / "results"
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
    """One published Pi 4 number (ms per frame) from ../shared/FACTS.md."""

    source: str
    short: str  # the row label in the variant tables
    runtime: str
    size: str
    threads: str
    values: dict  # our variant name -> "520–570" (text: ranges stay ranges)
    note: str = ""


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
    ),
    Published(
        "ncnn, RetinaFace mnet0.25",
        "ncnn",
        "ncnn",
        "320×240",
        "?",
        {"fp32": "~35"},
        "64-bit OS",
    ),
    Published(
        "YuNet (libfacedetection), a different detector",
        "YuNet",
        "libfacedetection",
        "640×480",
        "1 / 4",
        {},
        "640×480: 404.6 / 125.5 ms; 320×240: 105.7 / 33.0 ms",
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


def _where(path: Path, field_path: str) -> str:
    return f"{path}: field {field_path}"


def validate_result(data: dict, path: Path) -> None:
    """Check a bench.json against the runner's schema; the error names the file and field."""

    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            raise DeployError(f"{_where(path, where + key)} is missing")
        if kind is not None and not isinstance(obj[key], kind):
            raise DeployError(f"{_where(path, where + key)} is not a {kind.__name__}")
        return obj[key]

    if not isinstance(data, dict):
        raise DeployError(f"{path}: not a JSON object")
    if need(data, "format", int, "") != 1:
        raise DeployError(f"{_where(path, 'format')}: unknown format {data['format']!r}")
    need(data, "host", dict, "")
    config = need(data, "config", dict, "")
    for key in ("size", "warmup", "runs", "windows"):
        need(config, key, None, "config.")
    order = need(data, "order", list, "")
    variants = need(data, "variants", dict, "")
    for name in order:
        where = f"variants.{name}."
        record = need(variants, name, dict, "variants.")
        status = need(record, "status", str, where)
        need(record, "valid", bool, where)
        if status != "ok":
            need(record, "skipped", str, where)
            continue
        need(record, "faces", int, where)
        if not isinstance(record.get("fps"), (int, float)):
            raise DeployError(f"{_where(path, where + 'fps')} is missing or not a number")
        stages = need(record, "stages", dict, where)
        for stage in STAGES:
            stats = need(stages, stage, dict, f"{where}stages.")
            for stat in STATS:
                if not isinstance(stats.get(stat), (int, float)):
                    raise DeployError(
                        f"{_where(path, f'{where}stages.{stage}.{stat}')} is missing or not a number"
                    )


def load_result(path: Path, host: Optional[str] = None) -> HostResult:
    """One bench.json, validated."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise DeployError(f"{path}: cannot read ({error.strerror})") from None
    except ValueError as error:
        raise DeployError(f"{path}: not JSON ({error})") from None
    validate_result(data, path)
    return HostResult(host or data.get("inventory_host") or path.parent.name, path, data)


def load_results(results_dir: Path) -> list:
    """Every `<host>/bench.json` under a results folder (or the one in a host folder), by host."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DeployError(f"{results_dir}: no such results folder")
    if (results_dir / "bench.json").is_file():
        return [load_result(results_dir / "bench.json")]
    found = sorted(results_dir.glob("*/bench.json"))
    if not found:
        raise DeployError(f"{results_dir}: no <host>/bench.json inside")
    return [load_result(path) for path in found]


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
    warnings = list(data.get("warnings", []))
    if result.emulated:
        warnings.insert(0, EMULATED_WARNING)
    return {
        "name": result.label,
        "machine": f"{machine} ({host.get('machine', '?')}, {host.get('cpu_count', '?')} CPUs)",
        "os": facts.get("os", host.get("platform", "?")),
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(host.get("versions", {}).items())),
        "setup": (
            f"input {size[0]}×{size[1]}, threads {threads}, {config['warmup']} warm-up, "
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
            base = {
                "kind": "emulated" if result.emulated else "measured",
                "host": result.host,
                "variant": name,
                "backend": record.get("backend") or "",
                "status": record["status"],
                "valid": "yes" if record["valid"] else "no",
                "size": size,
                **{key: config.get(key) for key in config_keys if key != "size"},
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


def chart(results: list, width: int = 760, bar: int = 18, gap: int = 8) -> dict:
    """Geometry of a horizontal stacked-bar chart: mean pre/infer/post per host and variant,
    with a tick at the end-to-end p90."""
    entries = []
    for result in results:
        for name in result.variants:
            record = result.variant(name)
            if record and record["status"] == "ok":
                label = name if len(results) == 1 else f"{result.label} · {name}"
                entries.append((label, record))
    left, right, top = 190, 40, 28
    plot = width - left - right
    if not entries:
        return {"width": width, "height": 60, "rows": [], "ticks": [], "empty": True}
    peak = max(
        max(r["stages"]["e2e"]["p90"], sum(r["stages"][s]["mean"] for s in CHART_COLORS))
        for _, r in entries
    )
    scale = _nice_max(peak)
    rows = []
    for index, (label, record) in enumerate(entries):
        y = top + index * (bar + gap)
        x = left
        segments = []
        for stage, color in CHART_COLORS.items():
            value = record["stages"][stage]["mean"]
            w = plot * value / scale
            segments.append(
                {
                    "x": round(x, 2),
                    "w": round(max(w, 0.0), 2),
                    "color": color,
                    "title": f"{label}: {STAGE_NAMES[stage]} mean {value:.2f} ms",
                }
            )
            x += w
        p90 = record["stages"]["e2e"]["p90"]
        rows.append(
            {
                "label": label + ("" if record["valid"] else " ⚠"),
                "y": y,
                "segments": segments,
                "p90_x": round(left + plot * p90 / scale, 2),
                "value": f"p50 {_ms(record['stages']['e2e']['p50'])} ms",
                "value_x": round(max(x, left + plot * p90 / scale) + 6, 2),
            }
        )
    height = top + len(entries) * (bar + gap) + 40
    ticks = [
        {"x": round(left + plot * i / 4, 2), "label": _ms(scale * i / 4) if i else "0"}
        for i in range(0, 5)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "bar": bar,
        "axis_y": height - 30,
        "rows": rows,
        "ticks": ticks,
        "legend": [{"color": c, "name": STAGE_NAMES[s]} for s, c in CHART_COLORS.items()],
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


def _csv_field(value) -> str:
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


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
    env.filters["md"] = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    return env


def render(name: str, **context) -> str:
    return _environment().get_template(name).render(**context)


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` atomically (temp name, then rename); returns the path."""
    write_bytes_atomic(path, text.encode("utf-8"))
    return Path(path)


def render_tables(results: list, title: str) -> dict:
    """{file name: text} of table.md, table.csv and report.html for `results`."""
    context = table_context(results, title)
    context["csv_columns"] = CSV_COLUMNS
    context["chart"] = chart(results)
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


def render_reports(results_dir: Path, title: Optional[str] = None) -> ReportFiles:
    """(Re-)render table.md, table.csv and report.html into `results_dir`."""
    results_dir = Path(results_dir)
    results = load_results(results_dir)
    texts = render_tables(results, title or f"RetinaFace mnet0.25 latency — {results_dir.name}")
    files = ReportFiles(directory=results_dir, markdown=texts["table.md"])
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
