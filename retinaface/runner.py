"""The runner that goes to the Pi: `python -m retinaface.runner detect | bench | stream ...`.

Torch-free core, Python 3.7+, numpy 1.16+. Errors are one line on stderr and exit code 1.
Nothing here imports numpy or cv2 at load time, so `--help` works on a bare Python.
"""

import argparse
import math
import sys

from .config import CONF_THRESHOLD
from .errors import ModelError


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


def _size(text):
    from .detector import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = OneLineParser(prog="python -m retinaface.runner", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    detect = commands.add_parser("detect", help="detect faces in one image")
    detect.add_argument("--model", required=True, help="an .onnx variant or a biubug6 .pth")
    detect.add_argument("--image", required=True, help="the photograph to read")
    detect.add_argument("--json", help="write the faces here as JSON")
    detect.add_argument(
        "--out", help="write an annotated image here (.png, .jpg, .bmp, .tif, .webp: by extension)"
    )
    detect.add_argument(
        "--backend", choices=("onnxruntime", "opencv", "torch"), help="default: from the model file"
    )
    detect.add_argument("--size", type=_size, help="resize the input to WIDTHxHEIGHT")
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
    from .bench import add_parser as add_bench_parser

    add_bench_parser(commands, _size)
    from .stream import add_parser as add_stream_parser

    add_stream_parser(commands, _size)
    return parser


def run_detect(args):
    """Detect faces in `args.image`; returns the result record written to --json."""
    from .detector import Detector
    from .imageio import annotate, check_output_image, read_image, write_image, write_json

    if args.out:
        check_output_image(args.out)  # before any work, not after the inference
    image = read_image(args.image)
    detector = Detector(
        args.model,
        backend=args.backend,
        size=args.size,
        long_side=args.long_side,
        conf_threshold=args.conf,
        threads=args.threads,
    )
    faces = detector.detect(image)
    result = {
        "image": str(args.image),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "model": str(args.model),
        "backend": detector.backend_name,
        "faces": faces,
    }
    if args.json:
        write_json(args.json, result)
    if args.out:
        write_image(args.out, annotate(image, faces))
    return result


def detect_command(args):
    result = run_detect(args)
    sys.stdout.write("{} faces in {}\n".format(len(result["faces"]), args.image))
    return 0


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except ModelError as error:
        sys.stderr.write("error: {}\n".format(error))
        return 2
    if args.command == "bench":
        from .bench import main_bench

        return _guarded(main_bench, args)
    if args.command == "stream":
        from .stream import main_stream

        return _guarded(main_stream, args)
    return _guarded(detect_command, args)


def _guarded(command, args):
    """Run a subcommand: a ModelError is one line on stderr and exit 1."""
    try:
        return command(args)
    except ModelError as error:
        sys.stderr.write("error: {}\n".format(error))
        return 1
    except ImportError as error:  # numpy or cv2 missing on this host: say which, no traceback
        sys.stderr.write("error: a package the runner needs is missing: {}\n".format(error))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
