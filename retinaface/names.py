"""Variant names and their rules: the one definition (torch-free, Python 3.7+).

Built variants: fp32, fp32-opt, fp32-static-WxH (any size), int8, int8-qop, torch, and with the
`[ncnn]` / `[mnn]` / `[tflite]` extras ncnn-fp32 (a .param beside its .bin), mnn-fp32, mnn-int8,
tflite-fp32, tflite-int8. The
benchmark adds opencv (cv2.dnn on the static variant of its input size). Anything with a
folder part or a model file suffix is a model given by path instead of by name.
"""

import re

from .errors import ModelError

# The ncnn and MNN variants (built with the `[ncnn]` / `[mnn]` extras), measured by default too.
ENGINE_VARIANTS = ("ncnn-fp32", "mnn-fp32", "mnn-int8", "tflite-fp32", "tflite-int8")
MODEL_NAMES = ("fp32", "fp32-opt", "fp32-static-WxH", "int8", "int8-qop", "torch") + ENGINE_VARIANTS
DEFAULT_VARIANTS = ("torch", "fp32", "fp32-opt", "int8", "int8-qop", "opencv") + ENGINE_VARIANTS
VARIANT_HELP = (
    "torch, fp32, fp32-opt, fp32-static-WxH, int8, int8-qop, opencv (the static model at --size), "
    "ncnn-fp32, mnn-fp32, mnn-int8, tflite-fp32, tflite-int8"
)
MODEL_SUFFIXES = (".onnx", ".pth", ".pt", ".param", ".mnn", ".tflite")
STATIC_PREFIX = "fp32-static-"
_STATIC = re.compile(r"^fp32-static-[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")


def parse_size(text):
    """'640x480' -> (640, 480)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("size must be WIDTHxHEIGHT, e.g. 640x480, not {!r}".format(text))
    return int(parts[0]), int(parts[1])


def static_name(size):
    """The static variant's name for (W, H): fp32-static-640x480."""
    return "{}{}x{}".format(STATIC_PREFIX, size[0], size[1])


def is_static_name(name):
    """True for fp32-static-WxH with a real size."""
    return bool(_STATIC.match(name))


def is_model_name(name):
    """True for one of MODEL_NAMES (fp32-static-WxH with any size)."""
    return name in MODEL_NAMES and name != "fp32-static-WxH" or is_static_name(name)


def is_variant_name(name):
    """A name the benchmark takes: a model name, or opencv."""
    return name in DEFAULT_VARIANTS or is_model_name(name)


def is_model_path(text):
    """A model given as a file: it has a folder part or a model file suffix."""
    return "/" in text or text.endswith(MODEL_SUFFIXES)


def unknown_model(text, what="model"):
    return ModelError(
        "unknown {} {!r}: give one of {} or the path of an {} file".format(
            what, text, ", ".join(MODEL_NAMES), "/".join(MODEL_SUFFIXES)
        )
    )


def check_model(text):
    """`text` if it is a model name or a model path; otherwise a ModelError listing the names."""
    if not is_model_name(text) and not is_model_path(text):
        raise unknown_model(text)
    return text


def parse_names(text, what="variant"):
    """A comma list of model names, each checked; paths are not names here."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not names:
        raise ModelError("{}s is empty".format(what))
    for name in names:
        if not is_model_name(name):
            raise unknown_model(name, what)
    return names


def check_variants(names):
    """`names` if each is a benchmark variant name or a model path; ValueError names the first
    other."""
    for name in names:
        if not (is_variant_name(name) or is_model_path(name)):
            raise ValueError(
                "unknown variant {!r}: give {}, or the path of a model file".format(
                    name, VARIANT_HELP
                )
            )
    return names
