"""The runner's one command line: detect | bench | stream | ros, parsed into config dataclasses.

Library code takes DetectConfig, BenchConfig and StreamConfig and names a bad value by its
setting (SettingError); here settings become flags again for the one-line error. Nothing here
imports numpy or cv2 at load time, so `--help` works on a bare Python. Python 3.7+.
"""

import argparse
import math
import os
import signal
import sys

from .backends import BACKENDS
from .bench.run import (
    DEFAULT_MAX_TIME,
    DEFAULT_MIN_TIME,
    DEFAULT_RUNS,
    DEFAULT_SAMPLE_EVERY,
    DEFAULT_SIZE,
    DEFAULT_WARMUP,
    DEFAULT_WINDOWS,
    BenchConfig,
)
from .config import CONF_THRESHOLD
from .errors import ModelError, SettingError
from .live.streamer import StreamConfig
from .names import DEFAULT_VARIANTS, VARIANT_HELP, check_variants, parse_size

DESCRIPTION = (
    "The runner that goes to the Pi: `python -m retinaface.runner detect | bench | stream ...`. "
    "Torch-free core, Python 3.7+, numpy 1.16+. Errors are one line on stderr and exit code 1. "
    "Nothing here imports numpy or cv2 at load time, so `--help` works on a bare Python."
)
# Settings whose flag is not `--` + the setting with dashes.
FLAGS = {
    "conf_threshold": "--conf",
    "models_dir": "--models",
    "min_time_s": "--min-time",
    "max_time_s": "--max-time",
    "cooldown_below_c": "--cooldown-below",
    "cooldown_max_s": "--cooldown-max",
    "sample_every_s": "--sample-every",
    "thread_counts": "--threads",
    "sizes": "--size",
}


def flag(setting):
    """The command-line flag of a config setting: conf_threshold -> --conf."""
    return FLAGS.get(setting, "--" + setting.replace("_", "-"))


def error_line(error):
    """An error as the command line shows it: a setting is named by its flag."""
    if isinstance(error, SettingError):
        return error.shown_as(flag(error.setting))
    return str(error)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are a ModelError (one line), not usage text + exit 2."""

    def error(self, message):
        raise ModelError(message)


def whole_number(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number, not {!r}".format(text)) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, not {}".format(value))
    return value


def score_threshold(text):
    """argparse type: a score threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a number in (0, 1], not {!r}".format(text)
        ) from None
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            "a score threshold is in (0, 1] (scores are probabilities), not {}".format(text)
        )
    return value


def size_type(text):
    """argparse type: WIDTHxHEIGHT."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = OneLineParser(prog="python -m retinaface.runner", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    add_detect_parser(commands, size_type)
    add_bench_parser(commands, size_type)
    add_stream_parser(commands, size_type)
    from .live.ros import add_parser as add_ros_parser

    add_ros_parser(commands, size_type)
    return parser


def add_detect_parser(commands, size_type):
    detect = commands.add_parser("detect", help="detect faces in one image")
    detect.add_argument("--model", required=True, help="an .onnx variant or a biubug6 .pth")
    detect.add_argument("--image", required=True, help="the photograph to read")
    detect.add_argument("--json", help="write the faces here as JSON")
    detect.add_argument(
        "--out", help="write an annotated image here (.png, .jpg, .bmp, .tif, .webp: by extension)"
    )
    detect.add_argument("--backend", choices=BACKENDS, help="default: from the model file")
    detect.add_argument("--size", type=size_type, help="resize the input to WIDTHxHEIGHT")
    detect.add_argument(
        "--long-side", type=whole_number, help="resize so the longer side has this many pixels"
    )
    detect.add_argument(
        "--conf",
        type=score_threshold,
        default=CONF_THRESHOLD,
        help="score threshold in (0, 1] (default %(default)s)",
    )
    detect.add_argument("--threads", type=whole_number, help="inference threads")
    return detect


def _variants(text):
    names = [part.strip() for part in text.split(",") if part.strip()]
    try:
        if not names:
            raise ValueError("--variants is empty")
        return check_variants(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _list_of(parse):
    """An argparse type for `A` or `A,B,...` (no duplicates), each item parsed by `parse`."""

    def parse_list(text):
        items = [parse(part.strip()) for part in str(text).split(",") if part.strip()]
        if not items:
            raise ValueError("empty list")
        unique = []
        for item in items:
            if item not in unique:
                unique.append(item)
        return unique

    parse_list.__name__ = getattr(parse, "__name__", "value") + " list"
    return parse_list


def add_bench_parser(commands, size_type):
    """Add the `bench` subcommand to the runner's argparse subparsers."""
    bench = commands.add_parser(
        "bench", help="benchmark the model variants on this host (latency per stage, telemetry)"
    )
    bench.add_argument("--models", required=True, help="directory with manifest.json and models")
    bench.add_argument("--image", required=True, help="the probe photograph (must show faces)")
    bench.add_argument(
        "--variants",
        type=_variants,
        help="comma list of {}, or model file paths (default: {})".format(
            VARIANT_HELP, ",".join(DEFAULT_VARIANTS)
        ),
    )
    bench.add_argument(
        "--size",
        type=_list_of(size_type),
        default=[DEFAULT_SIZE],
        help="input WIDTHxHEIGHT, or a comma list to sweep (default 640x480)",
    )
    bench.add_argument(
        "--threads",
        type=_list_of(_positive_int),
        help="inference threads, or a comma list to sweep (default: runtime's)",
    )
    bench.add_argument(
        "--profile",
        action="store_true",
        help="run each ONNX variant through onnxruntime's profiler: operators executed",
    )
    bench.add_argument(
        "--stream",
        action="store_true",
        help="per ONNX variant, runner stream's FPS on a video against 1000 / single-frame e2e",
    )
    bench.add_argument(
        "--sample-every",
        type=float,
        default=DEFAULT_SAMPLE_EVERY,
        help="seconds between telemetry samples during timed runs; 0: off (default %(default)s)",
    )
    bench.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up runs (default %(default)s)"
    )
    bench.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help="timed runs, at least (default %(default)s)"
    )
    bench.add_argument(
        "--windows", type=int, default=DEFAULT_WINDOWS, help="timed windows (default %(default)s)"
    )
    bench.add_argument(
        "--min-time",
        type=float,
        default=DEFAULT_MIN_TIME,
        help="seconds of timed runs per variant, at least (default %(default)s)",
    )
    bench.add_argument(
        "--max-time",
        type=float,
        default=DEFAULT_MAX_TIME,
        help="stop a variant's timed runs after this many seconds (default %(default)s)",
    )
    bench.add_argument(
        "--conf", type=float, default=CONF_THRESHOLD, help="score threshold (default %(default)s)"
    )
    bench.add_argument(
        "--cooldown-below", type=float, help="before each variant wait until below this many °C"
    )
    bench.add_argument(
        "--cooldown-max",
        type=float,
        default=120.0,
        help="wait at most this many seconds to cool down (default %(default)s)",
    )
    bench.add_argument("--json", help="write the result here (atomically)")
    bench.add_argument("--progress", help="keep a one-line JSON progress record in this file")
    return bench


def add_stream_parser(commands, size_type):
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
    stream.add_argument("--backend", choices=BACKENDS, help="default: from the model file")
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
    stream.add_argument(
        "--http-token",
        help="require this token for /snapshot.jpg and /stream.mjpg (?token= or "
        "Authorization: Bearer); visible in `ps`, so prefer --http-token-file",
    )
    stream.add_argument(
        "--http-token-file", help="read the --http-token from the first line of this file"
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


def detect_config(args):
    from .detector import DetectConfig  # numpy: after parsing, so --help needs none

    return DetectConfig(
        model=args.model,
        image=args.image,
        json=args.json,
        out=args.out,
        backend=args.backend,
        size=args.size,
        long_side=args.long_side,
        conf_threshold=args.conf,
        threads=args.threads,
    )


def bench_config(args):
    return BenchConfig(
        models_dir=args.models,
        image=args.image,
        variants=args.variants,
        size=tuple(args.size[0]),
        threads=args.threads[0] if args.threads else None,
        sizes=[tuple(size) for size in args.size],
        thread_counts=list(args.threads) if args.threads else None,
        profile=args.profile,
        stream=args.stream,
        sample_every_s=max(0.0, args.sample_every),
        warmup=args.warmup,
        runs=args.runs,
        windows=args.windows,
        min_time_s=args.min_time,
        max_time_s=args.max_time,
        conf_threshold=args.conf,
        cooldown_below_c=args.cooldown_below,
        cooldown_max_s=args.cooldown_max,
    ).check()


def stream_config(args):
    return StreamConfig(
        model=args.model,
        source=args.source,
        loop=args.loop,
        backend=args.backend,
        size=args.size,
        long_side=args.long_side,
        threads=args.threads,
        conf_threshold=args.conf,
        http=args.http,
        http_token=args.http_token,
        http_token_file=args.http_token_file,
        jsonl=args.jsonl,
        jsonl_max_mb=args.jsonl_max_mb,
        jsonl_keep=args.jsonl_keep,
        max_frames=args.max_frames,
    ).check()


def detect_command(args):
    from .detector import run_detect

    result = run_detect(detect_config(args))
    sys.stdout.write("{} faces in {}\n".format(len(result["faces"]), args.image))
    return 0


def bench_command(args):
    """The `bench` subcommand: run, write --json, print one line per variant."""
    from .bench.run import file_progress, run_bench
    from .bench.schema import summary_lines
    from .imageio import write_json

    config = bench_config(args)
    # Like onnxruntime's spinning, torch's OpenMP workers busy-wait after a run and would steal
    # the cores of the cell that takes the next turn.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    result = run_bench(config, progress=file_progress(args.progress) if args.progress else None)
    if args.json:
        write_json(args.json, result)
    sys.stdout.write("\n".join(summary_lines(result)) + "\n")
    return 0


def stream_command(args):
    """The stream command: returns the exit code (see retinaface.live.streamer)."""
    from .live.streamer import EXIT_OK, EXIT_SOURCE_LOST, Streamer, summary

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    streamer = Streamer(stream_config(args), log)
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


def ros_command(args):
    from .live.ros import main_ros

    return main_ros(args)


COMMANDS = {
    "detect": detect_command,
    "bench": bench_command,
    "stream": stream_command,
    "ros": ros_command,
}
