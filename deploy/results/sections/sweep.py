"""The size × threads sweep: its cells, the best setting per variant and the threads chart."""

from __future__ import annotations

import math
import re
from typing import Optional

from deploy.results.svg import nice_max
from retinaface.errors import ModelError

OP_NAME = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


SERIES_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def parse_sweep(size_text: str, threads_text: Optional[str], target_fps: Optional[str]) -> tuple:
    """(sizes, thread counts, target FPS) from `320x240,640x480`, `1,2,4` and `10`."""
    from retinaface.detector import parse_size

    sizes = []
    for part in [p.strip() for p in str(size_text).split(",") if p.strip()]:
        try:
            size = parse_size(part)
        except ValueError as error:
            raise ModelError(f"--size {part!r}: {error}") from None
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise ModelError("--size is empty")
    threads: list = []
    if threads_text:
        for part in [p.strip() for p in str(threads_text).split(",") if p.strip()]:
            if not part.isdigit() or int(part) < 1:
                raise ModelError(f"--threads {part!r}: not a whole number of 1 or more")
            if int(part) not in threads:
                threads.append(int(part))
    fps = None
    if target_fps is not None:
        try:
            fps = float(target_fps)
        except ValueError:
            raise ModelError(f"--target-fps {target_fps!r}: not a number") from None
        if not math.isfinite(fps) or fps <= 0:
            raise ModelError(f"--target-fps {target_fps!r}: must be above 0")
    return sizes, threads or [None], fps


def finite_number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _cell_of(record: dict) -> Optional[tuple]:
    """(variant, (w, h), threads|None) of a record, or None when it carries no valid cell."""
    cell = record.get("cell")
    if not isinstance(cell, dict):
        return None
    variant, size, threads = cell.get("variant"), cell.get("size"), cell.get("threads")
    if not isinstance(variant, str) or not OP_NAME.match(variant.replace("-", "_")):
        return None
    if not (isinstance(size, list) and len(size) == 2):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100000 for v in size):
        return None
    if threads is not None and (not isinstance(threads, int) or not 0 < threads < 1024):
        return None
    return variant, (size[0], size[1]), threads


def _measured(record: dict) -> Optional[dict]:
    """{"p50", "fps", "valid"} of an ok record with finite numbers, else None."""
    if record.get("status") != "ok":
        return None
    try:
        p50 = finite_number(record["stages"]["e2e"]["p50"])
    except (KeyError, TypeError):
        return None
    fps = finite_number(record.get("fps"))
    if p50 is None or fps is None:
        return None
    return {"p50": p50, "fps": fps, "valid": record.get("valid") is True}


def cells(result) -> list:
    """[(variant, size, threads, record)] of one host's result, in the run's order."""
    out = []
    for key in result.variants:
        record = result.variant(key)
        if isinstance(record, dict):
            cell = _cell_of(record)
            if cell:
                out.append((*cell, record))
    return out


def is_sweep(result) -> bool:
    found = cells(result)
    return len({c[1] for c in found}) > 1 or len({c[2] for c in found}) > 1


def sweep_setting(sizes: list, counts: list) -> tuple:
    """("320×240, 640×480", "1, 2") for a sweep's setup line (odd entries are left out)."""
    size_text = ", ".join(
        f"{s[0]}×{s[1]}"
        for s in sizes
        if isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) for v in s)
    )
    count_text = ", ".join(
        "default" if c is None else str(c) for c in counts if c is None or isinstance(c, int)
    )
    return size_text or "?", count_text or "?"


def threads_label(threads: Optional[int]) -> str:
    return "runtime default" if threads is None else f"{threads} thread{'s' if threads > 1 else ''}"


def size_label(size: tuple) -> str:
    return f"{size[0]}x{size[1]}"


def fmt_ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def sweep_section(result, target_fps: Optional[float] = None) -> dict:
    """Tables per size (rows: threads, columns: variants), a chart per size, best lines."""
    found = cells(result)
    variants = list(dict.fromkeys(c[0] for c in found))
    sizes = list(dict.fromkeys(c[1] for c in found))
    threads = list(dict.fromkeys(c[2] for c in found))
    by_key = {(c[0], c[1], c[2]): c[3] for c in found}
    tables = []
    for size in sizes:
        rows = []
        for count in threads:
            texts = []
            for variant in variants:
                record = by_key.get((variant, size, count))
                m = _measured(record) if record else None
                if record is None:
                    texts.append("—")
                elif m is None:
                    texts.append(str(record.get("status", "?"))[:20])
                else:
                    text = f"{fmt_ms(m['p50'])} ms ({m['fps']:.1f} FPS)"
                    texts.append(text if m["valid"] else text + " ⚠")
            rows.append((threads_label(count), texts))
        tables.append(
            {
                "size": size_label(size),
                "rows": rows,
                "chart": threads_chart(variants, threads, size, by_key),
            }
        )
    return {
        "host": result.host,
        "variants": variants,
        "tables": tables,
        "best": best_lines(found, target_fps),
    }


def best_lines(found: list, target_fps: Optional[float]) -> list:
    """Per variant: its fastest valid cell; with a target, the cheapest valid cell reaching it
    (fewest threads, then the largest input)."""
    lines = []
    for variant in dict.fromkeys(c[0] for c in found):
        measured = []
        for v, size, threads, record in found:
            m = _measured(record) if v == variant else None
            if m and m["valid"]:
                measured.append((size, threads, m))
        if not measured:
            lines.append(f"{variant}: no valid cell")
            continue
        size, threads, m = min(measured, key=lambda item: item[2]["p50"])
        line = (
            f"{variant}: fastest {fmt_ms(m['p50'])} ms ({m['fps']:.1f} FPS) at "
            f"{size_label(size)}, {threads_label(threads)}"
        )
        if target_fps is not None:
            reaching = [item for item in measured if item[2]["fps"] >= target_fps]
            if reaching:
                size, threads, m = min(
                    reaching, key=lambda item: (item[1] or 0, -(item[0][0] * item[0][1]))
                )
                line += (
                    f"; reaches {target_fps:g} FPS with {threads_label(threads)} at "
                    f"{size_label(size)} ({m['fps']:.1f} FPS)"
                )
            else:
                line += f"; no cell reaches {target_fps:g} FPS"
        lines.append(line)
    return lines


def threads_chart(variants: list, threads: list, size: tuple, by_key: dict) -> dict:
    """Geometry of a line chart: end-to-end p50 (y) against thread count (x), one line per
    variant; every point labelled with its value, everything inside the SVG box."""
    width, left, right, top, bottom = 680, 60, 180, 20, 40
    series, peak = [], 0.0
    for index, variant in enumerate(variants):
        points = []
        for position, count in enumerate(threads):
            record = by_key.get((variant, size, count))
            m = _measured(record) if record else None
            if m:
                points.append((position, m["p50"], m["valid"]))
                peak = max(peak, m["p50"])
        if points:
            series.append(
                {"name": variant, "color": SERIES_COLORS[index % len(SERIES_COLORS)], "raw": points}
            )
    height = 260
    plot_w, plot_h = width - left - right, height - top - bottom
    if not series:
        return {"empty": True, "width": width, "height": 60}
    scale = nice_max(peak)
    step = plot_w / max(1, len(threads) - 1) if len(threads) > 1 else 0
    for index, item in enumerate(series):
        item["points"] = []
        for position, value, valid in item.pop("raw"):
            x = left + (step * position if len(threads) > 1 else plot_w / 2)
            y = top + plot_h * (1 - value / scale)
            # Alternate labels above and below the line so close series stay readable.
            label_y = y - 5 if index % 2 == 0 else min(y + 15, top + plot_h - 2)
            item["points"].append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "label_y": round(label_y, 1),
                    "label": fmt_ms(value) + ("" if valid else " ⚠"),
                }
            )
        item["path"] = " ".join(f"{p['x']},{p['y']}" for p in item["points"])
    x_ticks = [
        {
            "x": round(left + (step * i if len(threads) > 1 else plot_w / 2), 1),
            "label": "default" if t is None else str(t),
        }
        for i, t in enumerate(threads)
    ]
    y_ticks = [
        {"y": round(top + plot_h * (1 - i / 4), 1), "label": fmt_ms(scale * i / 4) if i else "0"}
        for i in range(5)
    ]
    legend = [
        {"name": s["name"], "color": s["color"], "y": top + 14 + 18 * i}
        for i, s in enumerate(series)
    ]
    return {
        "empty": False,
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_right": width - right,
        "axis_y": top + plot_h,
        "legend_x": width - right + 16,
        "series": series,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "legend": legend,
        "size": size_label(size),
    }
