"""CI helper: make the slow artefacts (the emulated Pis' root filesystems, the cross build root)
while the first test tiers run, so their debootstraps overlap tests that leave a core idle.

Nothing depends on it: every tier makes what it needs itself and, if this is still at work on
the same thing, waits on the same lock. On a warm machine each step is 'present' or 'restored'.
Usage: python3 .ci/prewarm.py emu:bullseye | emu:trixie | emu:trixie-arm64 | cross:bullseye-cp39
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pi_setup import cross, emulator  # noqa: E402


def main(what: str) -> int:
    kind, _, name = what.partition(":")
    prepare = {"emu": emulator.prepare, "cross": cross.prepare}.get(kind)
    if prepare is None or not name:
        print(f"prewarm: expected emu:RELEASE or cross:TARGET, not {what!r}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        how = prepare(name, lambda message: print(f"[{what}] {message}", flush=True))
    except Exception as error:  # noqa: BLE001 - the tests will make it themselves and say why
        print(f"[{what}] failed, left to the tests: {error}", flush=True)
        return 1
    print(f"[{what}] {how} in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
