"""`invoke build-status` reads the builder's state file: a crafted line is counted and ignored,
never a traceback (issue 21 item 11: `150 ` gave IndexError, `seconds=x` ValueError)."""

from __future__ import annotations

import pytest

from pi_setup import build_wheels as bw

GOOD = "now 500\npid none no\nstate 100 start jobs=2\nstate 101 stage torch:build\n"


@pytest.mark.parametrize(
    "line",
    [
        "state 150 ",  # a stamp and no event
        "state 150",
        "state ² start",  # a digit to isdigit(), not to int()
        "state " + "9" * 5000 + " start",  # more digits than int() converts
        "state 102 built torch seconds=x",
        "state 102 built torch seconds=²",
    ],
)
def test_a_crafted_state_line_is_ignored_and_counted(line):
    status = bw.parse_status(GOOD + line + "\nstate 103 finished\n")
    assert status.malformed == 1
    assert status.state == "finished" and status.started == 100
    assert status.seconds == {}


def test_well_formed_lines_are_not_counted():
    status = bw.parse_status(GOOD + "state 102 built torch seconds=75\nstate 103 finished\n")
    assert status.malformed == 0
    assert status.seconds == {"torch": 75}


def test_a_crafted_now_or_pid_is_ignored():
    status = bw.parse_status("now ²\npid ³ yes\nstate 1 start\n")
    assert status.pid is None and status.state == "running"
