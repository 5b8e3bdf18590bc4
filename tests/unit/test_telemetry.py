"""Telemetry parsers on the samples of tests/fixtures/recorded (documented formats; none recorded on
a Pi), sysfs readers on a tree made from them, validity, cool-down."""

import os
import shlex
import stat

import pytest

from retinaface.bench import telemetry
from retinaface.bench.telemetry import (
    Telemetry,
    cool_down,
    no_vcgencmd,
    parse_clock,
    parse_temp,
    parse_throttled,
    snapshot,
    throttle_flags,
    validity,
)
from tests.fixtures.recorded_outputs import pi4_sysfs_files, vcgencmd_outputs

# tests/fixtures/recorded/: the samples and where each came from (none from a real Pi).
VCGENCMD = {tuple(args.split()): text for args, text in vcgencmd_outputs().items()}


def recorded_vcgencmd(args):
    return VCGENCMD.get(tuple(args))


def make_pi_tree(root, throttled="50005\n", temp="58437\n"):
    """A sysfs/procfs tree like a Pi 4's (tests/fixtures/recorded/pi4_sysfs.json) under `root`."""
    files = dict(pi4_sysfs_files())
    files["sys/class/thermal/thermal_zone0/temp"] = temp
    firmware = "sys/devices/platform/soc/soc:firmware/get_throttled"
    files[firmware] = throttled
    if throttled is None:
        del files[firmware]
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "text, value",
    [
        ("throttled=0x50005\n", 0x50005),
        ("throttled=0x0\n", 0),
        ("throttled=0x80008", 0x80008),
        ("50005\n", 0x50005),  # sysfs: hex without 0x
        ("0\n", 0),
        ("", None),
        ('error=1 error_msg="Command not registered"', None),
    ],
)
def test_parse_throttled(text, value):
    assert parse_throttled(text) == value


def test_throttle_flags_of_0x50005():
    assert throttle_flags(0x50005) == [
        "under-voltage detected",
        "currently throttled",
        "under-voltage has occurred",
        "throttling has occurred",
    ]
    assert throttle_flags(0) == []
    assert throttle_flags(None) == []


def test_parse_temp_and_clock():
    assert parse_temp("temp=61.3'C\n") == pytest.approx(61.3)
    assert parse_temp("temp=48.0'C") == pytest.approx(48.0)
    assert parse_temp("garbage") is None
    assert parse_clock("frequency(48)=1500398464\n") == pytest.approx(1500.398464)
    assert parse_clock("frequency(48)=600117184") == pytest.approx(600.117184)
    assert parse_clock("") is None


def test_snapshot_from_sysfs_tree(tmp_path):
    root = make_pi_tree(tmp_path)
    snap = snapshot(str(root), vcgencmd=no_vcgencmd, clock=lambda: 1000.0)
    assert snap.time == 1000.0
    assert snap.temperature_c == pytest.approx(58.437)
    assert snap.temperature_source == "sysfs thermal_zone"
    assert snap.throttled == 0x50005
    assert snap.throttled_hex == "0x50005"
    assert snap.throttled_source.startswith("sysfs /sys/devices/platform/soc/soc:firmware")
    assert "currently throttled" in snap.throttled_flags
    assert snap.governor == "ondemand"
    assert snap.cur_freq_mhz == pytest.approx(1500.0)
    assert snap.arm_clock_mhz is None
    assert snap.loadavg == [0.52, 0.58, 0.59]
    assert (snap.mem_available_mb, snap.mem_total_mb) == (3438, 3793)
    assert telemetry.pi_model(str(root)) == "Raspberry Pi 4 Model B Rev 1.4"


def test_vcgencmd_wins_over_sysfs(tmp_path):
    root = make_pi_tree(tmp_path, throttled="0\n", temp="40000\n")
    snap = snapshot(str(root), vcgencmd=recorded_vcgencmd)
    assert snap.temperature_c == pytest.approx(61.3)
    assert snap.temperature_source == "vcgencmd measure_temp"
    assert snap.throttled == 0x50005
    assert snap.throttled_source == "vcgencmd get_throttled"
    assert snap.arm_clock_mhz == pytest.approx(1500.398464)


def test_empty_tree_gives_unknowns(tmp_path):
    snap = snapshot(str(tmp_path), vcgencmd=no_vcgencmd)
    assert snap.temperature_c is None and snap.throttled is None and snap.governor is None
    assert snap.loadavg is None and snap.mem_total_mb is None
    assert telemetry.pi_model(str(tmp_path)) is None
    assert set(snap.to_dict()) >= {"temperature_c", "throttled", "governor", "cur_freq_mhz"}


def test_run_vcgencmd_runs_the_tool_on_path(tmp_path, monkeypatch):
    """The real subprocess path, with a vcgencmd script that prints the samples first on PATH."""
    tool = tmp_path / "bin" / "vcgencmd"
    tool.parent.mkdir()
    replies = {k: v for k, v in vcgencmd_outputs().items() if k != "measure_clock arm"}
    cases = "".join(
        f"  {shlex.quote(args)}) printf '%s\\n' {shlex.quote(text.rstrip())} ;;\n"
        for args, text in replies.items()
    )
    tool.write_text(
        f'#!/bin/sh\ncase "$*" in\n{cases}'
        "  *) echo 'error=2 error_msg=\"Invalid arguments\"'; exit 2 ;;\n"
        "esac\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tool.parent) + os.pathsep + os.environ["PATH"])
    assert telemetry.run_vcgencmd(["get_throttled"]) == "throttled=0x50005\n"
    assert telemetry.run_vcgencmd(["measure_clock", "arm"]) is None  # exit 2
    snap = snapshot(str(tmp_path), vcgencmd=telemetry.run_vcgencmd)
    assert snap.throttled == 0x50005 and snap.temperature_c == pytest.approx(61.3)


def test_run_vcgencmd_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert telemetry.run_vcgencmd(["get_throttled"]) is None


def _snap(throttled, temp=50.0):
    snap = Telemetry(time=0.0, temperature_c=temp, throttled=throttled)
    if throttled is not None:
        snap.throttled_hex = "0x{:x}".format(throttled)
    return snap


def test_validity_changed_bits_make_a_run_invalid():
    reasons, warnings = validity(_snap(0x0), _snap(0x50005))
    assert any("changed 0x0 -> 0x50005" in r for r in reasons)
    assert any("throttled at the end" in r and "currently throttled" in r for r in reasons)
    assert warnings == []


def test_validity_sticky_bits_alone_are_fine():
    reasons, warnings = validity(_snap(0x50000), _snap(0x50000))
    assert reasons == [] and warnings == []


def test_validity_sticky_bit_set_during_run():
    reasons, _ = validity(_snap(0x0), _snap(0x80000))
    assert reasons == ["throttle bits changed 0x0 -> 0x80000 (soft temperature limit has occurred)"]


def test_validity_unknown_throttle_and_hot():
    reasons, warnings = validity(_snap(None), _snap(None, temp=82.5))
    assert reasons == []
    assert any("unknown" in w for w in warnings)
    assert any("82.5" in w for w in warnings)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_cool_down_reaches_target():
    clock = FakeClock()
    temps = iter([70.0, 68.0, 66.0, 64.0, 63.0])
    record = cool_down(65.0, 60.0, lambda: next(temps), sleep=clock.sleep, clock=clock, step=2.0)
    assert record["reached"] is True
    assert record["start_c"] == 70.0 and record["end_c"] == 64.0
    assert record["waited_s"] == 6.0


def test_cool_down_is_bounded():
    clock = FakeClock()
    record = cool_down(65.0, 5.0, lambda: 75.0, sleep=clock.sleep, clock=clock, step=2.0)
    assert record["reached"] is False
    assert record["waited_s"] == 5.0


def test_cool_down_without_a_thermometer():
    record = cool_down(65.0, 5.0, lambda: None)
    assert record["reached"] is None and record["waited_s"] == 0.0
