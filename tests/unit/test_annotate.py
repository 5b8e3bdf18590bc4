"""The annotated picture: readable labels inside the image, landmarks sized to the face,
boxes clipped to the image; --out encodes the format its extension names."""

from __future__ import annotations

import numpy as np
import pytest

from retinaface.errors import ModelError
from retinaface.imageio import annotate, clip_box, write_image

LABEL_FILL = (0, 120, 0)


def face(box, score=0.97, landmarks=None):
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return {"box": box, "score": score, "landmarks": landmarks or [[cx, cy]] * 5}


def label_pixels(canvas):
    return np.argwhere(np.all(canvas == LABEL_FILL, axis=2))


def test_a_face_at_the_top_right_corner_gets_its_label_inside_on_a_filled_box():
    white = np.full((200, 300, 3), 255, np.uint8)
    canvas = annotate(white, [face([250.0, -12.0, 330.0, 60.0])])
    fill = label_pixels(canvas)
    assert len(fill) > 100  # a filled background, not bare text
    top, left = fill.min(axis=0)
    bottom, right = fill.max(axis=0)
    assert top == 0 and right <= 299  # wholly inside the picture
    # the white score text is drawn on that background (readable on a white photo)
    region = canvas[top : bottom + 1, left : right + 1]
    assert np.sum(np.all(region > 200, axis=2)) > 20


def test_landmark_dots_grow_with_the_face():
    def dot_area(size):
        image = np.zeros((1200, 1200, 3), np.uint8)
        box = [100.0, 300.0, 100.0 + size, 300.0 + size]
        marks = [[100.0 + size / 2, 300.0 + size / 2]] * 5
        canvas = annotate(image, [face(box, landmarks=marks)])
        return int(np.sum(np.all(canvas == (255, 0, 0), axis=2)))  # the last landmark's colour

    small, large = dot_area(40), dot_area(800)
    assert large > 10 * small


def test_clip_box():
    assert clip_box([-3.5, -1.0, 700.0, 80.0], 640, 480) == [0.0, 0.0, 640, 80.0]
    assert clip_box([10.0, 20.0, 30.0, 40.0], 640, 480) == [10.0, 20.0, 30.0, 40.0]


@pytest.mark.parametrize(
    "name, magic",
    [
        ("a.png", b"\x89PNG"),
        ("a.jpg", b"\xff\xd8\xff"),
        ("a.JPEG", b"\xff\xd8\xff"),
        ("a.bmp", b"BM"),
        ("a.tif", b"II*\x00"),
    ],
)
def test_write_image_encodes_what_the_extension_names(tmp_path, name, magic):
    path = tmp_path / name
    write_image(path, np.zeros((8, 8, 3), np.uint8))
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_write_image_refuses_an_unknown_extension(tmp_path):
    with pytest.raises(ModelError, match=r"\.gif"):
        write_image(tmp_path / "a.gif", np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
