"""Fixtures shared by every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import IMAGES, REPO, SHARED  # noqa: F401  (re-exported for fixtures)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The model variants exported once per test session from the embedded trained weights."""
    from retinaface.export import export_models

    out = tmp_path_factory.mktemp("build") / "models"
    export_models(out)
    return out


@pytest.fixture(scope="session")
def weights_path(models_dir) -> Path:
    return models_dir / "retinaface-mnet025.pth"
