"""`python -m retinaface.runner ros`: the detector as a ROS 1 node (Debian's ros_comm, rospy).

Subscribes to an image topic (sensor_msgs/Image in bgr8, rgb8 or mono8, or
sensor_msgs/CompressedImage: the type is looked up on the master), detects faces on the newest
frame only (like `stream`: frames that arrive while one is processed are dropped and counted)
and publishes one JSON object per frame as std_msgs/String:

    {"stamp": {"secs": S, "nsecs": N}, "frame_id": "...", "seq": Q, "width": W, "height": H,
     "model": "fp32-opt.onnx", "backend": "onnxruntime", "faces": [{"box", "score", "landmarks"}]}

plus, once a second, throughput and latency as JSON on the stats topic and as a
diagnostic_msgs/DiagnosticArray on /diagnostics; optionally an annotated bgr8 image.

Settings come from flags, then the node's private ROS parameters (~model, ~threads, ~conf,
~image_topic, ...), then defaults: a flag wins. Everything the graph sends (parameters, image
messages) is checked here; a bad image message is logged and skipped. SIGTERM and SIGINT stop
the node cleanly (exit 0); bad settings exit 1 with one line. rospy is imported only when this
command runs, so the runner's other commands work on a host without ROS. Python 3.7+.
"""

import json
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Optional, Tuple

from ..config import CONF_THRESHOLD
from ..errors import ModelError

RAW_TYPE = "sensor_msgs/Image"
COMPRESSED_TYPE = "sensor_msgs/CompressedImage"
ENCODINGS = {"bgr8": 3, "rgb8": 3, "mono8": 1}
BACKENDS = ("onnxruntime", "opencv", "torch")
MAX_PIXELS = 4096 * 4096  # a frame larger than this is refused, not decoded
MAX_COMPRESSED_BYTES = 32 * 1024 * 1024
MAX_FRAME_ID = 256  # characters of a header's frame_id echoed into the JSON
STATS_EVERY_S = 1.0
HEALTHY_WITHIN_S = 10.0  # /diagnostics says WARN when no frame was processed for this long
# ROS graph names: relative, global (/a/b) or private (~a).
_NAME = re.compile(r"^[~/]?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class RosConfig:
    """What one run of the node uses; built by `config_from` from flags and ROS parameters."""

    model: str
    image_topic: str = "/camera/image_raw"
    faces_topic: str = "/retinaface/faces"
    annotated_topic: Optional[str] = None  # off unless given
    stats_topic: str = "/retinaface/stats"
    threads: Optional[int] = None
    conf: float = CONF_THRESHOLD
    backend: Optional[str] = None  # None: from the model file
    size: Optional[Tuple[int, int]] = None
    long_side: Optional[int] = None
    max_frames: Optional[int] = None  # stop after this many processed frames (exit 0)


class BadFrame(ValueError):
    """An image message the node cannot use; it is logged and skipped."""


def add_parser(commands, size_type):
    ros = commands.add_parser(
        "ros",
        help="detect faces on a ROS image topic; publish them as JSON (std_msgs/String)",
        description="Flags win over the node's private ROS parameters (~model, ~threads, ~conf, "
        "~image_topic, ~faces_topic, ~annotated_topic, ~stats_topic, ~backend, ~size, "
        "~long_side). Trailing NAME:=VALUE words are ROS remappings (_param:=value sets ~param).",
    )
    ros.add_argument("--model", help="a variant name (models/NAME.onnx here) or an .onnx path")
    ros.add_argument(
        "--image-topic",
        help="sensor_msgs/Image or CompressedImage (default %s)" % RosConfig.image_topic,
    )
    ros.add_argument("--faces-topic", help="JSON faces out (default %s)" % RosConfig.faces_topic)
    ros.add_argument("--annotated-topic", help="also publish an annotated bgr8 image here")
    ros.add_argument("--stats-topic", help="JSON stats out (default %s)" % RosConfig.stats_topic)
    ros.add_argument("--threads", type=int, help="inference threads")
    ros.add_argument("--conf", type=float, help="score threshold (default %s)" % CONF_THRESHOLD)
    ros.add_argument("--backend", choices=BACKENDS, help="default: from the model file")
    ros.add_argument("--size", type=size_type, help="resize frames to WIDTHxHEIGHT")
    ros.add_argument("--long-side", type=int, help="resize so the longer side has this many px")
    ros.add_argument("--max-frames", type=int, help="stop after processing this many frames")
    ros.add_argument("--name", default="retinaface", help="the node's name (default %(default)s)")
    ros.add_argument("remaps", nargs="*", metavar="NAME:=VALUE", help="ROS remappings")
    return ros


def _topic(value, where):
    if not isinstance(value, str) or not _NAME.match(value):
        raise ModelError(
            "{}: {!r} is not a ROS topic name (e.g. /camera/image_raw)".format(where, value)
        )
    return value


def _whole(value, where, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(
            "{}: {!r} must be a whole number from {} to {}".format(where, value, low, high)
        )
    return value


def _check(name, value, where):
    """One setting from a flag or a ROS parameter, checked (parameters are the graph's data)."""
    if name == "model":
        if not isinstance(value, str) or not value.strip():
            raise ModelError("{}: give a model name or path, not {!r}".format(where, value))
        return value
    if name.endswith("_topic"):
        return _topic(value, where)
    if name == "threads":
        return _whole(value, where, 1, 64)
    if name in ("long_side", "max_frames"):
        return _whole(value, where, 1, 1 << 30)
    if name == "conf":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or math.isnan(value)
            or not 0.0 < value <= 1.0
        ):
            raise ModelError("{}: {!r} must be a score threshold in (0, 1]".format(where, value))
        return float(value)
    if name == "backend":
        if value not in BACKENDS:
            raise ModelError("{}: {!r} is not one of {}".format(where, value, ", ".join(BACKENDS)))
        return value
    if name == "size":
        if isinstance(value, str):
            from ..names import parse_size

            try:
                return parse_size(value)
            except ValueError as error:
                raise ModelError("{}: {}".format(where, error)) from None
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return (_whole(value[0], where, 1, 8192), _whole(value[1], where, 1, 8192))
        raise ModelError("{}: {!r} must be WIDTHxHEIGHT, e.g. 640x480".format(where, value))
    raise ModelError("{}: unknown setting".format(where))


def config_from(flags, params):
    """RosConfig from flag values (None: not given) and the node's private parameters (a dict)."""
    if not isinstance(params, dict):
        params = {}
    values = {}
    for field in fields(RosConfig):
        name = field.name
        flag = flags.get(name)
        if flag is not None:
            values[name] = _check(name, flag, "--" + name.replace("_", "-"))
        elif params.get(name) is not None and name != "max_frames":
            values[name] = _check(name, params[name], "ROS parameter ~" + name)
    if "model" not in values:
        raise ModelError("no model: give --model NAME|PATH or the ROS parameter ~model")
    return RosConfig(**values)


def model_file(text, folder="."):
    """A model path as given, or a variant name found as models/NAME.onnx (a release folder,
    where the service runs) or build/models/NAME.onnx (the workstation's project folder)."""
    if "/" in text or text.endswith((".onnx", ".pth", ".pt")):
        return text
    if not _MODEL_NAME.match(text):
        raise ModelError("model {!r}: a variant name such as fp32-opt, or a file path".format(text))
    tried = [
        os.path.join(folder, "models", text + ".onnx"),
        os.path.join(folder, "build", "models", text + ".onnx"),
    ]
    for path in tried:
        if os.path.isfile(path):
            return path
    raise ModelError(
        "model {}: neither {} nor {} exists; give the model's path".format(
            text, *[os.path.abspath(p) for p in tried]
        )
    )


def image_from_raw(msg):
    """A sensor_msgs/Image (bgr8, rgb8, mono8; rows `step` bytes apart) -> BGR uint8 HxWx3."""
    import numpy as np

    channels = ENCODINGS.get(msg.encoding)
    if channels is None:
        raise BadFrame(
            "encoding {!r}: the node reads {}".format(
                str(msg.encoding)[:40], ", ".join(sorted(ENCODINGS))
            )
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise BadFrame("{}x{} pixels: must be 1 to {} pixels".format(width, height, MAX_PIXELS))
    if step < width * channels:
        raise BadFrame("step {} is shorter than a row of {}x{} bytes".format(step, width, channels))
    data = msg.data
    if len(data) < step * height:
        raise BadFrame("{} bytes of data for {} rows of {} bytes".format(len(data), height, step))
    rows = np.frombuffer(data, np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if msg.encoding == "rgb8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)  # what cv2.imread(IMREAD_COLOR) makes of a gray file
    return pixels.copy()


def image_from_compressed(msg):
    """A sensor_msgs/CompressedImage (JPEG, PNG: whatever OpenCV decodes) -> BGR uint8."""
    import cv2
    import numpy as np

    data = msg.data
    if not 0 < len(data) <= MAX_COMPRESSED_BYTES:
        raise BadFrame(
            "{} bytes of compressed data: must be 1 to {}".format(len(data), MAX_COMPRESSED_BYTES)
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadFrame(
            "format {!r}: OpenCV cannot decode these {} bytes".format(
                str(msg.format)[:40], len(data)
            )
        )
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise BadFrame(
            "{}x{} pixels: more than {}".format(image.shape[1], image.shape[0], MAX_PIXELS)
        )
    return image


def faces_record(header, image, faces, model, backend):
    """The JSON object published for one frame (header fields are the publisher's: bounded)."""
    return {
        "stamp": {"secs": int(header.stamp.secs), "nsecs": int(header.stamp.nsecs)},
        "frame_id": str(header.frame_id)[:MAX_FRAME_ID],
        "seq": int(header.seq),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "model": model,
        "backend": backend,
        "faces": faces,
    }


class RosNode(object):
    """One run: the subscriber thread keeps the newest message, `run` processes it."""

    def __init__(self, config, rospy, stop, log):
        from ..detector import Detector
        from .streamer import NewestSlot, StreamStats

        self.config, self.rospy, self.stop, self.log = config, rospy, stop, log
        model = model_file(config.model)
        self.detector = Detector(
            model,
            backend=config.backend,
            size=config.size,
            long_side=config.long_side,
            conf_threshold=config.conf,
            threads=config.threads,
            spinning=False,  # rospy's receive threads need the cores between two inferences
        )
        self.model = os.path.basename(model)
        self.frames = NewestSlot()
        self.stats = StreamStats(config.image_topic, self.model, self.detector.backend_name)
        self.bad = 0
        self.last_bad_log = 0.0
        self.stop_reason = None
        self.decode = None
        self.publishers = {}

    def wait_for_type(self):
        """The image topic's message type from the master, once some node publishes it."""
        topic = self.rospy.resolve_name(self.config.image_topic)
        said = False
        while not self.stop.is_set() and not self.rospy.is_shutdown():
            for name, kind in self.rospy.get_published_topics():
                if name == topic:
                    return topic, kind
            if not said:
                self.log("waiting for a publisher on {}".format(topic))
                said = True
            self.stop.wait(0.5)
        return topic, None

    def start(self):
        """Subscribe (by the topic's type) and advertise; False if stopped while waiting."""
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        rospy = self.rospy
        topic, kind = self.wait_for_type()
        if kind is None:
            return False
        if kind == RAW_TYPE:
            message_class, self.decode = Image, image_from_raw
        elif kind == COMPRESSED_TYPE:
            message_class, self.decode = CompressedImage, image_from_compressed
        else:
            raise ModelError(
                "{} carries {}; the node reads {} or {}".format(
                    topic, kind, RAW_TYPE, COMPRESSED_TYPE
                )
            )
        config = self.config
        self.publishers["faces"] = rospy.Publisher(config.faces_topic, String, queue_size=10)
        self.publishers["stats"] = rospy.Publisher(config.stats_topic, String, queue_size=1)
        if config.annotated_topic:
            self.publishers["annotated"] = rospy.Publisher(
                config.annotated_topic, Image, queue_size=1
            )
        try:
            from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401  (python3-diagnostic-msgs)

            self.publishers["diagnostics"] = rospy.Publisher(
                "/diagnostics", DiagnosticArray, queue_size=1
            )
        except ImportError:
            self.log("no diagnostic_msgs here: stats go to {} only".format(config.stats_topic))
        # queue_size=1 and a buffer larger than a frame: rospy keeps only the newest message.
        rospy.Subscriber(
            topic, message_class, self.on_message, queue_size=1, buff_size=1 << 26, tcp_nodelay=True
        )
        self.log("reading {} ({}), faces on {}".format(topic, kind, config.faces_topic))
        return True

    def on_message(self, msg):
        """rospy's receive thread: only keep the message; decoding happens in `run`."""
        self.frames.put((time.monotonic(), msg))

    def run(self):
        """Process the newest frame until stopped, rospy shuts down or --max-frames is reached."""
        from std_msgs.msg import String

        next_stats = time.monotonic() + STATS_EVERY_S
        while not self.stop.is_set() and not self.rospy.is_shutdown():
            item = self.frames.take(timeout=0.2)
            if time.monotonic() >= next_stats:
                self.publish_stats()
                next_stats = time.monotonic() + STATS_EVERY_S
            if item is None:
                continue
            received, msg = item
            started = time.monotonic()
            try:
                image = self.decode(msg)
            except BadFrame as error:
                self.skip(error)
                continue
            faces = self.detector.detect(image)
            self.stats.record(received, started, time.monotonic(), len(faces))
            record = faces_record(msg.header, image, faces, self.model, self.detector.backend_name)
            self.publishers["faces"].publish(String(data=json.dumps(record, separators=(",", ":"))))
            if "annotated" in self.publishers:
                self.publish_annotated(msg.header, image, faces)
            if self.config.max_frames and self.stats.frames >= self.config.max_frames:
                self.stop_reason = "--max-frames {}".format(self.config.max_frames)
                break
        self.publish_stats()
        if self.stop_reason is None and self.rospy.is_shutdown():
            self.stop_reason = "ROS shutdown"

    def skip(self, error):
        self.bad += 1
        now = time.monotonic()
        if now - self.last_bad_log >= 1.0:  # a flood of bad frames is one line a second
            self.last_bad_log = now
            self.rospy.logwarn(
                "skipped a bad image message ({} so far): {}".format(self.bad, error)
            )

    def publish_annotated(self, header, image, faces):
        from sensor_msgs.msg import Image

        from ..imageio import annotate

        canvas = annotate(image, faces, min_thickness=2)
        self.publishers["annotated"].publish(
            Image(
                header=header,
                height=canvas.shape[0],
                width=canvas.shape[1],
                encoding="bgr8",
                is_bigendian=0,
                step=canvas.shape[1] * 3,
                data=canvas.tobytes(),
            )
        )

    def snapshot(self):
        stats = self.stats.snapshot(self.frames.dropped)
        stats["bad"] = self.bad
        return stats

    def publish_stats(self):
        from std_msgs.msg import String

        stats = self.snapshot()
        self.publishers["stats"].publish(String(data=json.dumps(stats, separators=(",", ":"))))
        if "diagnostics" in self.publishers:
            self.publishers["diagnostics"].publish(self.diagnostics(stats))

    def diagnostics(self, stats):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        healthy = self.stats.healthy()
        values = [
            KeyValue(key=key, value=str(stats[key]))
            for key in ("frames", "dropped", "bad", "fps", "faces", "model", "backend", "source")
        ]
        for key in ("latency_ms", "detect_ms"):
            for q in ("p50", "p90"):
                values.append(KeyValue(key="{}_{}".format(key, q), value=str(stats[key][q])))
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if healthy else DiagnosticStatus.WARN,
            name="retinaface: {}".format(self.rospy.get_name()),
            message="{} fps".format(stats["fps"]) if healthy else "no frame processed lately",
            hardware_id="",
            values=values,
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.rospy.Time.now()
        return array


def _flags(args):
    return {field.name: getattr(args, field.name, None) for field in fields(RosConfig)}


def _remaps(words):
    for word in words:
        if ":=" not in word:
            raise ModelError("{!r}: only NAME:=VALUE remappings may follow the flags".format(word))
    return list(words)


def main_ros(args):
    """The ros command: returns the exit code (0 stopped, 1 bad settings)."""
    remaps = _remaps(args.remaps)
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", args.name):
        raise ModelError("--name {!r}: a ROS node name is letters, digits and _".format(args.name))
    _thread_is_alive_alias()
    try:
        import rospy
    except ImportError:
        raise ModelError(
            "the ros command needs rospy: on Debian apt install python3-rospy python3-sensor-msgs "
            "python3-std-msgs python3-diagnostic-msgs (invoke setup-pi --ros), run by Debian's "
            "python3 or a venv made with --system-site-packages"
        ) from None
    stop = threading.Event()
    reason = {}

    def request_stop(signum, _frame=None):
        reason.setdefault("signal", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    rospy.init_node(args.name, argv=[sys.argv[0]] + remaps, disable_signals=True)
    node = None
    try:
        params = _private_params(rospy, stop)
        if params is None:
            return 0
        node = RosNode(config_from(_flags(args), params), rospy, stop, rospy.loginfo)
        if node.start():
            sys.stdout.write(
                "ros node {} on {} with {} ({})\n".format(
                    rospy.get_name(),
                    node.config.image_topic,
                    node.model,
                    node.detector.backend_name,
                )
            )
            sys.stdout.flush()
            node.run()
    finally:
        rospy.signal_shutdown("retinaface stopped")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    why = (
        node.stop_reason
        if node and node.stop_reason
        else "stopped by {}".format(reason.get("signal", "request"))
    )
    from .streamer import summary

    sys.stdout.write(
        "{}: {}, {} bad messages skipped\n".format(
            why, summary(node.stats, node.frames.dropped), node.bad
        )
    )
    sys.stdout.flush()
    return 0


def _thread_is_alive_alias():
    """Debian bullseye's rospy 1.15.9 calls Thread.isAlive(), which its own Python 3.9 no longer
    has: every shutdown (and every reaping of its connection threads) raises AttributeError.
    Give it the old name for the new method, only where it is missing (fixed in rospy 1.15.10+)."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive


def _private_params(rospy, stop):
    """The node's private parameters (a dict), waiting for the master; None if stopped first."""
    said = False
    while not stop.is_set():
        try:
            return rospy.get_param("~", {})
        except OSError:  # the master is not up (yet): a service may start before roscore
            if not said:
                sys.stderr.write(
                    "waiting for the ROS master at {}\n".format(
                        os.environ.get("ROS_MASTER_URI", "(ROS_MASTER_URI unset)")
                    )
                )
                said = True
            stop.wait(1.0)
    return None
