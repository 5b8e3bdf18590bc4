"""The models manifest (manifest.json beside the model files): the one reader.

Torch-free, Python 3.7+: the runner reads it on the Pi, the workstation tasks read it here.
"""

import json
import os

from .errors import ModelError
from .names import check_model, is_model_name, is_model_path, is_static_name

MANIFEST = "manifest.json"


def load_manifest(models_dir):
    """manifest.json of a models directory, with a `models` mapping; ModelError names the file."""
    path = os.path.join(str(models_dir), MANIFEST)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
        models = manifest["models"]
        if not isinstance(models, dict):
            raise TypeError("models is not a mapping")
    except (IOError, OSError) as error:
        raise ModelError("cannot read {}: {}".format(path, error)) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ModelError("{}: not a models manifest ({})".format(path, error)) from None
    return manifest


def not_built_reason(manifest, name):
    """Why the manifest says `name` was not built, or None."""
    not_built = manifest.get("not_built") or {}
    reason = not_built.get(name) if isinstance(not_built, dict) else None
    return reason if isinstance(reason, str) else None


def model_file(name, manifest, models_dir):
    """The file of a built variant (by name), or of a path given by the user."""
    from pathlib import Path

    if is_model_path(name) and not is_model_name(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError("model file not found: {}".format(path))
        return path
    check_model(name)
    entry = manifest.get("models", {}).get(name)
    if entry is None:
        reason = not_built_reason(manifest, name)
        if reason:
            raise ModelError("model {} was not built: {}".format(name, reason))
        built = ", ".join(sorted(manifest.get("models", {}))) or "none"
        hint = " (invoke models --fixed-size {})".format(name[12:]) if is_static_name(name) else ""
        raise ModelError(
            "model {} is not in {}/{}{}; built: {}".format(name, models_dir, MANIFEST, hint, built)
        )
    return Path(models_dir) / entry["file"]
