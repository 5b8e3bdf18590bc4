"""Paths the tests share: the repository and ../shared (photographs, research notes)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
IMAGES = SHARED / "data" / "images"
