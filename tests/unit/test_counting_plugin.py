"""The counting plugin builds (gcc, glib, qemu-plugin.h from Debian's qemu source package) and
classifies instructions as its header comment says (the C classifier, driven from a harness)."""

import subprocess

import pytest

from pi_setup.counting import plugin
from pi_setup.errors import EmulatorError

HARNESS = r"""
#include "insn_count.c"
int main(int argc, char **argv)
{
    static const char *names[] = {"simd", "fp", "int", "ldst", "branch"};
    char line[256];
    is_a64 = argc > 1;
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = 0;
        printf("%s\n", names[classify(line)]);
    }
    return 0;
}
"""

A32 = {
    "vadd.f32 q0, q1, q2": "simd", "vmla.f32 d0, d1, d2": "simd", "vmull.s16 q8, d0, d1": "simd",
    "vadd.i32 d0, d1, d2": "simd", "vmla.f32 s0, s1, s2": "fp", "vadd.f64 d0, d1, d2": "fp",
    "vcvt.f32.s32 s0, s0": "fp", "vmov s0, r1": "fp", "vldr s0, [r0]": "ldst",
    "vld1.32 {d0, d1}, [r0]!": "ldst", "vpush {d8, d9}": "ldst", "ldr.w r2, [pc, #0x550]": "ldst",
    "strbeq r1, [r2]": "ldst", "push {r4, lr}": "ldst", "pop {r4, pc}": "branch",
    "ldm sp!, {r4, pc}": "branch", "bne #0x1000": "branch", "blx #0x3f7d522c": "branch",
    "bx lr": "branch", "cbz r0, #0x20": "branch", "tbb [pc, r1]": "branch", "mov r0, sp": "int",
    "adds r0, r1, r2": "int", "mul r0, r1, r2": "int", "bic r0, r0, #3": "int",
}  # fmt: skip
A64 = {
    "fmla v0.4s, v1.4s, v2.s[0]": "simd", "add v0.16b, v1.16b, v2.16b": "simd",
    "udot v0.4s, v1.16b, v2.16b": "simd", "fadd s0, s1, s2": "fp", "fmadd d0, d1, d2, d3": "fp",
    "scvtf s0, w1": "fp", "ldr q0, [x1, #16]": "ldst", "ld1 {v0.4s}, [x0]": "ldst",
    "stp x29, x30, [sp, #-16]!": "ldst", "ret": "branch", "b.ne #0x40": "branch",
    "tbnz w0, #3, #0x10": "branch", "add x0, x1, x2": "int", "madd x0, x1, x2, x3": "int",
    "bic x0, x0, #3": "int",
}  # fmt: skip


@pytest.fixture(scope="module")
def include():
    return plugin.header_dir()


def test_the_plugin_builds_and_exports_the_qemu_entry_points(include, tmp_path):
    so = plugin.compile_plugin(plugin.SOURCE, include, tmp_path / "insn_count.so")
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                             text=True, timeout=60).stdout  # fmt: skip
    assert " qemu_plugin_install" in symbols and " qemu_plugin_version" in symbols
    assert not list(tmp_path.glob(".*.part"))


def test_a_broken_source_is_one_error_and_leaves_no_file(include, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("int qemu_plugin_install(void) { return nope; }\n")
    with pytest.raises(EmulatorError, match="building the counting plugin failed: .*bad.c"):
        plugin.compile_plugin(bad, include, tmp_path / "bad.so")
    assert list(tmp_path.iterdir()) == [bad]


def test_a_binnmu_suffix_is_not_part_of_the_source_version():
    assert plugin.source_version("1:7.2+dfsg-7+deb12u18+b3") == "1:7.2+dfsg-7+deb12u18"
    assert plugin.source_version("1:7.2+dfsg-7+deb12u18") == "1:7.2+dfsg-7+deb12u18"


@pytest.mark.parametrize("arch, table", [("a32", A32), ("a64", A64)])
def test_the_mix_classes_match_the_documented_rules(include, tmp_path, arch, table):
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "classify"
    glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True,
                          text=True, timeout=30).stdout.split()  # fmt: skip
    # The qemu_plugin_* calls stay unresolved: the harness only calls classify().
    build = subprocess.run(
        ["gcc", "-O1", "-no-pie", f"-I{include}", f"-I{plugin.SOURCE.parent}",
         str(tmp_path / "harness.c"), "-o", str(exe), *glib, "-Wl,-z,lazy",
         "-Wl,--unresolved-symbols=ignore-all"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    args = [str(exe)] + (["a64"] if arch == "a64" else [])
    out = subprocess.run(args, input="\n".join(table) + "\n", capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert dict(zip(table, out.stdout.split())) == table
