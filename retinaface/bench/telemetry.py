"""Host telemetry for the benchmark: temperature, throttling, governor, clocks, load, memory.

Runs on the Pi (torch-free, Python 3.7+, stdlib only). `vcgencmd` is used where it exists,
sysfs/procfs otherwise; every reader takes a `root` so tests can point it at a fake tree.
A variant whose throttle bits changed while it ran is not a valid measurement.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

# vcgencmd get_throttled bits (raspberrypi/documentation, graphics-utilities).
THROTTLE_BITS = (
    (0x1, "under-voltage detected"),
    (0x2, "arm frequency capped"),
    (0x4, "currently throttled"),
    (0x8, "soft temperature limit active"),
    (0x10000, "under-voltage has occurred"),
    (0x20000, "arm frequency capping has occurred"),
    (0x40000, "throttling has occurred"),
    (0x80000, "soft temperature limit has occurred"),
)
CURRENT_MASK = 0xF  # bits 0-3: the state right now
HOT_C = 80.0  # Pi 4 cores start slowing down from here

# Where the Raspberry Pi firmware driver exposes get_throttled ("%x\n", no 0x prefix).
SYSFS_THROTTLED = (
    "sys/devices/platform/soc/soc:firmware/get_throttled",
    "sys/devices/platform/firmware/get_throttled",
)

_THROTTLED_RE = re.compile(r"throttled\s*=\s*(0x[0-9a-fA-F]+|\d+)")
_TEMP_RE = re.compile(r"temp\s*=\s*(-?\d+(?:\.\d+)?)\s*'?\s*C")
_CLOCK_RE = re.compile(r"frequency\(\d+\)\s*=\s*(\d+)")

# vcgencmd(args) -> stdout, or None when vcgencmd is absent or failed.
Vcgencmd = Callable[[List[str]], Optional[str]]


def parse_throttled(text):
    """`throttled=0x50005` (vcgencmd) or `50005` (sysfs, hex) -> 0x50005; None if unreadable."""
    text = (text or "").strip()
    match = _THROTTLED_RE.search(text)
    if match:
        return int(match.group(1), 0)
    if re.match(r"^(0x)?[0-9a-fA-F]+$", text):
        return int(text, 16)
    return None


def parse_temp(text):
    """`temp=61.3'C` -> 61.3; None if unreadable."""
    match = _TEMP_RE.search(text or "")
    return float(match.group(1)) if match else None


def parse_clock(text):
    """`frequency(48)=1500398464` -> 1500.398464 (MHz); None if unreadable."""
    match = _CLOCK_RE.search(text or "")
    return int(match.group(1)) / 1e6 if match else None


def throttle_flags(value):
    """Names of the bits set in a get_throttled value."""
    if value is None:
        return []
    return [name for bit, name in THROTTLE_BITS if value & bit]


@dataclass
class Telemetry:
    """One snapshot of the host's thermal and load state (fields are None when unknown)."""

    time: float
    temperature_c: Optional[float] = None
    temperature_source: Optional[str] = None
    throttled: Optional[int] = None
    throttled_hex: Optional[str] = None
    throttled_flags: List[str] = field(default_factory=list)
    throttled_source: Optional[str] = None
    arm_clock_mhz: Optional[float] = None  # vcgencmd measure_clock arm: the real clock
    cur_freq_mhz: Optional[float] = None  # scaling_cur_freq: what the kernel asked for
    governor: Optional[str] = None
    loadavg: Optional[List[float]] = None
    mem_available_mb: Optional[int] = None
    mem_total_mb: Optional[int] = None

    def to_dict(self):
        return asdict(self)


def _read(root, rel):
    try:
        with open(os.path.join(root, rel), "r") as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def run_vcgencmd(args, timeout=5.0):
    """stdout of `vcgencmd ARGS`, or None when the tool is absent or fails."""
    tool = shutil.which("vcgencmd")
    if not tool:
        return None
    try:
        proc = subprocess.run(
            [tool] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            universal_newlines=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def no_vcgencmd(args):
    """A Vcgencmd for hosts (and tests) where the tool must not be used."""
    return None


def read_sysfs_temperature(root="/"):
    """°C from the first thermal zone (cpu-thermal on a Pi; millidegrees in the file)."""
    base = os.path.join(root, "sys/class/thermal")
    try:
        zones = sorted(
            (name for name in os.listdir(base) if name.startswith("thermal_zone")),
            key=lambda name: int(name[len("thermal_zone") :] or 0),
        )
    except (OSError, ValueError):
        return None
    for zone in zones:
        text = _read(base, zone + "/temp")
        try:
            return int(text.strip()) / 1000.0
        except (AttributeError, ValueError):
            continue
    return None


def read_sysfs_throttled(root="/"):
    """(value, source) from the firmware driver's sysfs file, or (None, None)."""
    for rel in SYSFS_THROTTLED:
        value = parse_throttled(_read(root, rel))
        if value is not None:
            return value, "sysfs " + "/" + rel
    return None, None


def read_cpufreq(root="/"):
    """(governor, current frequency MHz) of cpu0; None for what the kernel does not expose."""
    base = "sys/devices/system/cpu/cpu0/cpufreq/"
    governor = _read(root, base + "scaling_governor")
    freq = _read(root, base + "scaling_cur_freq")
    try:
        mhz = int(freq.strip()) / 1000.0
    except (AttributeError, ValueError):
        mhz = None
    return (governor.strip() or None) if governor else None, mhz


def read_loadavg(root="/"):
    """The 1, 5 and 15 minute load averages."""
    text = _read(root, "proc/loadavg")
    try:
        return [float(part) for part in text.split()[:3]]
    except (AttributeError, ValueError):
        return None


def read_meminfo(root="/"):
    """(MemAvailable, MemTotal) in MB."""
    text = _read(root, "proc/meminfo") or ""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) // 1024
    return values.get("MemAvailable"), values.get("MemTotal")


def snapshot(root="/", vcgencmd=run_vcgencmd, clock=time.time):
    """Telemetry now: vcgencmd first (the firmware's view), sysfs/procfs for the rest."""
    snap = Telemetry(time=round(clock(), 3))
    temp = parse_temp(vcgencmd(["measure_temp"]))
    if temp is not None:
        snap.temperature_c, snap.temperature_source = temp, "vcgencmd measure_temp"
    else:
        temp = read_sysfs_temperature(root)
        if temp is not None:
            snap.temperature_c = temp
            snap.temperature_source = "sysfs thermal_zone"
    throttled = parse_throttled(vcgencmd(["get_throttled"]))
    if throttled is not None:
        snap.throttled, snap.throttled_source = throttled, "vcgencmd get_throttled"
    else:
        snap.throttled, snap.throttled_source = read_sysfs_throttled(root)
    if snap.throttled is not None:
        snap.throttled_hex = "0x{:x}".format(snap.throttled)
        snap.throttled_flags = throttle_flags(snap.throttled)
    snap.arm_clock_mhz = parse_clock(vcgencmd(["measure_clock", "arm"]))
    snap.governor, snap.cur_freq_mhz = read_cpufreq(root)
    snap.loadavg = read_loadavg(root)
    snap.mem_available_mb, snap.mem_total_mb = read_meminfo(root)
    return snap


def validity(before, after):
    """(reasons the measurement between two snapshots is invalid, warnings about it)."""
    reasons, warnings = [], []
    if before.throttled is None or after.throttled is None:
        warnings.append("throttle state unknown (no vcgencmd, no sysfs get_throttled)")
    else:
        if before.throttled != after.throttled:
            changed = before.throttled ^ after.throttled
            reasons.append(
                "throttle bits changed {} -> {} ({})".format(
                    before.throttled_hex,
                    after.throttled_hex,
                    ", ".join(throttle_flags(changed & after.throttled)) or "bits cleared",
                )
            )
        current = after.throttled & CURRENT_MASK
        if current:
            reasons.append("throttled at the end: " + ", ".join(throttle_flags(current)))
    if after.temperature_c is not None and after.temperature_c >= HOT_C:
        warnings.append(
            "temperature {:.1f} C at the end (cores slow down from {:.0f} C)".format(
                after.temperature_c, HOT_C
            )
        )
    return reasons, warnings


def cool_down(below_c, max_wait_s, read_temp, sleep=time.sleep, clock=time.monotonic, step=2.0):
    """Wait (at most `max_wait_s`) until `read_temp()` is below `below_c`; returns what happened."""
    start = clock()
    start_temp = temp = read_temp()
    record = {"below_c": below_c, "max_wait_s": max_wait_s, "start_c": start_temp}
    if temp is None:
        record.update(end_c=None, waited_s=0.0, reached=None, note="temperature unknown")
        return record
    while temp >= below_c and clock() - start < max_wait_s:
        sleep(min(step, max(0.0, max_wait_s - (clock() - start))))
        temp = read_temp()
        if temp is None:
            break
    record.update(end_c=temp, waited_s=round(clock() - start, 2))
    record["reached"] = temp is not None and temp < below_c
    return record


def read_temperature(root="/", vcgencmd=run_vcgencmd):
    """°C now (vcgencmd, else sysfs), or None."""
    temp = parse_temp(vcgencmd(["measure_temp"]))
    return temp if temp is not None else read_sysfs_temperature(root)


def pi_model(root="/"):
    """`Raspberry Pi 4 Model B Rev 1.4` from the device tree, or None."""
    text = _read(root, "proc/device-tree/model")
    if not text:
        return None
    return text.replace("\x00", "").strip() or None


def sample(root="/", vcgencmd=run_vcgencmd, clock=time.time):
    """A light reading for the during-run trace: time, °C, throttle bits, clock (MHz)."""
    throttled = parse_throttled(vcgencmd(["get_throttled"]))
    if throttled is None:
        throttled, _ = read_sysfs_throttled(root)
    clock_mhz = parse_clock(vcgencmd(["measure_clock", "arm"]))
    if clock_mhz is None:
        clock_mhz = read_cpufreq(root)[1]
    return {
        "t": round(clock(), 3),
        "temperature_c": read_temperature(root, vcgencmd),
        "throttled": throttled,
        "clock_mhz": clock_mhz,
    }


class Sampler(object):
    """Samples telemetry every `every_s` seconds in a background thread while the benchmark
    runs; each sample is tagged with the label (the cell being timed) current at that moment,
    so a throttle in the middle of a variant is seen, not only before and after it."""

    def __init__(self, every_s=1.0, read=None):
        import threading

        self.every_s = float(every_s)
        self.read = read or sample
        self.samples = []
        self.label = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry-sampler")
        self._thread.daemon = True

    def start(self):
        if self.every_s > 0:
            self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            label = self.label
            if label is not None:
                try:
                    reading = self.read()
                except Exception:  # noqa: BLE001 - telemetry must never stop the benchmark
                    reading = None
                if reading is not None:
                    self.samples.append(dict(reading, label=label))
            self._stop.wait(self.every_s)

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        return self.samples

    def trace(self, label):
        """The samples taken while `label` ran, oldest first."""
        return [
            {k: v for k, v in s.items() if k != "label"}
            for s in self.samples
            if s["label"] == label
        ]


def trace_validity(trace, before):
    """Reasons a cell is invalid from its during-run samples: throttle bits that differ from
    the value before the cell started, or a current throttle bit set in any sample."""
    reasons = []
    base = None if before is None else before.throttled
    for reading in trace:
        value = reading.get("throttled")
        if value is None:
            continue
        if base is not None and value != base:
            reasons.append(
                "throttle bits changed during the timed runs: 0x{:x} -> 0x{:x} ({})".format(
                    base, value, ", ".join(throttle_flags((base ^ value) & value)) or "bits cleared"
                )
            )
            break
        if value & CURRENT_MASK:
            reasons.append(
                "throttled during the timed runs: "
                + ", ".join(throttle_flags(value & CURRENT_MASK))
            )
            break
    return reasons
