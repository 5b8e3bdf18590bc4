"""The README's contents and cross-links lead somewhere: every #anchor is a heading, every
relative link a file, and every section marker is still there for the merge of section edits."""

from __future__ import annotations

import re

from tests.paths import REPO


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set:
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {slug(heading) for heading in headings}


def test_every_readme_link_resolves():
    text = (REPO / "README.md").read_text()
    known = anchors(text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(targets) > 15
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (REPO / path).is_file(), target
            if anchor:
                assert anchor in anchors((REPO / path).read_text()), target
        else:
            assert anchor in known, target


def test_quick_start_then_contents_then_first_pi():
    text = (REPO / "README.md").read_text()
    assert text.index("bash .ci/run") < text.index("## Contents") < text.index("## Your first Pi")
    steps = [
        "Flash",
        "User and key",
        "Your inventory file",
        "Trust the host key",
        "Facts",
        "Prepare the Pi",
        "onnxruntime for the Pi",
        "Deploy",
        "Benchmark on the Pi",
        "Report",
    ]
    positions = [text.index(f"**{step}") for step in steps]
    assert positions == sorted(positions)
    for marker in ("first-pi", "models", "deploy", "emulator", "wheels", "bench", "tests"):
        assert f"<!-- section: {marker} -->" in text
