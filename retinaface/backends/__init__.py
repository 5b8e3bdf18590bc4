"""The inference backends: one module per engine, chosen by name here (torch-free, Python 3.7+).

Every backend is a class with `__init__(model_path, threads=None, **options)`, an attribute
`fixed_size` ((W, H) a static-shape model dictates, or None) and `run(blob)`: a float32 NCHW BGR
blob minus the mean in, [boxes (1,N,4), scores (1,N,2) softmaxed, landmarks (1,N,10)] out as
numpy. Its module imports the engine inside `__init__`, so naming a backend costs nothing.
Options a backend does not know (e.g. `spinning`) are ignored.
"""

import importlib
import os
from collections import namedtuple

from ..errors import ModelError

# module: retinaface.backends.<module>; cls: its class; requires: the package it imports
# (asked by `missing_runtime`); suffixes: model files it is the default backend for.
Engine = namedtuple("Engine", "module cls requires suffixes")

# Adding an engine is one line here.
ENGINES = {
    "onnxruntime": Engine("onnxruntime", "OnnxRuntimeBackend", "onnxruntime", (".onnx",)),
    "opencv": Engine("opencv", "OpenCVBackend", "cv2", ()),
    "torch": Engine("torch", "TorchBackend", "torch", (".pth", ".pt")),
    "ncnn": Engine("ncnn", "NcnnBackend", "ncnn", (".param",)),
    "mnn": Engine("mnn", "MnnBackend", "MNN", (".mnn",)),
    # Any one of these interpreters will do: the Pi's wheel, LiteRT's, TensorFlow's.
    "tflite": Engine(
        "tflite", "TFLiteBackend", ("tflite_runtime", "ai_edge_litert", "tensorflow"), (".tflite",)
    ),
}
BACKENDS = tuple(ENGINES)
DEFAULT_BACKEND = "onnxruntime"


def backend_for(model_path):
    """The default backend for a model file, by suffix (.pth/.pt torch, .param ncnn, .mnn mnn,
    else onnxruntime)."""
    path = str(model_path)
    for name, engine in ENGINES.items():
        if engine.suffixes and path.endswith(engine.suffixes):
            return name
    return DEFAULT_BACKEND


def backend_class(name):
    """The class of backend `name` (imports its module, not its engine)."""
    engine = ENGINES.get(name)
    if engine is None:
        raise ModelError("unknown backend {!r}: choose one of {}".format(name, ", ".join(BACKENDS)))
    module = importlib.import_module("{}.{}".format(__name__, engine.module))
    return getattr(module, engine.cls)


def make_backend(name, model_path, threads=None, **options):
    """Backend `name` loaded with `model_path`; a missing file or engine is a ModelError."""
    if not os.path.isfile(str(model_path)):
        raise ModelError("model file not found: {}".format(model_path))
    return backend_class(name)(model_path, threads, **options)


def missing_runtime(name):
    """Why backend `name` cannot run on this host (its package does not import), or None."""
    engine = ENGINES.get(name)
    if engine is None:
        return "unknown backend {!r}".format(name)
    reasons = []
    for module in requirements(engine):
        try:
            importlib.import_module(module)
            return None
        except Exception as error:  # ImportError, or a broken binary wheel raising anything
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            reasons.append(
                "{} cannot be imported on this host ({}: {})".format(
                    module, type(error).__name__, first
                )
            )
    return "; ".join(reasons)


def requirements(engine):
    """The package(s) an engine imports: one name, or alternatives of which one is enough."""
    return engine.requires if isinstance(engine.requires, tuple) else (engine.requires,)
