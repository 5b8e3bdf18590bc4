"""The runner that goes to the Pi: `python -m retinaface.runner detect | bench | stream ...`.

Torch-free core, Python 3.7+, numpy 1.16+. Errors are one line on stderr and exit code 1
(2 for a command line that does not parse). The command line itself is retinaface.cli.
"""

import sys

from .cli import COMMANDS, build_parser, error_line
from .errors import ModelError


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except ModelError as error:
        sys.stderr.write("error: {}\n".format(error))
        return 2
    return _guarded(COMMANDS[args.command], args)


def _guarded(command, args):
    """Run a subcommand: a ModelError is one line on stderr and exit 1."""
    try:
        return command(args)
    except ModelError as error:
        sys.stderr.write("error: {}\n".format(error_line(error)))
        return 1
    except ImportError as error:  # numpy or cv2 missing on this host: say which, no traceback
        sys.stderr.write("error: a package the runner needs is missing: {}\n".format(error))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
