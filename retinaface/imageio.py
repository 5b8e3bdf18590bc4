"""Read images, draw faces, write image/JSON results atomically (torch-free; cv2 imported lazily)."""

import json
import os

from .errors import ModelError, SettingError
from .files import write_atomic


def read_image(path):
    """Read a color image as BGR uint8; a missing or unreadable file is a ModelError naming it."""
    import cv2

    path = str(path)
    if os.path.isdir(path):
        raise ModelError("image {} is a folder, not a photograph".format(path))
    if not os.path.isfile(path):
        raise ModelError("image not found: {}".format(path))
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ModelError("cannot read image {}: not an image format OpenCV knows".format(path))
    return image


def write_json(path, payload):
    write_atomic(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


LANDMARK_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))
# What --out can write: the extension names the format cv2.imencode produces.
IMAGE_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def check_output_image(path):
    """Refuse an --out path before any work: unknown extension or a folder that does not exist."""
    path = str(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in IMAGE_FORMATS:
        raise SettingError(
            "out",
            "{{setting}} {}: the extension names no image format I write (use one of {})".format(
                path, ", ".join(IMAGE_FORMATS)
            ),
        )
    if os.path.isdir(path):
        raise SettingError("out", "{{setting}} {} is a folder; give a file name".format(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SettingError("out", "{{setting}} {}: folder {} does not exist".format(path, folder))


def clip_box(box, width, height):
    """[x1, y1, x2, y2] limited to the image (0..width, 0..height)."""
    x1, y1, x2, y2 = box
    return [
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    ]


def annotate(image, faces, min_thickness=1):
    """A copy of `image` with each face's box, score and 5 landmarks drawn on it.

    Scores sit on a filled box inside the picture (above the face, or inside it at the top
    edge) so they stay readable on light areas; landmark dots grow with the face.
    """
    import cv2

    canvas = image.copy()
    height, width = image.shape[:2]
    thickness = max(min_thickness, int(round(max(height, width) / 500.0)))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness
    for face in faces:
        x1, y1, x2, y2 = [int(round(v)) for v in clip_box(face["box"], width - 1, height - 1)]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        _draw_label(canvas, "{:.2f}".format(face["score"]), x1, y1, font, scale, thickness)
        radius = max(thickness + 1, int(round(min(x2 - x1, y2 - y1) / 40.0)))
        for (x, y), color in zip(face["landmarks"], LANDMARK_COLORS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, color, -1)
    return canvas


def _draw_label(canvas, label, x, y, font, scale, thickness):
    """White text on a filled dark-green box at (x, y), moved to lie wholly inside the canvas."""
    import cv2

    height, width = canvas.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(label, font, scale, thickness)
    box_w, box_h = text_w + 2 * thickness, text_h + baseline + 2 * thickness
    left = min(max(0, x), max(0, width - box_w))
    top = y - box_h if y - box_h >= 0 else y  # above the face, else just inside its top edge
    top = min(max(0, top), max(0, height - box_h))
    cv2.rectangle(canvas, (left, top), (left + box_w - 1, top + box_h - 1), (0, 120, 0), -1)
    origin = (left + thickness, top + thickness + text_h)
    cv2.putText(canvas, label, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def write_image(path, image):
    """Encode `image` in the format the extension of `path` names, then write it atomically."""
    import cv2

    check_output_image(path)
    extension = os.path.splitext(str(path))[1].lower()
    try:
        ok, encoded = cv2.imencode(extension, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ModelError("cannot write {}: this OpenCV cannot encode {}".format(path, extension))
    try:
        write_atomic(path, encoded.tobytes())
    except OSError as error:
        raise ModelError("cannot write {}: {}".format(path, error.strerror or error)) from None
