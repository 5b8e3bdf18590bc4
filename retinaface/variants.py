"""Model names → files under the project root (workstation side, torch-free).

Every task that takes a model (`detect --model`, `evaluate --variants`) resolves it here, so the
names are the same everywhere: fp32, fp32-opt, fp32-static-WxH, int8, int8-qop, torch, or a file path.
Paths resolve from the project root, never from the current directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

from .errors import ModelError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_ROOT / "build" / "models"
MODEL_NAMES = ("fp32", "fp32-opt", "fp32-static-WxH", "int8", "int8-qop", "torch")
MODEL_SUFFIXES = (".onnx", ".pth", ".pt")
_STATIC = re.compile(r"^fp32-static-[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")


def is_model_name(name: str) -> bool:
    """True for one of MODEL_NAMES (fp32-static-WxH with any size)."""
    return name in MODEL_NAMES and name != "fp32-static-WxH" or bool(_STATIC.match(name))


def is_model_path(text: str) -> bool:
    """A model given as a file: it has a folder part or a model file suffix."""
    return "/" in text or text.endswith(MODEL_SUFFIXES)


def unknown_model(text: str, what: str = "model") -> ModelError:
    return ModelError(
        f"unknown {what} {text!r}: give one of {', '.join(MODEL_NAMES)} "
        f"or the path of an {'/'.join(MODEL_SUFFIXES)} file"
    )


def check_model(text: str) -> str:
    """`text` if it is a model name or a model path; otherwise a ModelError listing the names."""
    if not is_model_name(text) and not is_model_path(text):
        raise unknown_model(text)
    return text


def model_file(name: str, manifest: dict, models_dir: Path = MODELS_DIR) -> Path:
    """The file of a built variant (by name), or of a path given by the user."""
    if is_model_path(name) and not is_model_name(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return path
    check_model(name)
    entry = manifest.get("models", {}).get(name)
    if entry is None:
        reason = manifest.get("not_built", {}).get(name)
        if reason:
            raise ModelError(f"model {name} was not built: {reason}")
        built = ", ".join(sorted(manifest.get("models", {}))) or "none"
        hint = f" (invoke models --fixed-size {name[12:]})" if _STATIC.match(name) else ""
        raise ModelError(f"model {name} is not in {models_dir}/manifest.json{hint}; built: {built}")
    return Path(models_dir) / entry["file"]


def parse_names(text: str, what: str = "variant") -> List[str]:
    """A comma list of model names, each checked; paths are not names here."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not names:
        raise ModelError(f"--{what}s is empty")
    for name in names:
        if not is_model_name(name):
            raise unknown_model(name, what)
    return names
