"""Exported ONNX variants agree with torch, and the ONNX and torch paths find the same faces."""

import json

import pytest

from retinaface.detector import Detector
from retinaface.files import sha256_file
from retinaface.imageio import read_image
from retinaface.model import load_model
from retinaface.tools.export import PARITY_SIZES, parity
from tests.paths import IMAGES

# Faces found at native size, conf 0.6, by the torch model with the embedded trained weights.
EXPECTED_FACES = {
    "crowd.jpg": 25,
    "einstein.png": 1,
    "group.jpg": 11,
    "portrait_bw1.jpg": 1,
    "portrait_bw2.jpg": 1,
    "selfie.jpg": 1,
    "src_man1.jpg": 1,
    "src_man2.jpg": 1,
    "src_man3.jpg": 1,
    "src_meeting.jpg": 5,
    "src_portrait1.jpg": 1,
}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def assert_same_faces(found, reference, min_iou=0.9):
    assert len(found) == len(reference)
    for face in reference:
        assert max(iou(face["box"], other["box"]) for other in found) >= min_iou


def test_manifest_lists_files_with_their_digests(models_dir):
    manifest = json.loads((models_dir / "manifest.json").read_text())
    assert {"fp32", "torch", "fp32-static-640x480"} <= set(manifest["models"])
    for entry in manifest["models"].values():
        assert sha256_file(models_dir / entry["file"]) == entry["sha256"]
    assert manifest["models"]["fp32"]["opset"] >= 13


def test_dynamic_onnx_equals_torch_at_three_sizes(models_dir, weights_path):
    worst = parity(load_model(weights_path), models_dir / "fp32.onnx", PARITY_SIZES)
    print(f"max |onnx - torch| over {PARITY_SIZES} = {worst:.2e}")
    assert worst < 1e-3


def test_onnx_outputs_are_named_as_in_the_study(models_dir):
    import onnx

    graph = onnx.load(str(models_dir / "fp32.onnx")).graph
    assert [o.name for o in graph.output] == ["bbox", "confidence", "landmark"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)


@pytest.fixture(scope="module")
def detectors(models_dir):
    return (
        Detector(models_dir / "fp32.onnx"),
        Detector(models_dir / "retinaface-mnet025.pth"),
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_FACES))
def test_onnx_and_torch_find_the_same_faces(detectors, name):
    onnx_detector, torch_detector = detectors
    image = read_image(IMAGES / name)
    torch_faces = torch_detector.detect(image)
    assert len(torch_faces) == EXPECTED_FACES[name]
    assert_same_faces(onnx_detector.detect(image), torch_faces)


def test_static_variant_runs_in_opencv_at_its_size(models_dir, detectors):
    static = Detector(models_dir / "fp32-static-640x480.onnx", backend="opencv")
    image = read_image(IMAGES / "group.jpg")
    reference = Detector(models_dir / "fp32.onnx", size=(640, 480)).detect(image)
    assert static.size == (640, 480)
    assert_same_faces(static.detect(image), reference)


def test_resize_maps_faces_back_to_original_pixels(models_dir):
    image = read_image(IMAGES / "group.jpg")
    native = Detector(models_dir / "fp32.onnx").detect(image)
    resized = Detector(models_dir / "fp32.onnx", long_side=1100).detect(image)
    assert_same_faces(resized, native, min_iou=0.7)
