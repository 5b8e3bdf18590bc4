"""The runner that goes to the Pi: `python -m retinaface.runner detect | bench | stream ...`.

Torch-free core, Python 3.7+, numpy 1.16+. Errors are one line on stderr and exit code 1.
"""

import argparse
import sys

from .config import CONF_THRESHOLD
from .errors import ModelError


def _size(text):
    from .detector import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m retinaface.runner", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    detect = commands.add_parser("detect", help="detect faces in one image")
    detect.add_argument("--model", required=True, help="an .onnx variant or a biubug6 .pth")
    detect.add_argument("--image", required=True, help="the photograph to read")
    detect.add_argument("--json", help="write the faces here as JSON")
    detect.add_argument("--out", help="write an annotated PNG here")
    detect.add_argument(
        "--backend", choices=("onnxruntime", "opencv", "torch"), help="default: from the model file"
    )
    detect.add_argument("--size", type=_size, help="resize the input to WIDTHxHEIGHT")
    detect.add_argument(
        "--long-side", type=int, help="resize so the longer side has this many pixels"
    )
    detect.add_argument(
        "--conf", type=float, default=CONF_THRESHOLD, help="score threshold (default %(default)s)"
    )
    detect.add_argument("--threads", type=int, help="inference threads")
    from .bench import add_parser as add_bench_parser

    add_bench_parser(commands, _size)
    from .stream import add_parser as add_stream_parser

    add_stream_parser(commands, _size)
    return parser


def run_detect(args):
    """Detect faces in `args.image`; returns the result record written to --json."""
    from .detector import Detector
    from .imageio import annotate, read_image, write_json, write_png

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
        write_png(args.out, annotate(image, faces))
    return result


def detect_command(args):
    result = run_detect(args)
    sys.stdout.write("{} faces in {}\n".format(len(result["faces"]), args.image))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
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
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
