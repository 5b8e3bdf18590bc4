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
import sys
import threading
import time

from .config import CONF_THRESHOLD
from .errors import SourceError
from .frame_sources import SourceEnded, display_source, open_source

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
            raise SourceError("--jsonl: folder {} does not exist".format(directory))
        try:
            self.handle = open(self.path, "ab")
        except OSError as error:
            raise SourceError(
                "--jsonl: cannot write {}: {}".format(self.path, error.strerror)
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

    from .imageio import annotate

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
        raise SourceError("--http must be HOST:PORT (e.g. 127.0.0.1:8080), not {!r}".format(text))
    return host or "127.0.0.1", int(port)


def add_parser(commands, size_type):
    stream = commands.add_parser(
        "stream", help="detect faces on a camera or video; live over HTTP and JSON lines"
    )
    stream.add_argument("--model", required=True, help="an .onnx variant or a biubug6 .pth")
    stream.add_argument(
        "--source",
        required=True,
        help="a V4L2 index (0) or /dev/videoN, a video file, a URL OpenCV opens "
        "(rtsp://, http://), or picamera (the Pi camera module through picamera2)",
    )
    stream.add_argument("--loop", action="store_true", help="replay a video file forever")
    stream.add_argument(
        "--backend", choices=("onnxruntime", "opencv", "torch"), help="default: from the model file"
    )
    stream.add_argument("--size", type=size_type, help="resize frames to WIDTHxHEIGHT")
    stream.add_argument(
        "--long-side", type=int, help="resize so the longer side has this many pixels"
    )
    stream.add_argument("--threads", type=int, help="inference threads")
    stream.add_argument(
        "--conf", type=float, default=CONF_THRESHOLD, help="score threshold (default %(default)s)"
    )
    stream.add_argument(
        "--http", help="serve the live view on HOST:PORT (127.0.0.1 when only :PORT is given)"
    )
    stream.add_argument("--jsonl", help="append one JSON line per processed frame to this file")
    stream.add_argument(
        "--jsonl-max-mb",
        type=float,
        default=50.0,
        help="rotate the JSON lines file past this size (default %(default)s MB)",
    )
    stream.add_argument(
        "--jsonl-keep", type=int, default=3, help="rotated files kept (default %(default)s)"
    )
    stream.add_argument("--max-frames", type=int, help="stop after processing this many frames")
    return stream


class Streamer(object):
    """One run of the stream command: source, detector, optional HTTP and JSON lines."""

    def __init__(self, args, log):
        from .detector import Detector

        if args.max_frames is not None and args.max_frames < 1:
            raise SourceError("--max-frames must be at least 1, not {}".format(args.max_frames))
        self.args = args
        self.log = log
        self.stop = threading.Event()
        self.stop_reason = None
        self.http = parse_http(args.http) if args.http else None
        self.detector = Detector(
            args.model,
            backend=args.backend,
            size=args.size,
            long_side=args.long_side,
            conf_threshold=args.conf,
            threads=args.threads,
            spinning=False,  # capture and JPEG threads need the cores between two inferences
        )
        self.source = open_source(args.source, loop=args.loop, stop=self.stop, log=log)
        self.frames = NewestSlot()
        self.results = NewestSlot()
        self.stats = StreamStats(
            display_source(args.source),
            os.path.basename(str(args.model)),
            self.detector.backend_name,
        )
        self.jsonl = None
        if args.jsonl:
            self.jsonl = JsonLines(
                args.jsonl, int(args.jsonl_max_mb * 1024 * 1024), max(0, args.jsonl_keep)
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
            from .live_http import FrameBoard, LiveServer

            board = FrameBoard()
            try:
                self.server = LiveServer(
                    self.http[0], self.http[1], board, self.metrics, self.stats.healthy
                )
            except OSError as error:
                raise SourceError(
                    "--http {}: cannot listen: {}".format(self.args.http, error.strerror)
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
            if self.args.max_frames and self.stats.frames >= self.args.max_frames:
                self.stop_reason = "--max-frames {}".format(self.args.max_frames)
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


def main_stream(args):
    """The stream command: returns the exit code (see the module docstring)."""

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    streamer = Streamer(args, log)
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, streamer.request_stop)
    try:
        streamer.start()
        where = ""
        if streamer.server:
            where = " on http://{}:{}/".format(*streamer.server.address)
        sys.stdout.write(
            "streaming {} with {} ({}){}\n".format(
                streamer.stats.source, streamer.stats.model, streamer.detector.backend_name, where
            )
        )
        sys.stdout.flush()
        ended = streamer.run()
    finally:
        streamer.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    done = summary(streamer.stats, streamer.frames.dropped)
    if ended is not None and ended.lost:
        log("error: {}; {}".format(ended, done))
        return EXIT_SOURCE_LOST
    reason = str(ended) if ended is not None else "stopped by {}".format(streamer.stop_reason)
    sys.stdout.write("{}: {}\n".format(reason, done))
    sys.stdout.flush()
    return EXIT_OK
