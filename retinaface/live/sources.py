"""Where `runner stream` gets frames: a V4L2 camera, a video file, a URL, the Pi camera module.

Every source has `read()` (the next BGR uint8 frame, or SourceEnded), `release()`, `kind` and a
`name` safe to show. Torch-free, Python 3.7+; cv2 and picamera2 are imported lazily.
"""

import os
import threading
import time

from ..errors import SourceError

CAMERA_LOST_AFTER_S = 2.0  # a camera that returns no frame for this long is gone
RECONNECT_MAX_S = 30.0  # the longest wait between two reconnects of a network source
NETWORK_TIMEOUT_MS = 10000  # opening or reading a network source fails after this long


class SourceEnded(Exception):
    """The source has no more frames: `lost` is True for a camera that went away."""

    def __init__(self, message, lost=False):
        Exception.__init__(self, message)
        self.lost = lost


def display_source(spec):
    """The source as safe to show: a URL without user:password or its query string (cameras
    take `?user=…&pwd=…`), only printable characters."""
    text = str(spec)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        rest, query, _ = rest.partition("?")
        rest = rest.split("#", 1)[0]
        host, sep, path = rest.partition("/")
        text = "{}://{}{}{}{}".format(
            scheme, host.rsplit("@", 1)[-1], sep, path, "?…" if query else ""
        )
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def source_kind(spec):
    """camera (V4L2 index or /dev/videoN), picamera, network (a URL) or file."""
    text = str(spec)
    if text.isdigit() or text.startswith("/dev/video"):
        return "camera"
    if text in ("picamera", "picamera2"):
        return "picamera"
    if "://" in text:
        return "network"
    return "file"


class OpenCVSource(object):
    """Frames from cv2.VideoCapture: a video file (paced at its own rate), a camera or a URL."""

    def __init__(self, spec, kind, loop=False, stop=None, log=None):
        self.spec = str(spec)
        self.kind = kind
        self.loop = loop
        self.stop = stop or threading.Event()
        self.log = log or (lambda line: None)
        self.name = display_source(spec)
        if kind == "file" and not os.path.isfile(self.spec):
            raise SourceError("video file not found: {}".format(self.name))
        if kind == "camera" and self.spec.startswith("/dev/") and not os.path.exists(self.spec):
            raise SourceError("camera not found: {}".format(self.name))
        self.capture = self._open()
        if self.capture is None:
            raise SourceError("cannot open {} {}".format(kind, self.name))
        self.period = self._file_period() if kind == "file" else 0.0
        self.next_due = time.monotonic()

    def _open(self):
        import cv2

        if self.kind == "camera":
            device = int(self.spec) if self.spec.isdigit() else self.spec
            capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue adds latency
        elif self.kind == "network" and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
            # A stalled camera must fail a read, not hang it (OpenCV >= 4.5.2; 4.5.1 has no such).
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
            timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
            capture = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, timeouts)
        else:
            capture = cv2.VideoCapture(self.spec)
        if not capture.isOpened():
            capture.release()
            return None
        return capture

    def _file_period(self):
        """Seconds between frames of a video file: it is replayed at its own frame rate."""
        import cv2

        fps = self.capture.get(cv2.CAP_PROP_FPS)
        return 1.0 / fps if 1.0 <= fps <= 1000.0 else 1.0 / 30

    def read(self):
        """The next frame (BGR uint8); raises SourceEnded at the end or when the source is gone."""
        if self.kind == "file":
            return self._read_file()
        if self.kind == "camera":
            return self._read_camera()
        return self._read_network()

    def _read_file(self):
        self.stop.wait(max(0.0, self.next_due - time.monotonic()))
        self.next_due = max(self.next_due + self.period, time.monotonic() - self.period)
        ok, frame = self.capture.read()
        if ok:
            return frame
        if not self.loop:
            raise SourceEnded("end of video file {}".format(self.name))
        self.capture.release()
        self.capture = self._open()
        ok, frame = self.capture.read() if self.capture is not None else (False, None)
        if not ok:
            raise SourceEnded("video file {} gives no frame after a rewind".format(self.name))
        return frame

    def _read_camera(self):
        failing_since = None
        while not self.stop.is_set():
            ok, frame = self.capture.read()
            if ok:
                return frame
            now = time.monotonic()
            failing_since = failing_since or now
            gone = self.spec.startswith("/dev/") and not os.path.exists(self.spec)
            if gone or now - failing_since > CAMERA_LOST_AFTER_S:
                raise SourceEnded(
                    "camera {} stopped delivering frames (unplugged?)".format(self.name), lost=True
                )
            self.stop.wait(0.05)
        raise SourceEnded("stopped")

    def _read_network(self):
        """A network source that fails is reopened with a doubling back-off, until stopped."""
        wait = 1.0
        while not self.stop.is_set():
            if self.capture is not None:
                ok, frame = self.capture.read()
                if ok:
                    return frame
                self.capture.release()
                self.capture = None
                self.log("lost {}; reconnecting".format(self.name))
            if self.stop.wait(wait):
                break
            self.capture = self._open()
            if self.capture is None:
                self.log("cannot reach {}; next try in {:.0f} s".format(self.name, wait * 2))
                wait = min(wait * 2, RECONNECT_MAX_S)
            else:
                self.log("reconnected to {}".format(self.name))
                wait = 1.0
        raise SourceEnded("stopped")

    def release(self):
        if self.capture is not None:
            self.capture.release()


class PiCameraSource(object):
    """The Raspberry Pi camera module through picamera2 (Raspberry Pi OS bullseye/bookworm)."""

    kind = "picamera"
    name = "picamera"

    def __init__(self, size=(640, 480)):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "source picamera: the picamera2 module is not importable (apt install "
                "python3-picamera2, and a venv made with --system-site-packages)"
            ) from None
        try:
            self.camera = Picamera2()
            # picamera2's "RGB888" is laid out B, G, R in memory: what OpenCV calls BGR.
            config = self.camera.create_video_configuration(
                main={"format": "RGB888", "size": tuple(size)}
            )
            self.camera.configure(config)
            self.camera.start()
        except Exception as error:
            raise SourceError("cannot start the Pi camera: {}".format(str(error)[:160])) from None

    def read(self):
        try:
            return self.camera.capture_array()
        except Exception as error:
            raise SourceEnded(
                "Pi camera stopped delivering frames: {}".format(str(error)[:160]), lost=True
            ) from None

    def release(self):
        self.camera.stop()
        self.camera.close()


def open_source(spec, loop=False, stop=None, log=None):
    kind = source_kind(spec)
    if kind == "picamera":
        return PiCameraSource()
    return OpenCVSource(spec, kind, loop=loop, stop=stop, log=log)
