"""Read images, draw faces, write PNG/JSON results atomically (torch-free; cv2 imported lazily)."""

import json
import os
import tempfile

from .errors import ModelError


def read_image(path):
    """Read a color image as BGR uint8; a missing or unreadable file is a ModelError naming it."""
    import cv2

    path = str(path)
    if not os.path.isfile(path):
        raise ModelError("image not found: {}".format(path))
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ModelError("cannot read image {}: not an image format OpenCV knows".format(path))
    return image


def write_atomic(path, data):
    """Write bytes to a temp name beside `path`, then rename over it."""
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, payload):
    write_atomic(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


LANDMARK_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def annotate(image, faces, min_thickness=1):
    """A copy of `image` with each face's box, score and 5 landmarks drawn on it."""
    import cv2

    canvas = image.copy()
    thickness = max(min_thickness, int(round(max(image.shape[:2]) / 500.0)))
    for face in faces:
        x1, y1, x2, y2 = [int(round(v)) for v in face["box"]]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        label = "{:.2f}".format(face["score"])
        cv2.putText(
            canvas,
            label,
            (x1, max(0, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (255, 255, 255),
            thickness,
        )
        for (x, y), color in zip(face["landmarks"], LANDMARK_COLORS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, color, -1)
    return canvas


def write_png(path, image):
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ModelError("cannot encode PNG for {}".format(path))
    write_atomic(path, encoded.tobytes())
