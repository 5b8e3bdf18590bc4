"""SVG geometry of the report's charts (latency per variant, per stage): laid out from text
lengths so labels never cross the edge."""

from __future__ import annotations

import math

from deploy.results.model import STAGE_NAMES, ms_text

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
        return f"mean {ms_text(total)} ms · p90 {ms_text(record['stages']['e2e']['p90'])} ms"

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
        return f"pre {ms_text(pre)} ms · post {ms_text(post)} ms (mean)"

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
    scale = nice_max(peak)
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
        {"x": round(left + plot * i / 4, 2), "label": (ms_text(scale * i / 4) if i else "0") + " ms"}
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


def nice_max(value: float) -> float:
    """The smallest 1/2/2.5/5 × 10^k not below `value`."""
    if value <= 0:
        return 1.0

    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def sparkline(values: list, width: int = 160, height: int = 24) -> str:
    """SVG polyline points of a temperature trace (empty for fewer than two samples)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 4) / (len(values) - 1)
    return " ".join(
        f"{2 + i * step:.1f},{2 + (height - 4) * (1 - (v - low) / span):.1f}"
        for i, v in enumerate(values)
    )
