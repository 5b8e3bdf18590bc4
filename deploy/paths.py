"""The project's folders and files, defined once (deploy, pi_setup and tasks.py import them here).

Also where the project keeps the host keys it trusts (besides the user's ~/.ssh/known_hosts)
and the cache of slow artefacts kept outside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
MODELS_DIR = BUILD_DIR / "models"
RUNNER_BUILD_DIR = BUILD_DIR / "runner"
LOGS_DIR = BUILD_DIR / "logs"
BUNDLE_DIR = BUILD_DIR / "bundle"
WHEELS_DIR = REPO_ROOT / "wheels"
WHEEL_LOCK = WHEELS_DIR / "lock.yaml"
RESULTS_DIR = REPO_ROOT / "results"
TEMPLATES = REPO_ROOT / "templates"
DEFAULT_INVENTORY = REPO_ROOT / "inventory.yaml"
PROBE_IMAGE = REPO_ROOT / "deploy" / "assets" / "probe.jpg"


def project_known_hosts() -> Path:
    """The project-local known_hosts file: $RETINAFACE_PI_KNOWN_HOSTS or <repo>/.ssh/known_hosts."""
    override = os.environ.get("RETINAFACE_PI_KNOWN_HOSTS")
    return Path(override) if override else REPO_ROOT / ".ssh" / "known_hosts"


def cache_dir() -> Path:
    """Cache for slow artefacts kept outside the checkout: $RETINAFACE_PI_CACHE or ~/.cache/retinaface-pi."""
    override = os.environ.get("RETINAFACE_PI_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "retinaface-pi"


def user_known_hosts() -> Path:
    """The user's OpenSSH known_hosts (~/.ssh/known_hosts)."""
    return Path.home() / ".ssh" / "known_hosts"


def known_hosts_files() -> list[Path]:
    """Every known_hosts file a connection trusts: the user's, then the project's."""
    return [user_known_hosts(), project_known_hosts()]
