"""Today's 64-bit Raspberry Pi OS, emulated: Debian trixie arm64 under qemu-aarch64.

pi4-64-emu runs every process on a Cortex-A72 (a Pi 4's core), pi5-emu on a Cortex-A76: qemu's
default CPU (`max`) would offer dot-product, I8MM and SME, and onnxruntime would pick kernels no
Pi 4 has. Through the user's commands: `invoke fetch-ort --host pi4-64-emu` (the registry's
official onnxruntime aarch64 wheel, pinned), `invoke deploy --host pi4-64-emu` (offline, the
release's wheelhouse), the same faces as on x86, and `invoke remote-bench` with emulated timings
labelled as such.
"""

from __future__ import annotations

import csv
import json

import pytest

from .conftest import invoke, ssh
from .deploys import deploy_once, upload_images
from .test_runner_emulated import (  # noqa: F401  (fixtures)
    DEPLOY_DIR,
    SIZE,
    _check,
    _variants,
    manifest,
    models,
)

ORT_WHEEL = "onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_aarch64.whl"

# The CPU features the kernel hands a process (AT_HWCAP in its auxiliary vector): what
# onnxruntime's cpuinfo and MLAS read to pick kernels. qemu-user answers /proc/self/auxv with
# the emulated CPU's values; /proc/cpuinfo under qemu-user describes the x86 host instead.
HWCAP_PROBE = r"""
import os, struct, sys
data = open("/proc/self/auxv", "rb").read()
pairs = dict(struct.iter_unpack("<QQ", data))
hwcap = pairs[16]  # AT_HWCAP
print(os.environ.get("QEMU_CPU", "-"), hwcap & (1 << 20) != 0, hwcap & (1 << 8) != 0)
"""  # bit 20 HWCAP_ASIMDDP (dot product: Cortex-A76 yes, A72 no), bit 8 HWCAP_ATOMICS (LSE)


def _cpu(st, sudo: bool = False) -> tuple:
    out = ssh(st, ("sudo -n " if sudo else "") + "python3 -", input=HWCAP_PROBE, timeout=300)
    assert out.returncode == 0, out.stderr
    env, dot, atomics = out.stdout.split()
    return env, dot == "True", atomics == "True"


def test_a_pi4_session_and_its_sudo_run_on_a_cortex_a72(trixie_arm64):
    assert _cpu(trixie_arm64) == ("cortex-a72", False, False)
    assert _cpu(trixie_arm64, sudo=True) == ("cortex-a72", False, False)
    facts = invoke("facts", "--host", "pi4-64-emu", timeout=600)
    assert facts.returncode == 0, facts.stderr
    assert "arm64 (uname -m: aarch64)" in facts.stdout
    assert "qemu-user (cortex-a72)" in facts.stdout


def test_the_pi5_runs_on_a_cortex_a76_with_dot_product(trixie_arm64_pi5):
    assert _cpu(trixie_arm64_pi5) == ("cortex-a76", True, True)


@pytest.fixture
def deployed(emulators, trixie_arm64, manifest):  # noqa: F811
    fetched = invoke("fetch-ort", "--host", "pi4-64-emu", timeout=1800)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert ORT_WHEEL in fetched.stdout and "matches the lock" in fetched.stdout
    deploy_once(emulators, trixie_arm64)
    upload_images(trixie_arm64)
    return trixie_arm64


def test_deploy_installs_the_registry_wheel_and_finds_the_same_faces(deployed, models, manifest):  # noqa: F811
    """onnxruntime 1.32.0 aarch64 from the release's wheelhouse on every ONNX variant meant for
    it, OpenCV's DNN (Debian's python3-opencv) on the static export: the faces of x86."""
    probe = ssh(
        deployed,
        f"{DEPLOY_DIR}/venv/bin/python -c 'import onnxruntime, numpy; "
        "print(onnxruntime.__version__, onnxruntime.__file__, numpy.__version__)'",
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr
    version, where, _numpy = probe.stdout.split()
    assert version == "1.32.0" and f"{DEPLOY_DIR}/venv/" in where
    ort_variants = _variants(manifest, "onnxruntime")
    assert "fp32" in ort_variants and "int8" in ort_variants, ort_variants
    for variant in ort_variants:
        _check(deployed, models, variant, "onnxruntime")
    for variant in _variants(manifest, "opencv"):
        _check(deployed, models, variant, "opencv")


def test_remote_bench_on_the_64_bit_pi_is_labelled_emulated(deployed, tmp_path):
    variants = ("fp32-opt", "int8")
    out = invoke(
        "remote-bench", "--host", "pi4-64-emu", "--variants", ",".join(variants),
        "--size", f"{SIZE[0]}x{SIZE[1]}", "--runs", "3", "--warmup", "1", "--min-time", "0",
        "--out", str(tmp_path), timeout=3600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "## pi4-64-emu (emulated)" in (run_dir / "table.md").read_text()
    rows = list(csv.DictReader((run_dir / "table.csv").open()))
    e2e = {r["variant"]: r for r in rows if r["host"] == "pi4-64-emu" and r["stage"] == "e2e"}
    assert set(e2e) == set(variants)
    for variant, row in e2e.items():
        assert row["kind"] == "emulated" and row["status"] == "ok", row
        assert int(row["faces"]) > 0, (variant, row)
    bench = json.loads((run_dir / "pi4-64-emu" / "bench.json").read_text())
    assert bench["facts"]["emulated"] == "qemu-user (cortex-a72)"
    assert bench["facts"]["arch"].startswith("arm64")
    print("\n" + (run_dir / "table.md").read_text())
