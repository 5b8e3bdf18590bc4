"""The variant tables: a row per host (and reference rows), the comparison table, the CSV rows
and the host facts of the HTML report."""

from __future__ import annotations

from deploy.results.model import EMULATED_WARNING, STAGE_NAMES, HostResult, cell_text, ms_text
from deploy.results.published import PUBLISHED, PUBLISHED_MARK
from deploy.results.schema import STAGES, STATS
from deploy.results.sections.sweep import sweep_setting


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
            cell_text(r, r["stages"][stage][key] if r and r["status"] == "ok" else None)
            for r in records
        ]

    rows = [(f"end to end {key} (ms)", stat("e2e", key)) for key in ("p50", "p90", "p99", "mean")]
    rows.append(
        (
            "FPS (median of windows)",
            [
                cell_text(r, r["fps"] if r and r["status"] == "ok" else None, lambda v: f"{v:.1f}")
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
                [cell_text(r, r.get(key) if r and r["status"] == "ok" else None) for r in records],
            )
        )
    rows.append(
        (
            "faces on the probe image",
            [cell_text(r, r["faces"] if r and r["status"] == "ok" else None, str) for r in records],
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
                text = f"{ms_text(record['stages']['e2e']['p50'])} ms ({record['fps']:.1f} FPS)"
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


def facts_table(result: HostResult) -> dict:
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
