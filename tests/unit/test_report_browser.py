"""report.html in a real headless browser (Debian's chromium): the charts are drawn, and every
SVG text lies inside its SVG box, also for the slowest variant and a long host name."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from deploy.results.render import render_reports
from tests.fixtures.browser import chromium_command

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "bench-runs"
WINDOW = (1200, 1400)

# Measures every <text> of every chart with getBBox and writes the result into the page.
PROBE = """
<script>
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("svg.chart")].map((svg) => {
    const box = svg.viewBox.baseVal;
    const outside = [];
    let texts = 0;
    for (const text of svg.querySelectorAll("text")) {
      texts += 1;
      const b = text.getBBox();
      if (b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height) {
        outside.push([text.textContent, b.x, b.y, b.width, b.height, box.width, box.height]);
      }
    }
    const r = svg.getBoundingClientRect();
    return {texts, outside, rect: [r.left, r.top, r.width, r.height]};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
});
</script>
"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        chromium_command(
            tmp_path / "profile",
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def hard_run(tmp_path: Path) -> Path:
    """The golden two-host run, made hard to lay out: the slowest variant's p90 sits at the end
    of the axis and one host has a long name."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    path = run / "local" / "bench.json"
    data = json.loads(path.read_text())
    data["variants"]["torch"]["stages"]["e2e"]["p90"] = 998.0
    path.write_text(json.dumps(data))
    (run / "fixture-b").rename(run / "pi4-emu-trixie-in-the-lab")
    return run


def test_report_charts_are_drawn_and_their_text_stays_inside(tmp_path):
    run = hard_run(tmp_path)
    render_reports(run)
    page = run / "probe.html"
    html = (run / "report.html").read_text()
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    charts = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(charts) == 2
    for chart in charts:
        assert chart["texts"] > 20  # row labels, values, ticks, legend
        assert chart["outside"] == []

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    image = cv2.imread(str(shot))
    left, top, width, height = (int(round(v)) for v in charts[0]["rect"])
    assert top + height <= image.shape[0]  # the main chart is within the screenshot
    area = image[top : top + height, left : left + width]
    ink = np.any(area < 235, axis=2).mean()
    assert ink > 0.05  # not blank
    inference = np.all(np.abs(area.astype(int) - (0x62, 0x8D, 0xFC)) <= 6, axis=2)  # BGR
    assert inference.sum() > 2000  # the inference bars are painted, in their colour
