"""Fixtures of the cross tier: armv7l wheels cross-built on this x86 machine, gated on the
emulated bullseye Pi (root needed, like the emulated tier).

The first run makes the cross build root (debootstrap + crossbuild-essential-armhf + crossenv,
a few minutes) and caches it beside the emulator's tarballs; later runs restore it. The run
itself (`cross_run`) is a session fixture in tests/conftest.py: the emulated tier deploys its numpy.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cross" in str(item.fspath):
            item.add_marker(pytest.mark.cross)
