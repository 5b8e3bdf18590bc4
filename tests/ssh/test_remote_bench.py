"""remote-bench over real SSH (OpenSSH sshd on 127.0.0.1) with small run counts: a group of two
hosts → one comparison table, the JSON schema, skipped-variant reasons, a host that is down, the
runner crashing on the host (reported with its stderr, no result file), and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.results.model import load_result
from deploy.workflow.remote_bench import BenchOptions, remote_bench, run_remote_bench
from retinaface.bench.schema import STAGES, STATS
from tests.paths import REPO

pytestmark = pytest.mark.ssh

SMALL = dict(runs=2, warmup=0, windows=1, min_time_s=0.0, size=(320, 240))


def bench(lab, host, models_dir, out, events=None, **options):
    return remote_bench(
        host,
        str(lab.inventory),
        BenchOptions(**{**SMALL, **options}),
        out_root=out,
        progress_for=(lambda name: events.setdefault(name, []).append)
        if events is not None
        else None,
        models_dir=models_dir,
        log_dir=lab.root / "logs",
    )


def test_group_of_two_hosts_one_comparison_table(lab, models_dir, tmp_path):
    for name in ("pi-a", "pi-b"):
        lab.add(name)
        lab.trust(name)
    events: dict = {}
    variants = ["fp32", "opencv", "fp32-static-999x999", "int8"]
    run = bench(lab, "fleet", models_dir, tmp_path / "results", events, variants=variants)
    assert run.exit_code == 0, run.fleet.recap()
    assert run.results_dir.parent == tmp_path / "results"
    for name in ("pi-a", "pi-b"):
        path = run.results_dir / name / "bench.json"
        result = load_result(path)  # the schema check of deploy.results.model
        data = result.data
        assert data["inventory_host"] == name and data["deploy"]["deployed"] is True
        assert data["config"]["size"] == [320, 240] and data["config"]["runs"] == 2
        assert data["order"] == variants
        fp32 = data["variants"]["fp32"]
        assert fp32["status"] == "ok" and fp32["faces"] > 0 and fp32["valid"] is True
        assert fp32["input_size"] == [320, 240]
        assert set(fp32["stages"]) == set(STAGES)
        assert all(set(fp32["stages"][stage]) == set(STATS) for stage in STAGES)
        assert set(fp32["telemetry"]) == {"before", "after", "trace"}
        assert "loadavg" in fp32["telemetry"]["before"]
        opencv = data["variants"]["opencv"]
        assert opencv["status"] == "skipped"
        assert opencv["skipped"].startswith("needs fp32-static-320x240 in manifest.json")
        assert data["variants"]["fp32-static-999x999"]["skipped"].startswith("not in manifest.json (has: ")
        assert data["facts"]["host"] == name
        stages = [event["stage"] for event in events[name]]
        assert stages[0] == "deploy" and stages[-2:] == ["pull", "done"] and "bench" in stages
        # The run directory on the host is removed after the pull.
        assert not list((lab.deploy_dir(name) / "bench").iterdir())
    table = (run.results_dir / "table.md").read_text()
    assert table == run.report.markdown
    assert "## All hosts: end to end p50 (FPS)" in table
    assert "| variant | pi-a | pi-b |" in table
    assert (run.results_dir / "table.csv").is_file() and (run.results_dir / "report.html").is_file()
    # A second run does not redeploy.
    again = bench(lab, "pi-a", models_dir, tmp_path / "results", variants=["fp32"])
    assert again.exit_code == 0, again.fleet.recap()
    assert again.results_dir != run.results_dir
    assert (
        json.loads((again.results_dir / "pi-a" / "bench.json").read_text())["deploy"]["deployed"]
        is False
    )


def test_a_host_that_is_down_exits_4_and_the_others_report(lab, models_dir, tmp_path):
    lab.add("pi-up")
    lab.trust("pi-up")
    down = lab.add("pi-down")
    lab.trust("pi-down")
    down.stop()
    run = bench(lab, "pi-up,pi-down", models_dir, tmp_path / "results", variants=["fp32"])
    assert run.exit_code == 4, run.fleet.recap()
    status = {report.host: report.status for report in run.fleet.reports}
    assert status == {"pi-up": "ok", "pi-down": "unreachable"}
    assert (run.results_dir / "pi-up" / "bench.json").is_file()
    assert not (run.results_dir / "pi-down").exists()
    assert "| ms per frame | fp32 |" in run.report.markdown
    # A host where no variant can run fails, but its result (all skip reasons) is kept.
    none = bench(lab, "pi-up", models_dir, tmp_path / "results", variants=["fp32-static-999x999"])
    assert none.exit_code == 2
    message = none.fleet.reports[0].message
    assert "pi-up: no variant could run (fp32-static-999x999: not in manifest.json (has: " in message
    assert (none.results_dir / "pi-up" / "bench.json").is_file()
    assert "| ms per frame | fp32-static-999x999 |" in none.report.markdown


CRASHES = {
    "signal": (
        "import sys, ctypes\n"
        "sys.stderr.write('about to crash on the host\\n'); sys.stderr.flush()\n"
        "ctypes.string_at(0)\n",
        ["killed by signal 11 (SIGSEGV)", "about to crash on the host"],
    ),
    "exception": (
        "raise RuntimeError('boom from the host')\n",
        ["(exit 1)", "RuntimeError: boom from the host", "Traceback"],
    ),
}


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_runner_crash_is_reported_with_stderr_and_no_result(lab, models_dir, tmp_path, kind):
    lab.add("pi-x")
    lab.trust("pi-x")
    first = bench(lab, "pi-x", models_dir, tmp_path / "results", variants=["fp32"])
    assert first.exit_code == 0, first.fleet.recap()
    # Break the installed runner on the host (deploy checks wheels, not site-packages).
    venv = lab.deploy_dir("pi-x") / "venv"
    installed = list(venv.glob("lib/python*/site-packages/retinaface/bench/run.py"))
    assert len(installed) == 1
    code, words = CRASHES[kind]
    installed[0].write_text(code + installed[0].read_text())
    run = bench(lab, "pi-x", models_dir, tmp_path / "results", variants=["fp32"])
    assert run.exit_code == 2
    report = run.fleet.reports[0]
    assert report.status == "failed"
    for word in ["pi-x: the runner failed", "stderr:", *words]:
        assert word in report.message, report.message
    assert not (run.results_dir / "pi-x").exists()
    assert run.report is None and not (run.results_dir / "table.md").exists()


def test_cli_remote_bench_prints_the_table(lab, tmp_path):
    lab.add("pi-c")
    lab.trust("pi-c")
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "invoke", "remote-bench", "--host", "pi-c",
            "--inventory", str(lab.inventory), "--out", str(out), "--size", "320x240",
            "--runs", "2", "--warmup", "0", "--min-time", "0", "--variants", "fp32,opencv",
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recap: ok=1" in done.stdout
    assert "| ms per frame | fp32 | opencv |" in done.stdout
    assert "opencv: skipped — needs fp32-static-320x240" in done.stdout
    stamp = next(out.iterdir())
    assert f"wrote {stamp}/{{table.md, table.csv, report.html}}" in done.stdout
    report = subprocess.run(
        [sys.executable, "-m", "invoke", "report", str(stamp), "--compare", str(stamp)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "| pi-c | fp32 |" in report.stdout and "+0.0 ms, +0.0 %" in report.stdout
    assert Path(stamp / "compare.md").is_file()


def test_timeout_stops_the_benchmark_on_the_host(models_dir, tmp_path):
    """The `local` host (same workflow code): a run longer than --timeout is killed, not left."""
    import time

    from deploy.errors import DeployError
    from deploy.hosts.connection import open_host
    from deploy.hosts.inventory import LOCAL_HOST

    deploy_dir = tmp_path / "retinaface-pi"
    (deploy_dir / "venv" / "bin").mkdir(parents=True)
    python = deploy_dir / "venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (deploy_dir / "current").mkdir()
    (deploy_dir / "current" / "models").symlink_to(models_dir)
    (deploy_dir / "current" / "probe.jpg").symlink_to(REPO / "deploy" / "assets" / "probe.jpg")
    options = BenchOptions(runs=100000, warmup=0, windows=1000, variants=["fp32"], timeout_s=8.0)
    events = []
    with open_host(LOCAL_HOST) as conn:
        with pytest.raises(DeployError, match="took longer than 8 s and was stopped"):
            run_remote_bench(conn, str(deploy_dir), options, "t1", progress=events.append)
    assert any(event.get("phase") == "timed" for event in events)
    pid = int((deploy_dir / "bench" / "t1" / "pid").read_text())
    for _ in range(50):
        alive = subprocess.run(["kill", "-0", "--", f"-{pid}"], capture_output=True).returncode
        if alive != 0:
            break
        time.sleep(0.1)
    assert alive != 0, "the benchmark's process group survived the timeout"
    assert not (deploy_dir / "bench" / "t1" / "bench.json").exists()
