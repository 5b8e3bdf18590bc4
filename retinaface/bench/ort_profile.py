"""What onnxruntime really executes for a model on this host: its profiler's node events,
summed per operator type, and whether an INT8 graph ran as integer kernels or fell back to
float. Runs on the Pi (torch-free, Python 3.7+, numpy 1.16+)."""

import json
import os
import shutil
import tempfile

# Operators that compute on integers (what a quantized Conv should become).
INTEGER_OPS = (
    "QLinearConv",
    "ConvInteger",
    "QLinearMatMul",
    "MatMulInteger",
    "QLinearAdd",
    "QLinearLeakyRelu",
    "QLinearSigmoid",
    "QLinearConcat",
    "QLinearGlobalAveragePool",
)
FLOAT_CONV_OPS = ("Conv", "FusedConv", "NchwcConv")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def op_summary(events):
    """{op type: {"count", "us", "share"}} from the profiler's JSON events (kernel time only).

    `count` is the number of nodes of that type executed in one run (the events of the first
    run that saw it), `us` the total time over all profiled runs."""
    totals, nodes = {}, {}
    for event in events:
        if not isinstance(event, dict) or event.get("cat") != "Node":
            continue
        name = str(event.get("name", ""))
        if not name.endswith("_kernel_time"):
            continue
        args = event.get("args") if isinstance(event.get("args"), dict) else {}
        op = str(args.get("op_name") or "?")
        try:
            dur = float(event.get("dur", 0))
        except (TypeError, ValueError):
            continue
        totals[op] = totals.get(op, 0.0) + dur
        nodes.setdefault(op, set()).add(name)
    whole = sum(totals.values()) or 1.0
    return {
        op: {"count": len(nodes[op]), "us": round(us, 1), "share": round(us / whole, 4)}
        for op, us in sorted(totals.items(), key=lambda item: -item[1])
    }


def int8_verdict(ops):
    """One plain sentence: did the quantized convolutions run as integer kernels?"""
    integer = sum(ops[op]["count"] for op in INTEGER_OPS if op in ops)
    float_conv = sum(ops[op]["count"] for op in FLOAT_CONV_OPS if op in ops)
    qdq = sum(ops[op]["count"] for op in QDQ_OPS if op in ops)
    if not integer and not qdq:
        return "float", "no quantized operator executed (a float model)"
    if integer and not float_conv:
        return "integer", "INT8 ran as integer kernels ({} integer nodes, {} Q/DQ)".format(
            integer, qdq
        )
    if integer:
        return "mixed", (
            "INT8 ran partly as integer kernels: {} integer nodes, {} float convolutions, "
            "{} Q/DQ round trips".format(integer, float_conv, qdq)
        )
    return "fallback", (
        "INT8 fell back to float: {} float convolutions between {} QuantizeLinear/"
        "DequantizeLinear nodes, no integer kernel".format(float_conv, qdq)
    )


def profile_model(model_path, blob, threads=None, runs=5):
    """Run `blob` `runs` times through a profiling session; the op summary and INT8 verdict.

    A separate session from the timed one: the profiler's own cost never reaches the
    latency numbers."""
    import onnxruntime as ort

    folder = tempfile.mkdtemp(prefix="retinaface-profile-")
    try:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(max(1, int(runs))):
            session.run(None, {name: blob})
        path = session.end_profiling()
        with open(path) as handle:
            events = json.load(handle)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ops = op_summary(events if isinstance(events, list) else [])
    kind, verdict = int8_verdict(ops)
    return {"runs": max(1, int(runs)), "ops": ops, "kind": kind, "verdict": verdict}
