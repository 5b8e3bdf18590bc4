/*
 * insn_count: a qemu TCG plugin (linux-user, API version 1, qemu 7.2) that counts the guest
 * instructions a program executes, with a coarse mix, and reports the running totals each time
 * the guest writes to a marker file descriptor.
 *
 *   qemu-arm -plugin insn_count.so,out=FILE,fd=N [-cpu cortex-a72] prog ...
 *
 * Every write(N, buf, LEN) of the guest appends "mark LEN <counts>" to FILE (the code is the
 * length: the guest needs no shared memory with us); the exit appends "exit 0 <counts>".
 * <counts> = total simd fp int ldst branch, cumulative over all guest threads.
 *
 * The mix is decided once per instruction at translation time, from qemu's own disassembly of
 * the instruction bytes (capstone, which knows A32 from T32 and A64), by the mnemonic:
 *   ldst    memory access of any kind: ldr/str/ldm/stm/push/pop (A32, T32), ld..., st..., ldp, stp,
 *           cas/swp (A64); vldr/vstr/vld1-4/vst1-4/vpush/vpop (VFP/NEON loads count here)
 *   branch  b, bl, blx, bx, cbz/cbnz, tbb/tbh, br/blr/ret, tbz/tbnz, b.cond
 *   simd    vector arithmetic: A32/T32 NEON ("v..." naming a q register, or a NEON data type
 *           .i8/.i16/.i32/.i64/.s8/.s16/.u8/.u16/.p8 or .f32 on d registers); A64 any instruction
 *           naming a vector register arrangement (v0.4s, v1.16b, ...)
 *   fp      scalar floating point: A32/T32 VFP ("v..." on s registers, .f64 on d registers, vmrs,
 *           vcvt); A64 instructions on s/d/h registers (fadd s0, fmadd d1 ...) and fmov/scvtf/fcvt...
 *   int     everything else (integer ALU, moves, compares, system)
 * Coarse on purpose: it says whether a kernel runs vector or scalar code, not its cycles.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { C_SIMD, C_FP, C_INT, C_LDST, C_BRANCH, NCLASS };

/*
 * Added to inline by the translated code (no helper call: a callback per block made counting
 * about 4x slower). Not atomic: two guest threads running at once could lose an add, so the
 * runner keeps the guest at one thread (1 intra-op thread, OMP/OpenBLAS at 1).
 */
static uint64_t counts[NCLASS];
static FILE *out;
static GMutex out_lock;
static int64_t marker_fd = -1;
static int64_t write_nr = -1;  /* the write syscall of the guest ABI */
static int is_a64;

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int in_list(const char *m, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(m, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A32/T32: mnemonic M (condition/size suffixes still attached), operands OPS. */
static int classify_a32(const char *m, const char *ops)
{
    static const char *const branches[] = {"b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh",
                                           "bxj", NULL};
    static const char *const conds[] = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs",
                                        "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", NULL};
    char base[16];
    size_t n = strcspn(m, ".");
    if (n >= sizeof(base)) {
        n = sizeof(base) - 1;
    }
    memcpy(base, m, n);
    base[n] = 0;
    if (in_list(base, branches)) {
        return C_BRANCH;
    }
    if (base[0] == 'b' && in_list(base + 1, conds)) {
        return C_BRANCH; /* beq, bne ... */
    }
    if ((base[0] == 'b' && base[1] == 'l' && in_list(base + 2, conds)) ||
        (starts(base, "bx") && in_list(base + 2, conds))) {
        return C_BRANCH;
    }
    if (base[0] == 'v') {
        if (starts(base, "vld") || starts(base, "vst") || starts(base, "vpush") ||
            starts(base, "vpop")) {
            return C_LDST;
        }
        /* a q register (q0-q15) operand: a 128-bit NEON vector */
        for (const char *p = ops; (p = strchr(p, 'q')) != NULL; p++) {
            if (p[1] >= '0' && p[1] <= '9' && (p == ops || p[-1] == ' ' || p[-1] == '{')) {
                return C_SIMD;
            }
        }
        const char *dt = strchr(m, '.');
        if (dt && (starts(dt, ".i") || starts(dt, ".s8") || starts(dt, ".s16") ||
                   starts(dt, ".u8") || starts(dt, ".u16") || starts(dt, ".p8") ||
                   starts(dt, ".8") || starts(dt, ".16") || starts(dt, ".32") ||
                   starts(dt, ".s32") || starts(dt, ".u32") || starts(dt, ".s64") ||
                   starts(dt, ".u64"))) {
            /* integer data types exist only in NEON, except vcvt/vmov between s and core */
            if (!starts(base, "vcvt") && !starts(base, "vmov")) {
                return C_SIMD;
            }
        }
        if (dt && starts(dt, ".f32") && ops[0] == 'd') {
            return C_SIMD; /* a 64-bit NEON vector of two floats */
        }
        return C_FP;
    }
    if ((starts(base, "pop") || starts(base, "ldm")) && strstr(ops, "pc")) {
        return C_BRANCH; /* a return */
    }
    if (starts(base, "ldr") || starts(base, "str") || starts(base, "ldm") ||
        starts(base, "stm") || starts(base, "push") || starts(base, "pop") ||
        starts(base, "ldrex") || starts(base, "strex") || starts(base, "pld") ||
        starts(base, "lda") || starts(base, "stl") || starts(base, "swp")) {
        return C_LDST;
    }
    return C_INT;
}

/* A64: mnemonic M, operands OPS. */
static int classify_a64(const char *m, const char *ops)
{
    static const char *const branches[] = {"b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz",
                                           "tbnz", "braa", "blraa", "retaa", NULL};
    if (in_list(m, branches) || starts(m, "b.")) {
        return C_BRANCH;
    }
    if (starts(m, "ld") || starts(m, "st") || starts(m, "cas") || starts(m, "swp") ||
        starts(m, "prfm")) {
        return C_LDST; /* ldr ldp ld1 ldxr ldar ..., str stp st1 stur stxr stlr ... */
    }
    /* a vector arrangement such as v3.4s / v0.16b / v1.8h / v2.2d, or a lane v0.s[1] */
    for (const char *p = ops; (p = strchr(p, 'v')) != NULL; p++) {
        if (p[1] >= '0' && p[1] <= '9' && (p == ops || p[-1] == ' ' || p[-1] == '{')) {
            return C_SIMD;
        }
    }
    if (m[0] == 'f' || starts(m, "scvtf") || starts(m, "ucvtf")) {
        return C_FP;
    }
    if ((ops[0] == 's' || ops[0] == 'd' || ops[0] == 'h') && ops[1] >= '0' && ops[1] <= '9') {
        return C_FP; /* scalar SIMD&FP register destination (e.g. "add d0, d1, d2") */
    }
    return C_INT;
}

static int classify(const char *text)
{
    char m[32];
    size_t n = strcspn(text, " \t");
    if (n >= sizeof(m)) {
        n = sizeof(m) - 1;
    }
    memcpy(m, text, n);
    m[n] = 0;
    const char *ops = text + n;
    while (*ops == ' ' || *ops == '\t') {
        ops++;
    }
    return is_a64 ? classify_a64(m, ops) : classify_a32(m, ops);
}

/* Classify a translated block's instructions once; each execution adds the per-class sums. */
static void block_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t mix[NCLASS] = {0};
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *text = qemu_plugin_insn_disas(insn);
        mix[text ? classify(text) : C_INT]++;
        g_free(text);
    }
    for (int c = 0; c < NCLASS; c++) {
        if (mix[c]) {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[c],
                                                     mix[c]);
        }
    }
}

static void report(const char *what, uint64_t code)
{
    uint64_t c[NCLASS], total = 0;
    for (int i = 0; i < NCLASS; i++) {
        c[i] = counts[i];
        total += c[i];
    }
    g_mutex_lock(&out_lock);
    fprintf(out, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
            " %" PRIu64 "\n",
            what, code, total, c[C_SIMD], c[C_FP], c[C_INT], c[C_LDST], c[C_BRANCH]);
    fflush(out);
    g_mutex_unlock(&out_lock);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num == write_nr && (int64_t)(uint32_t)a1 == marker_fd) {
        report("mark", a3);
    }
}

static void on_guest_exit(qemu_plugin_id_t id, void *p)
{
    report("exit", 0);
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (starts(argv[i], "out=")) {
            path = argv[i] + 4;
        } else if (starts(argv[i], "fd=")) {
            marker_fd = strtoll(argv[i] + 3, NULL, 10);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (expected out=FILE, fd=N)\n", argv[i]);
            return -1;
        }
    }
    if (path == NULL || marker_fd < 3) {
        fprintf(stderr, "insn_count: needs out=FILE and fd=N (N >= 3)\n");
        return -1;
    }
    if (strcmp(info->target_name, "aarch64") == 0) {
        is_a64 = 1;
        write_nr = 64;
    } else if (strcmp(info->target_name, "arm") == 0) {
        write_nr = 4; /* EABI */
    } else {
        fprintf(stderr, "insn_count: target %s is not arm or aarch64\n", info->target_name);
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        fprintf(stderr, "insn_count: cannot write %s\n", path);
        return -1;
    }
    fprintf(out, "insn_count 1 %s simd fp int ldst branch\n", info->target_name);
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_guest_exit, NULL);
    return 0;
}
