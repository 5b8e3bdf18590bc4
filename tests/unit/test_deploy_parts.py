"""Deploy pieces without a network: runner wheel, wheel tags, templates, state parsing, fleet."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.hosts.errors import UnreachableError
from deploy.hosts.facts import parse_facts
from deploy.hosts.fleet import FleetResult, HostReport, run_on
from deploy.hosts.inventory import Host
from deploy.hosts.scripts import TEMPLATES, render
from deploy.workflow.release import ReleaseFile, release_id, runner_wheel_bytes
from deploy.workflow.sync import parse_state, plan_sync
from pi_setup.wheelhouse import matching_wheels, wheel_tags
from tests.paths import REPO


def _shipped_tree():
    """Every .py file under retinaface/ except tools/ and __pycache__, as wheel paths."""
    package = REPO / "retinaface"
    return sorted(
        f"retinaface/{path.relative_to(package).as_posix()}"
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] != "tools" and "__pycache__" not in path.parts
    )


def test_runner_wheel_is_reproducible_and_complete():
    name, first = runner_wheel_bytes(REPO / "retinaface")
    _, second = runner_wheel_bytes(REPO / "retinaface")
    assert first == second
    assert name == "retinaface_pi_runner-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(__import__("io").BytesIO(first)) as archive:
        names = archive.namelist()
        record = archive.read("retinaface_pi_runner-0.1.0.dist-info/RECORD").decode()
    shipped = sorted(n for n in names if n.startswith("retinaface/"))
    assert shipped == _shipped_tree()
    # the folders of the runner are in it, the workstation's tools are not
    for module in ("runner.py", "cli.py", "backends/onnxruntime.py", "bench/run.py",
                   "live/streamer.py", "model.py"):  # fmt: skip
        assert f"retinaface/{module}" in shipped
    assert not [n for n in names if "/tools/" in n or n.endswith(".pyc")]
    for entry in names:
        assert entry in record


def test_runner_wheel_leaves_out_tools_and_caches(tmp_path):
    package = tmp_path / "retinaface"
    for rel in ("__init__.py", "runner.py", "bench/__init__.py", "bench/run.py",
                "tools/__init__.py", "tools/export.py", "__pycache__/runner.py",
                "bench/__pycache__/run.py"):  # fmt: skip
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(f"# {rel}\n")
    _, data = runner_wheel_bytes(package)
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:
        shipped = sorted(n for n in archive.namelist() if n.startswith("retinaface/"))
    assert shipped == [
        "retinaface/__init__.py",
        "retinaface/bench/__init__.py",
        "retinaface/bench/run.py",
        "retinaface/runner.py",
    ]


def test_runner_wheel_installs_with_pip(tmp_path):
    name, data = runner_wheel_bytes(REPO / "retinaface")
    (tmp_path / name).write_bytes(data)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
         "--target", str(target), str(tmp_path / name)],
        check=True,
    )  # fmt: skip
    assert (target / "retinaface" / "runner.py").is_file()
    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], env={"PYTHONPATH": str(target)}, capture_output=True
    )
    assert b"retinaface-pi-runner" not in check.stdout


def test_a_folder_that_is_not_the_package_is_named(tmp_path):
    (tmp_path / "config.py").write_text("")
    with pytest.raises(DeployError, match="not the retinaface package"):
        runner_wheel_bytes(tmp_path)


def test_wheel_tags_and_matching(tmp_path):
    assert wheel_tags("onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl") == {"cp39-cp39-linux_armv7l"}
    assert wheel_tags("six-1.16.0-py2.py3-none-any.whl") == {"py2-none-any", "py3-none-any"}
    assert wheel_tags("notawheel.tar.gz") == set()
    for name in (
        "onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl",
        "onnxruntime-1.9.1-cp311-cp311-linux_armv7l.whl",
        "torch-1.7.0-cp39-cp39-linux_armv7l.whl",
        "torch-1.7.0-cp39-cp39-linux_x86_64.whl",
        "six-1.16.0-py2.py3-none-any.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    host = parse_facts("pi", "tag=cp39-cp39-linux_armv7l\ntag=cp39-none-any\ntag=py3-none-any\n")
    names = [path.name for path in matching_wheels(tmp_path, host.tags)]
    assert names == [
        "onnxruntime-1.9.1-cp39-cp39-linux_armv7l.whl",
        "six-1.16.0-py2.py3-none-any.whl",
        "torch-1.7.0-cp39-cp39-linux_armv7l.whl",
    ]


def test_facts_parse():
    facts = parse_facts(
        "pi4",
        "hostname=raspberrypi\nmachine=aarch64\narch=armhf\nos_codename=bullseye\n"
        "mem_total_kb=3884000\ndisk_free_kb=10240000\npi_model=Raspberry Pi 4 Model B Rev 1.4\n"
        "temperature_c=48.3\npython=/usr/bin/python3\npython_version=3.9.2\npython_tag=cp39\n"
        "platform_tag=linux_armv7l\ntag=cp39-cp39-linux_armv7l\n",
    )
    assert (facts.arch, facts.machine, facts.mem_total_mb, facts.disk_free_mb) == (
        "armhf",
        "aarch64",
        3792,
        10000,
    )
    assert facts.temperature_c == 48.3 and facts.tags == ("cp39-cp39-linux_armv7l",)
    assert "Raspberry Pi 4" in facts.summary()["pi model"]


DEPLOY_TEMPLATES = sorted(
    p.name for p in TEMPLATES.glob("*.sh.j2") if p.name.startswith(("facts", "deploy_"))
)


def test_deploy_templates_found():
    assert len(DEPLOY_TEMPLATES) == 6


@pytest.mark.parametrize("name", DEPLOY_TEMPLATES)
def test_shell_templates_render_and_parse(name, tmp_path):
    context = {
        "owner": "node 1 token",
        "create": True,
        "action": "take",
        "python": "python3",
        "deploy_dir": "/home/pi/retinaface pi",
        "release_id": "0123456789abcdef",
        "release_dir": "/home/pi/retinaface pi/releases/0123456789abcdef",
        "links": [{"rel": "models/a b.onnx", "source": "/x/y's", "sha256": "00"}],
        "wheelhouse": "/w h",
        "install": ["a-1-py3-none-any.whl"],
        "marker": ["00 a-1-py3-none-any.whl"],
        "pip_requirements": ["numpy>=1.20,<2"],
        "apt_packages": ["libgomp1", "libatomic1"],
        "share_site": True,
        "keep": 3,
        "dirs": ["/home/pi/retinaface pi/releases/0123456789abcdef/models"],
    }
    script = render(name, **context)
    path = tmp_path / "script.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    lint = subprocess.run(
        ["shellcheck", "-s", "bash", "-S", "warning", str(path)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout


def test_render_refuses_missing_variables():
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render("deploy_activate.sh.j2", deploy_dir="/x")


def rf(rel, sha, size=10):
    return ReleaseFile(rel, Path("/nowhere") / rel, sha, size)


def test_state_and_sync_plan():
    old, older, new = "00000000000000a1", "00000000000000a2", "00000000000000b0"  # release ids
    text = "\n".join(
        [
            f"current {old}",
            f"release {old} 200 1",
            f"release {older} 100 1",
            f"release {new} 300 0",
            "release odd name 1 1",
            "release not-an-id 1 1",
            f"sum {older} aaa models/a.onnx",
            f"sum {old} aaa models/a.onnx",
            f"sum {old} bbb probe.jpg",
            f"sum {new} zzz models/z.onnx",
            "have ccc models/c.onnx",
            "part models/d.onnx.part-1234",
            "venv yes",
            "installed w1 r.whl",
        ]
    )
    state = parse_state(text, "/d", target=new)
    assert (
        state.current == old
        and "not-an-id" not in state.releases
        and state.venv
        and state.installed == {"r.whl": "w1"}
    )
    assert state.sums["aaa"] == f"/d/releases/{old}/models/a.onnx"  # the current release first
    assert "zzz" not in state.sums  # the target's own sums are not trusted
    files = [rf("models/a.onnx", "aaa"), rf("models/c.onnx", "ccc"), rf("models/d.onnx", "ddd", 7)]
    plan = plan_sync(files, new, state)
    assert [f.rel for f in plan.keep] == ["models/c.onnx"]
    assert [(f.rel, src) for f, src in plan.link] == [
        ("models/a.onnx", f"/d/releases/{old}/models/a.onnx")
    ]
    assert [f.rel for f in plan.upload] == ["models/d.onnx"] and plan.upload_bytes == 7
    assert release_id(files) == release_id(list(reversed(files)))
    assert release_id(files) != release_id(files[:2])


def test_fleet_isolates_failures_and_maps_exit_codes(tmp_path):
    hosts = [Host(name=f"h{i}", connection="local", deploy_dir=str(tmp_path)) for i in range(4)]

    def workflow(conn):
        if conn.host.name == "h1":
            raise DeployError("h1: broken")
        if conn.host.name == "h2":
            raise UnreachableError("h2: gone")
        if conn.host.name == "h3":
            raise RuntimeError("bug")
        return conn.run("echo hi").stdout.strip()

    result = run_on(hosts, workflow, forks=2, log_dir=tmp_path / "logs")
    assert [r.status for r in result.reports] == ["ok", "failed", "unreachable", "failed"]
    assert result.reports[0].message == "hi"
    assert result.exit_code == 4
    assert "Traceback" in (tmp_path / "logs" / "h3.log").read_text()
    assert "recap: ok=1, changed=0, failed=2, unreachable=1 (exit 4)" in result.recap()
    assert FleetResult([HostReport("a", "failed", "", 0.0)]).exit_code == 2
    assert FleetResult([HostReport("a", "changed", "", 0.0)]).exit_code == 0


def test_forks_bound_the_pool_and_a_slow_host_holds_only_its_own(tmp_path):
    import threading

    from deploy.hosts.fleet import check_forks

    hosts = [Host(name=f"h{i}", connection="local", deploy_dir=str(tmp_path)) for i in range(6)]
    lock, others_done = threading.Lock(), threading.Event()
    count = {"active": 0, "peak": 0, "done": 0}

    def workflow(conn):
        with lock:
            count["active"] += 1
            count["peak"] = max(count["peak"], count["active"])
        try:
            if conn.host.name == "h0":  # the slow host: busy until every other one is done
                if not others_done.wait(60):
                    raise DeployError("the other hosts waited for the slow one")
            else:
                with lock:
                    count["done"] += 1
                    if count["done"] == len(hosts) - 1:
                        others_done.set()
            return "done"
        finally:
            with lock:
                count["active"] -= 1

    result = run_on(hosts, workflow, forks=2)
    assert [r.status for r in result.reports] == ["ok"] * 6
    assert count["peak"] == 2
    assert len(run_on(hosts[:3], lambda conn: None, forks=1).reports) == 3
    for bad in (0, -1, "many", 10_000):
        with pytest.raises(DeployError, match="--forks"):
            check_forks(bad)


def test_local_connection_put_is_atomic_and_verified(tmp_path):
    from deploy.hosts.connection import open_host
    from retinaface.files import sha256_file

    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 1000)
    host = Host(name="local", connection="local")
    with open_host(host) as conn:
        seen = []
        sent = conn.put(
            source,
            str(tmp_path / "a" / "b.bin"),
            sha256=sha256_file(source),
            progress=lambda *a: seen.append(a),
        )
        assert sent == 1000 and seen[-1] == ("src.bin", 1000, 1000)
        with pytest.raises(DeployError, match="sha256 after upload"):
            conn.put(source, str(tmp_path / "c.bin"), sha256="0" * 64)
        assert not list(tmp_path.glob("c.bin*"))
        with pytest.raises(DeployError, match="exit 3"):
            conn.run("exit 3")
        with pytest.raises(DeployError, match="timed out"):
            conn.run("sleep 3", timeout=0.5)
        assert conn.run("pwd").stdout.strip() == str(Path.home())


def test_deploy_lock_waits_for_live_owner_and_takes_over_dead_ones(tmp_path):
    import platform

    from deploy.hosts.connection import open_host
    from deploy.workflow.sync import acquire_lock, release_lock

    lock = tmp_path / ".deploy.lock"
    with open_host(Host(name="local", connection="local")) as conn:
        owner = acquire_lock(conn, str(tmp_path))
        assert (lock / "owner").read_text().strip() == owner
        with pytest.raises(DeployError, match=r"\.deploy\.lock"):
            acquire_lock(conn, str(tmp_path), wait=0.5)  # held by a live deploy (us)
        release_lock(conn, str(tmp_path), owner)
        assert not lock.exists()

        lock.mkdir()  # left by a dead deploy from this machine
        dead = subprocess.Popen(["true"])
        dead.wait()
        (lock / "owner").write_text(f"{platform.node()} {dead.pid} abc\n")
        owner = acquire_lock(conn, str(tmp_path), wait=5)
        assert (lock / "owner").read_text().strip() == owner
        release_lock(conn, str(tmp_path), owner)

        lock.mkdir()  # another machine's deploy: wait, then give up naming the lock
        (lock / "owner").write_text("elsewhere 1 abc\n")
        with pytest.raises(DeployError, match="another deploy"):
            acquire_lock(conn, str(tmp_path), wait=0.5)


def test_facts_probe_expands_home_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    script = render("facts.sh.j2", python="python3", deploy_dir="~/retinaface pi")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    facts = parse_facts("local", out)
    assert facts.home == str(tmp_path) and facts.disk_free_mb > 0 and facts.tags


def test_a_model_whose_digest_differs_from_its_manifest_is_refused(models_dir, tmp_path):
    """A model file changed after `invoke models` wrote its sha256 never reaches a host."""
    import shutil

    from deploy.workflow.release import plan_release
    from retinaface.files import sha256_file

    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    runner = tmp_path / "retinaface_pi_runner-0-py3-none-any.whl"
    runner.write_bytes(b"stand-in wheel: only its digest is planned")
    plan = plan_release(["py3-none-any"], models, tmp_path / "no-wheels", runner)
    assert "models/int8.onnx" in {f.rel for f in plan.files}  # untouched copy: planned
    listed = plan.manifest["models"]["int8"]["sha256"]
    with open(models / "int8.onnx", "r+b") as handle:  # one byte flipped in place
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    actual = sha256_file(models / "int8.onnx")
    with pytest.raises(DeployError) as refused:
        plan_release(["py3-none-any"], models, tmp_path / "no-wheels", runner)
    assert str(refused.value) == (
        f"{models / 'int8.onnx'}: sha256 {actual} differs from manifest.json ({listed}); "
        "re-run `invoke models`"
    )
