"""`python -m retinaface.runner stream`: faces on a camera or video, live over HTTP and JSON lines.

Capture runs in its own thread and keeps only the newest frame: inference always takes the
latest one and the frames it had no time for are dropped (counted), so a slow host falls behind
by at most one frame instead of growing a queue. Annotating and JPEG encoding run in a third
thread, once per processed frame, for every viewer at once. Torch-free, Python 3.7+, numpy 1.16+.

Exit codes: 0 stopped (SIGTERM/SIGINT, --max-frames, end of a video file), 1 bad input (source,
model, flags), 3 the camera stopped delivering frames (unplugged): a service manager restarts it.
"""

import collections
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional, Tuple

from ..config import CONF_THRESHOLD
from ..errors import SettingError
from .sources import SourceEnded, display_source, open_source

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SOURCE_LOST = 3

JPEG_QUALITY = 80
WINDOW = 100  # frames in the sliding window behind fps and latency percentiles
HEALTHY_WITHIN_S = 10.0  # /healthz fails when no frame was processed for this long


class NewestSlot(object):
    """Holds only the newest item; putting over an item nobody took counts it as dropped."""

    def __init__(self):
        self._changed = threading.Condition()
        self._item = None
        self.dropped = 0
        self.ended = None  # the SourceEnded that finished the producer

    def put(self, item):
        with self._changed:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._changed.notify_all()

    def finish(self, ended):
        with self._changed:
            self.ended = ended
            self._changed.notify_all()

    def take(self, timeout):
        """The newest item, or None after `timeout` or once the producer finished."""
        with self._changed:
            self._changed.wait_for(lambda: self._item is not None or self.ended, timeout)
            item, self._item = self._item, None
            return item


def capture_loop(source, frames, stop):
    """Read frames into the slot as (frame number, wall time, image) until stopped or ended."""
    number = 0
    try:
        while not stop.is_set():
            image = source.read()
            frames.put((number, time.time(), time.monotonic(), image))
            number += 1
        frames.finish(SourceEnded("stopped"))
    except SourceEnded as ended:
        frames.finish(ended)
    except Exception as error:  # a driver error must end the run, not hang it
        frames.finish(SourceEnded("source {} failed: {}".format(source.name, error), lost=True))


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))
    return round(ordered[index], 2)


class StreamStats(object):
    """Counters and sliding windows behind /metrics and the closing line."""

    def __init__(self, source, model, backend):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.source, self.model, self.backend = source, model, backend
        self.frames = 0
        self.faces = 0
        self.first_done = None
        self.last_done = None
        self.done_times = collections.deque(maxlen=WINDOW)
        self.latencies = collections.deque(maxlen=WINDOW)  # capture -> faces known, ms
        self.detect_ms = collections.deque(maxlen=WINDOW)  # pre + infer + post, ms

    def record(self, captured, started, done, faces):
        with self.lock:
            self.frames += 1
            self.faces = faces
            self.first_done = self.first_done or done
            self.last_done = done
            self.done_times.append(done)
            self.latencies.append((done - captured) * 1000.0)
            self.detect_ms.append((done - started) * 1000.0)

    def fps(self):
        times = self.done_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return round((len(times) - 1) / (times[-1] - times[0]), 2)

    def overall_fps(self):
        """Processed frames per second from the first processed frame to the last."""
        if self.frames < 2 or self.last_done <= self.first_done:
            return 0.0
        return (self.frames - 1) / (self.last_done - self.first_done)

    def snapshot(self, dropped):
        with self.lock:
            return {
                "frames": self.frames,
                "dropped": dropped,
                "fps": self.fps(),
                "latency_ms": {
                    "p50": percentile(list(self.latencies), 50),
                    "p90": percentile(list(self.latencies), 90),
                },
                "detect_ms": {
                    "p50": percentile(list(self.detect_ms), 50),
                    "p90": percentile(list(self.detect_ms), 90),
                },
                "faces": self.faces,
                "source": self.source,
                "model": self.model,
                "backend": self.backend,
                "uptime_s": round(time.monotonic() - self.started, 1),
            }

    def healthy(self):
        last = self.last_done
        return last is not None and time.monotonic() - last < HEALTHY_WITHIN_S


class JsonLines(object):
    """Appends one JSON line per frame; past `max_bytes` the file rotates to .1, .2 ... .keep.

    Each line is written whole and flushed, so every file holds complete lines only.
    """

    def __init__(self, path, max_bytes, keep):
        self.path = str(path)
        self.max_bytes = max_bytes
        self.keep = keep
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise SettingError("jsonl", "{{setting}}: folder {} does not exist".format(directory))
        try:
            self.handle = open(self.path, "ab")
        except OSError as error:
            raise SettingError(
                "jsonl", "{{setting}}: cannot write {}: {}".format(self.path, error.strerror)
            ) from None
        self.size = self.handle.tell()

    def write(self, record):
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        if self.size and self.size + len(line) > self.max_bytes:
            self._rotate()
        self.handle.write(line)
        self.handle.flush()
        self.size += len(line)

    def _rotate(self):
        self.handle.close()
        for index in range(self.keep - 1, 0, -1):
            older = "{}.{}".format(self.path, index)
            if os.path.exists(older):
                os.replace(older, "{}.{}".format(self.path, index + 1))
        if self.keep > 0:
            os.replace(self.path, self.path + ".1")
        else:
            os.unlink(self.path)
        self.handle = open(self.path, "ab")
        self.size = 0

    def close(self):
        self.handle.close()


def publish_loop(results, board, stop):
    """Annotate and JPEG-encode the newest result once, for every viewer (own thread).

    Lines are at least 2 px: a 1 px box does not survive JPEG compression on a small frame.
    """
    import cv2

    from ..imageio import annotate

    while not stop.is_set():
        item = results.take(timeout=0.2)
        if item is None:
            continue
        number, image, faces = item
        ok, encoded = cv2.imencode(
            ".jpg",
            annotate(image, faces, min_thickness=2),
            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        )
        if ok:
            board.publish(encoded.tobytes(), number)


def parse_http(text):
    """'HOST:PORT', ':PORT' or 'PORT' -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = str(text).rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise SettingError(
            "http", "{{setting}} must be HOST:PORT (e.g. 127.0.0.1:8080), not {!r}".format(text)
        )
    return host or "127.0.0.1", int(port)


def read_http_token(token, token_file):
    """The live view's token from --http-token or the first line of --http-token-file."""
    if token is not None and token_file is not None:
        raise SettingError("http_token", "give --http-token or --http-token-file, not both")
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            message = "--http-token-file {}: cannot read: {}".format(token_file, error)
            raise SettingError("http_token_file", message) from None
    if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
        raise SettingError("http_token", "--http-token: 8 or more printable characters, no spaces")
    return token


@dataclass
class StreamConfig:
    """One run of the stream command: the model, the source and where faces go."""

    model: str
    source: str
    loop: bool = False  # replay a video file forever
    backend: Optional[str] = None  # None: from the model file
    size: Optional[Tuple[int, int]] = None  # (W, H) frames are resized to
    long_side: Optional[int] = None
    threads: Optional[int] = None
    conf_threshold: float = CONF_THRESHOLD
    http: Optional[str] = None  # HOST:PORT of the live view
    jsonl: Optional[str] = None  # one JSON line per processed frame
    jsonl_max_mb: float = 50.0
    jsonl_keep: int = 3
    max_frames: Optional[int] = None
    http_token: Optional[str] = None  # required for /snapshot.jpg and /stream.mjpg
    http_token_file: Optional[str] = None  # or the first line of this file

    def check(self):
        if self.max_frames is not None and self.max_frames < 1:
            raise SettingError(
                "max_frames", "{{setting}} must be at least 1, not {}".format(self.max_frames)
            )
        return self


class Streamer(object):
    """One run of the stream command: source, detector, optional HTTP and JSON lines."""

    def __init__(self, config, log):
        from ..detector import Detector

        self.config = config.check()
        self.log = log
        self.stop = threading.Event()
        self.stop_reason = None
        self.http = parse_http(config.http) if config.http else None
        self.http_token = read_http_token(config.http_token, config.http_token_file)
        self.detector = Detector(
            config.model,
            backend=config.backend,
            size=config.size,
            long_side=config.long_side,
            conf_threshold=config.conf_threshold,
            threads=config.threads,
            spinning=False,  # capture and JPEG threads need the cores between two inferences
        )
        self.source = open_source(config.source, loop=config.loop, stop=self.stop, log=log)
        self.frames = NewestSlot()
        self.results = NewestSlot()
        self.stats = StreamStats(
            display_source(config.source),
            os.path.basename(str(config.model)),
            self.detector.backend_name,
        )
        self.jsonl = None
        if config.jsonl:
            self.jsonl = JsonLines(
                config.jsonl, int(config.jsonl_max_mb * 1024 * 1024), max(0, config.jsonl_keep)
            )
        self.server = None
        self.threads = []

    def metrics(self):
        return self.stats.snapshot(self.frames.dropped)

    def request_stop(self, signum, _frame=None):
        self.stop_reason = signal.Signals(signum).name
        self.stop.set()

    def start(self):
        self._spawn("capture", capture_loop, self.source, self.frames, self.stop)
        if self.http:
            from .http import FrameBoard, LiveServer

            board = FrameBoard()
            try:
                self.server = LiveServer(
                    self.http[0],
                    self.http[1],
                    board,
                    self.metrics,
                    self.stats.healthy,
                    token=self.http_token,
                )
            except OSError as error:
                raise SettingError(
                    "http",
                    "{{setting}} {}: cannot listen: {}".format(self.config.http, error.strerror),
                ) from None
            self.server.start()
            self._spawn("publish", publish_loop, self.results, board, self.stop)

    def _spawn(self, name, target, *args):
        thread = threading.Thread(target=target, args=args, name=name)
        thread.daemon = True  # a camera read stuck in a driver must not keep the process alive
        thread.start()
        self.threads.append(thread)

    def run(self):
        """Process the newest frame until stopped; returns the SourceEnded that ended it, or None."""
        detector = self.detector
        while not self.stop.is_set():
            item = self.frames.take(timeout=0.2)
            if item is None:
                if self.frames.ended is not None:
                    return self.frames.ended
                continue
            number, wall, captured, image = item
            started = time.monotonic()
            faces = detector.detect(image)
            self.stats.record(captured, started, time.monotonic(), len(faces))
            if self.jsonl:
                self.jsonl.write({"frame": number, "t": round(wall, 3), "faces": faces})
            if self.server:
                self.results.put((number, image, faces))
            if self.config.max_frames and self.stats.frames >= self.config.max_frames:
                self.stop_reason = "--max-frames {}".format(self.config.max_frames)
                break
        return None

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(0.5)
        if self.server:
            self.server.stop()
        if self.jsonl:
            self.jsonl.close()
        if not self.threads or not self.threads[0].is_alive():
            self.source.release()  # only once capture no longer reads from it


def summary(stats, dropped):
    return "{} frames processed ({:.2f} fps), {} dropped".format(
        stats.frames, stats.overall_fps(), dropped
    )
