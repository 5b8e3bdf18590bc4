"""progress.json is written on the host, which is not trusted: a record with wrong types is
ignored by the poll, and the benchmark still finishes. The real detached-run scripts run on this
machine with a stand-in runner that writes such records (the hostile host's "python")."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from deploy.console import bench_bars
from deploy.hosts.connection import open_host
from deploy.hosts.inventory import LOCAL_HOST
from deploy.workflow.remote_bench import BenchOptions, parse_poll, run_remote_bench, valid_progress

BAD = [
    ["a", "list"],
    "text",
    {"count": "2", "index": 0, "done": 1, "total": 2, "variant": "fp32", "phase": "timed"},
    {"count": 2, "index": 0, "done": [1], "total": 2, "variant": "fp32", "phase": "timed"},
    {"count": 2, "index": 0, "done": 1, "total": 2, "variant": {"x": 1}, "phase": "timed"},
    {"count": 2, "index": 0, "done": 1, "total": 2, "variant": "fp32"},  # phase missing
    {"count": 2, "index": 0, "done": True, "total": 2, "variant": "fp32", "phase": "timed"},
    {"count": 2, "index": 0, "done": 1, "total": 1e308, "variant": "fp32", "phase": "timed"},
]


@pytest.mark.parametrize("record", BAD, ids=range(len(BAD)))
def test_wrong_types_are_dropped(record):
    assert valid_progress(record) is None
    assert parse_poll(f"progress {json.dumps(record)}\nalive yes\n")["progress"] is None


def test_good_record_passes_and_unknown_fields_are_dropped():
    record = {"count": 2, "index": 1, "done": 3, "total": 5, "variant": "int8", "phase": "timed"}
    assert valid_progress({**record, "extra": "x"}) == record


def test_bench_with_a_hostile_progress_file_finishes(tmp_path):
    deploy_dir = tmp_path / "deploy"
    python = deploy_dir / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    records = "\n".join(json.dumps(r) for r in BAD)
    python.write_text(
        "#!/bin/bash\n"
        "while read -r line; do printf '%s\\n' \"$line\" > progress.json; sleep 0.15; done <<'EOF'\n"
        f"{records}\nEOF\n"
        'out=""; while [ $# -gt 0 ]; do [ "$1" = --json ] && out=$2; shift; done\n'
        'echo "{}" > "$out"\n'
    )
    python.chmod(0o755)
    events = []
    display = bench_bars()("pi-hostile")  # the real progress bar of remote-bench

    def progress(event):
        events.append(event)
        display(event)

    options = BenchOptions(timeout_s=60)
    host = replace(LOCAL_HOST, deploy_dir=str(deploy_dir))
    with open_host(host) as conn:
        remote = run_remote_bench(
            conn,
            str(deploy_dir),
            options,
            "s1",
            progress,
            sleep=lambda _s: time.sleep(0.05),
        )
    assert remote == f"{deploy_dir}/bench/s1/bench.json"
    assert events == []  # every record was malformed: none reached the display
