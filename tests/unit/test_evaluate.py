"""The agreement metrics and the INT8 gate against values worked out by hand (in the comments)."""

import pytest

from retinaface.tools import evaluate
from retinaface.tools.evaluate import agreement, average_precision, int8_below_gate, match

A, B = [0, 0, 10, 10], [20, 0, 30, 10]


def face(box, score, landmarks=None):
    return {"box": box, "score": score, "landmarks": landmarks or [[0, 0]] * 5}


def test_match_is_greedy_by_score_and_takes_each_reference_once():
    found = [
        face(A, 0.6),  # IoU 1.0 with A, but A is taken by the higher score below
        face([1, 0, 11, 10], 0.9),  # IoU with A: 90 / (100 + 100 - 90) = 0.818
        face(B, 0.8),
        face([50, 50, 60, 60], 0.7),  # overlaps nothing
    ]
    assert match([{"box": A}, {"box": B}], found) == [(1, 0), (2, 1), (3, None), (0, None)]


def test_match_threshold_is_iou_half_inclusive():
    ref = [{"box": A}]
    assert evaluate.IOU == 0.5
    assert match(ref, [face([0, 0, 10, 20], 0.9)]) == [(0, 0)]  # 100 / 200 = 0.5 exactly
    assert match(ref, [face([0, 0, 10, 20.5], 0.9)]) == [(0, None)]  # 100 / 205 = 0.488


def test_average_precision_voc_all_points():
    # ranks by score: hit, miss, hit, miss; 3 positives.
    # precision at recall 1/3 is 1, interpolated precision at recall 2/3 is 2/3 (rank 3),
    # recall 1 is never reached: AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9.
    assert average_precision([True, False, True, False], [0.9, 0.8, 0.7, 0.6], 3) == pytest.approx(
        5 / 9, abs=1e-12
    )
    # the same detections given out of order: ranked by score first
    assert average_precision([False, True, False, True], [0.8, 0.9, 0.6, 0.7], 3) == pytest.approx(
        5 / 9, abs=1e-12
    )
    # a miss ranked first: precision 1/2 at recall 1/2 (interpolated up to the 2/3 at recall 1)
    # and 2/3 at recall 1: AP = 1/2 * 2/3 + 1/2 * 2/3
    assert average_precision([False, True, True], [0.9, 0.8, 0.7], 2) == pytest.approx(2 / 3)
    assert average_precision([True, True], [0.9, 0.8], 2) == 1.0
    assert average_precision([], [], 0) == 1.0 and average_precision([False], [0.9], 0) == 0.0


def test_agreement_on_two_images_by_hand():
    moved = [[x + 1, y] for x, y in [[2, 3], [7, 3], [5, 5], [3, 8], [7, 8]]]
    reference = {
        "a.jpg": [face(A, 0.99, [[2, 3], [7, 3], [5, 5], [3, 8], [7, 8]]), face(B, 0.99)],
        "b.jpg": [face([0, 0, 20, 20], 0.99)],
    }
    found = {
        "a.jpg": [
            face(A, 0.9, moved),  # A, every landmark 1 px off: error 1 / sqrt(100) = 0.1
            face([50, 50, 60, 60], 0.8),  # a strong false positive
            face(B, 0.3),  # B, but below the 0.5 score of recall and precision; counts for AP
        ],
        "b.jpg": [],  # the face of b is missed
    }
    # recall: 1 of 3 reference faces matched by a face >= 0.5; precision: 1 of 2 such faces.
    # AP over (0.9 hit, 0.8 miss, 0.3 hit) with 3 positives: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert agreement(reference, found) == {
        "recall": pytest.approx(1 / 3),
        "precision": 0.5,
        "ap50": pytest.approx(5 / 9),
        "landmark_nme": pytest.approx(0.1),
        "reference_faces": 3,
        "found_faces": 2,
    }


def test_int8_gate_holds_at_095_and_covers_both_int8_forms():
    from retinaface.tools.export import GATED, INT8_VARIANTS

    assert set(evaluate.INT8_GATED) == {name for name, _, _ in INT8_VARIANTS}
    assert set(evaluate.INT8_GATED) < set(GATED)  # export gates the engines' INT8 variants too
    metrics = {"int8": {"recall": 0.95}, "int8-qop": {"recall": 0.95}}
    assert int8_below_gate(metrics) == []  # exactly at the threshold passes
    metrics["int8-qop"]["recall"] = 0.9499
    assert int8_below_gate(metrics) == [("int8-qop", 0.9499)]  # the QOperator form is gated too
    metrics["int8"]["recall"] = 0.94
    assert int8_below_gate(metrics) == [("int8", 0.94), ("int8-qop", 0.9499)]
