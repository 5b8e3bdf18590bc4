"""Text for the terminal: what hosts send (errors, facts, progress, bench.json) is shown inert;
and the progress bars tasks.py hands to the library (the library never prints them itself).

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


# For progress bars on stderr: carriage return and tqdm's cursor-up stay, the rest as above.
_CONTROL_BUT_CR = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_CURSOR_UP = "\x1b[A"


def safe_text(text, progress: bool = False) -> str:
    """`text` with every control character but newline and tab shown as an escape; with
    `progress`, carriage returns and cursor-up (what tqdm draws bars with) are kept too."""
    if not progress:
        return _CONTROL.sub(_visible, str(text))
    parts = str(text).split(_CURSOR_UP)
    return _CURSOR_UP.join(_CONTROL_BUT_CR.sub(_visible, part) for part in parts)


class SafeStream(io.TextIOBase):
    """A text stream that writes `safe_text` of everything to the stream it wraps."""

    def __init__(self, stream, progress: bool = False):
        super().__init__()
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        self._stream.write(safe_text(text, self._progress))
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


# --- progress bars: made here, passed in as callables --------------------------------------


def byte_bars():
    """progress_for(host) → callable(done, total) drawing one tqdm byte bar per host."""
    import threading

    from tqdm import tqdm

    bars, done_hosts, lock = {}, set(), threading.Lock()

    def progress_for(host):
        def update(done, total):
            with lock:
                if host in done_hosts or total == 0:
                    return
                bar = bars.get(host)
                if bar is None:
                    bar = bars[host] = tqdm(
                        total=total, desc=host, unit="B", unit_scale=True, position=len(bars)
                    )
                bar.update(done - bar.n)
                if done >= total:
                    bar.close()
                    done_hosts.add(host)

        return update

    return progress_for


BENCH_BAR = "{desc:>12} {percentage:3.0f}%|{bar:30}| {elapsed}{postfix}"


def bench_bars():
    """progress_for(host) → callable(event) drawing one tqdm bar per host (variants done)."""
    import threading

    from tqdm import tqdm

    bars, lock = {}, threading.Lock()

    def progress_for(host):
        def update(event):
            with lock:
                bar = bars.get(host)
                if bar is None:
                    bar = bars[host] = tqdm(
                        total=100, desc=host, position=len(bars), bar_format=BENCH_BAR
                    )
                stage = event.get("stage")
                if stage == "bench" and event.get("count"):
                    phase, done, total = event["phase"], event["done"], event["total"] or 1
                    part = {"done": 1.0, "skipped": 1.0}.get(phase, 0.0)
                    if phase == "warmup":
                        part = 0.1 * min(1.0, done / total)
                    elif phase == "timed":
                        part = 0.1 + 0.9 * min(1.0, done / total)
                    pct = int(100 * (event["index"] + part) / event["count"])
                    if isinstance(event.get("overall"), (int, float)):
                        pct = int(100 * min(1.0, max(0.0, float(event["overall"]))))
                    bar.update(max(0, pct - bar.n))
                    count = f" {done}/{total}" if phase in ("warmup", "timed") else ""
                    bar.set_postfix_str(safe_text(f"{event['variant']} {phase}{count}"))
                elif stage == "done":
                    bar.update(100 - bar.n)
                    bar.set_postfix_str("done")
                    bar.close()
                else:
                    bar.set_postfix_str(stage or "")

        return update

    return progress_for


def byte_bar(desc, total, initial):
    """One tqdm byte bar (fetch-ort's download)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, leave=True)
