"""Where the workstation keeps things: the project root and build/models (never shipped)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = PROJECT_ROOT / "build" / "models"
