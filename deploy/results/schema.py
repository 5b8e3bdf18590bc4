"""The edge for bench.json: read it size-capped, parse it strictly and check every field the
reports use (types, finite numbers, sizes) before any renderer touches it.

A host writes bench.json, so it is untrusted: `"p90": Infinity`, `host.versions` as a list or a
megabyte-long name must become one DeployError naming the file and field, not a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from deploy.errors import DeployError
from retinaface.bench.schema import STAGES, STATS  # the one definition: what the runner writes

MAX_BYTES = 8 * 1024 * 1024  # a real bench.json is ~20 kB
MAX_TEXT = 2000  # characters in one string field
MAX_ITEMS = 64  # variants, warnings, versions, reasons…


class _Bad(Exception):
    """A field that is wrong: (dotted path, what is wrong)."""


def read_bench(path: Path) -> dict:
    """bench.json at `path`, parsed (no NaN/Infinity) and checked; DeployError names the fault."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise DeployError(f"{path}: cannot read ({error.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise DeployError(f"{path}: larger than {MAX_BYTES} bytes, not a bench.json")
    return parse_bench(raw, path)


def parse_bench(raw: bytes | str, path: Path) -> dict:
    """Parse and check bench.json text (see `check_bench`)."""

    def no_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        data = json.loads(raw, parse_constant=no_constant)
    except (ValueError, RecursionError) as error:
        raise DeployError(f"{path}: not JSON ({str(error)[:200]})") from None
    check_bench(data, path)
    return data


def check_bench(data, path: Path) -> None:
    """Every field the tables, chart and recap read, with its type, range and size."""
    try:
        _check(data)
    except _Bad as bad:
        where, what = bad.args
        raise DeployError(f"{path}: field {where} {what}" if where else f"{path}: {what}") from None


# --- the checks ------------------------------------------------------------------------------


def _get(obj: dict, key: str, where: str, required: bool = True):
    if key not in obj:
        if required:
            raise _Bad(where + key, "is missing")
        return None
    return obj[key]


def _dict(value, where: str, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _Bad(where, "is not an object")
    if len(value) > 4 * MAX_ITEMS:
        raise _Bad(where, f"has more than {4 * MAX_ITEMS} entries")
    return value


def _list(value, where: str, required: bool = True) -> list:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise _Bad(where, "is not a list")
    if len(value) > MAX_ITEMS:
        raise _Bad(where, f"has more than {MAX_ITEMS} items")
    return value


def _text(value, where: str, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise _Bad(where, "is not a string")
    if len(value) > MAX_TEXT:
        raise _Bad(where, f"is longer than {MAX_TEXT} characters")


def _number(value, where: str, required: bool = True, minimum: float | None = None) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(where, "is missing or not a number")
    if not math.isfinite(value):
        raise _Bad(where, "is not a finite number")
    if minimum is not None and value < minimum:
        raise _Bad(where, f"is below {minimum}")


def _integer(value, where: str, required: bool = True, minimum: int = 0) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(where, "is not an integer")
    if not minimum <= value <= 10**9:
        raise _Bad(where, f"is out of range ({minimum}…10^9)")


def _pair(value, where: str, required: bool = True) -> None:
    """A [width, height] pair."""
    if value is None and not required:
        return
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad(where, "is not a [width, height] pair")
    for index, item in enumerate(value):
        _integer(item, f"{where}[{index}]", minimum=1)


def _check(data) -> None:
    if not isinstance(data, dict):
        raise _Bad("", "not a JSON object")
    if _get(data, "format", "") != 1 or isinstance(data["format"], bool):
        raise _Bad("format", f"is an unknown format {repr(data['format'])[:40]}")
    for key in ("inventory_host", "started", "tool", "finished"):
        _text(data.get(key), key, required=False)
    _check_host(_dict(_get(data, "host", ""), "host"))
    _check_config(_dict(_get(data, "config", ""), "config"))
    for index, warning in enumerate(_list(data.get("warnings"), "warnings", required=False)):
        _text(warning, f"warnings[{index}]")
    facts = _dict(data.get("facts"), "facts", required=False)
    for key, value in facts.items():
        _text(key, "facts (a key)")
        _text(value, f"facts.{key}", required=False)
    _check_telemetry(_dict(data.get("telemetry"), "telemetry", required=False))
    order = _list(_get(data, "order", ""), "order")
    variants = _dict(_get(data, "variants", ""), "variants")
    for index, name in enumerate(order):
        _text(name, f"order[{index}]")
        if not name or len(name) > 64:
            raise _Bad(f"order[{index}]", "is not a variant name (1 to 64 characters)")
    if len(set(order)) != len(order):
        raise _Bad("order", "names a variant twice")
    for name in order:
        _check_variant(_dict(_get(variants, name, "variants."), f"variants.{name}"), name)
    if "counts" in data:
        _check_counts(_dict(data["counts"], "counts"))


COUNT_FIELDS = ("simd", "fp", "int", "ldst", "branch")
MAX_COUNT = 10**13  # instructions per frame: ~10^9 here, far below


def _check_counts(counts: dict) -> None:
    """`invoke count --into`'s record (format 1): integers per stage, the mix, a prediction."""
    if counts.get("format") != 1 or isinstance(counts.get("format"), bool):
        raise _Bad("counts.format", f"is an unknown format {repr(counts.get('format'))[:40]}")
    for index, record in enumerate(_list(_get(counts, "records", "counts."), "counts.records")):
        where = f"counts.records[{index}]."
        record = _dict(record, where[:-1])
        for key in ("host", "variant", "cpu", "qemu_cpu", "size"):
            _text(_get(record, key, where), where + key)
        if "skipped" in record:
            _text(record["skipped"], where + "skipped")
            continue
        for stage in STAGES:
            _count(_get(record, stage, where), where + stage)
        mix = _dict(_get(record, "mix", where), where + "mix")
        for stage in STAGES:
            shares = _dict(_get(mix, stage, where + "mix."), f"{where}mix.{stage}")
            for key in COUNT_FIELDS:
                _count(_get(shares, key, f"{where}mix.{stage}."), f"{where}mix.{stage}.{key}")
        predicted = _dict(record.get("predicted_ms"), where + "predicted_ms", required=False)
        if predicted:
            for key in ("low", "mid", "high"):
                _number(
                    _get(predicted, key, where + "predicted_ms."),
                    f"{where}predicted_ms.{key}",
                    minimum=0,
                )
            _text(_get(predicted, "model", where + "predicted_ms."), where + "predicted_ms.model")


def _count(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _Bad(where, f"is not an instruction count (an integer 0…{MAX_COUNT})")


def _check_host(host: dict) -> None:
    for key in ("hostname", "machine", "kernel", "platform", "cpu", "pi_model"):
        _text(host.get(key), f"host.{key}", required=False)
    _integer(host.get("cpu_count"), "host.cpu_count", required=False)
    for key, value in _dict(host.get("versions"), "host.versions", required=False).items():
        _text(key, "host.versions (a key)")
        _text(value, f"host.versions.{key}", required=False)


def _check_config(config: dict) -> None:
    _pair(_get(config, "size", "config."), "config.size")
    _pair(config.get("image_size"), "config.image_size", required=False)
    _integer(config.get("threads"), "config.threads", required=False)
    for key in ("warmup", "runs", "windows"):
        _integer(_get(config, key, "config."), f"config.{key}")


def _check_telemetry(telemetry: dict) -> None:
    for side in ("start", "end"):
        snap = _dict(telemetry.get(side), f"telemetry.{side}", required=False)
        where = f"telemetry.{side}."
        _number(snap.get("temperature_c"), where + "temperature_c", required=False)
        _number(snap.get("mem_available_mb"), where + "mem_available_mb", required=False)
        for key in ("throttled_hex", "governor"):
            _text(snap.get(key), where + key, required=False)
        for index, value in enumerate(_list(snap.get("loadavg"), where + "loadavg", False)):
            _number(value, f"{where}loadavg[{index}]")


def _check_variant(record: dict, name: str) -> None:
    where = f"variants.{name}."
    _text(_get(record, "status", where), where + "status")
    if not isinstance(_get(record, "valid", where), bool):
        raise _Bad(where + "valid", "is not a bool")
    _text(record.get("backend"), where + "backend", required=False)
    for index, reason in enumerate(
        _list(record.get("invalid_reasons"), where + "invalid_reasons", False)
    ):
        _text(reason, f"{where}invalid_reasons[{index}]")
    if record["status"] != "ok":
        _text(_get(record, "skipped", where), where + "skipped")
        return
    _text(record.get("skipped"), where + "skipped", required=False)
    _integer(_get(record, "faces", where), where + "faces")
    _number(record.get("fps"), where + "fps", minimum=0)
    for key in ("init_ms", "first_ms"):
        _number(record.get(key), where + key, required=False, minimum=0)
    stages = _dict(_get(record, "stages", where), where + "stages")
    for stage in STAGES:
        stats = _dict(_get(stages, stage, f"{where}stages."), f"{where}stages.{stage}")
        for stat in STATS:
            _number(stats.get(stat), f"{where}stages.{stage}.{stat}", minimum=0)
