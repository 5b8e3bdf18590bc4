"""What a bench result holds: the stages, the statistics of each, their formatting.

The one definition: the runner's bench, the workstation's bench-local and deploy's results all
take STAGES and STATS from here. Torch-free, Python 3.7+; numpy only inside `summarize`.
"""

RESULT_FORMAT = 1
STAGES = ("pre", "infer", "post", "e2e")
STATS = ("p50", "p90", "p99", "mean", "std", "min", "max")


def summarize(samples_ms):
    """p50/p90/p99/mean/std/min/max (ms, 3 decimals) of a list of latencies in milliseconds."""
    import numpy as np  # lazily: the runner's --help must work without numpy

    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    stats = {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "mean": values.mean(),
        "std": values.std(ddof=1) if values.size > 1 else 0.0,
        "min": values.min(),
        "max": values.max(),
    }
    return {key: round(float(stats[key]), 3) for key in STATS}


def summary_lines(result):
    """One line per variant for the terminal."""
    lines = []
    for name in result["order"]:
        record = result["variants"][name]
        if record["status"] != "ok":
            lines.append("{:>20}: {} ({})".format(name, record["status"], record["skipped"]))
            continue
        e2e = record["stages"]["e2e"]
        lines.append(
            "{:>20}: p50 {:.1f} ms, p90 {:.1f} ms, {:.1f} FPS, {} faces{}".format(
                name,
                e2e["p50"],
                e2e["p90"],
                record["fps"],
                record["faces"],
                "" if record["valid"] else ", INVALID: " + "; ".join(record["invalid_reasons"]),
            )
        )
    return lines
