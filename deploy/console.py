"""Text for the terminal: what hosts send (errors, facts, progress, bench.json) is shown inert.

An escape sequence in a host's warning could clear the screen and print "all targets met";
`safe_text` shows control characters as visible `\\x1b`-style escapes instead, keeping only
newline and tab. `SafeStream` applies it to everything a task prints.
"""

from __future__ import annotations

import io
import re

# C0 controls but \t and \n, DEL, C1 controls, and the Unicode bidi overrides and isolates
# (they reorder what is shown: "Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text) -> str:
    """`text` with every control character but newline and tab shown as an escape."""
    return _CONTROL.sub(_visible, str(text))


class SafeStream(io.TextIOBase):
    """A text stream that writes `safe_text` of everything to the stream it wraps."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe_text(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")
