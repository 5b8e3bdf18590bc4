"""Files the tool writes on the workstation: temp names are fresh (mkstemp), so a symlink
planted at the old fixed name (`manifest.json.tmp`, `lock.yaml.tmp`, `.known_hosts.<pid>.tmp`)
is never followed; per-host logs are private (0600 in a 0700 folder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploy.hosts.fleet import run_on
from deploy.hosts.inventory import LOCAL_HOST
from deploy.hosts.trust import append_known_host
from pi_setup import build_wheels as bw
from pi_setup import ort
from tests.paths import REPO


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


def test_manifest_tmp_symlink_is_not_followed(tmp_path):
    victim = _victim(tmp_path)
    manifest = tmp_path / "wheels" / "manifest.json"
    manifest.parent.mkdir()
    (manifest.parent / "manifest.json.tmp").symlink_to(victim)
    bw.update_manifest(manifest, {"x.whl": {"file": "x.whl"}})
    assert victim.read_text() == "precious\n"
    assert '"x.whl"' in manifest.read_text()


def test_lock_tmp_symlink_is_not_followed(tmp_path):
    victim = _victim(tmp_path)
    lock_path = tmp_path / "lock.yaml"
    shutil.copy(REPO / "tests" / "fixtures" / "ort_lock.yaml", lock_path)
    (tmp_path / "lock.yaml.tmp").symlink_to(victim)
    wheel = ort.load_lock(lock_path).wheels[0]
    assert ort.record_sha256(lock_path, wheel, "ab" * 32, 123)
    assert victim.read_text() == "precious\n"
    assert f'sha256: "{"ab" * 32}"' in lock_path.read_text()


def test_known_hosts_tmp_symlink_is_not_followed(tmp_path):
    victim = _victim(tmp_path)
    known = tmp_path / "project" / "known_hosts"
    known.parent.mkdir()
    (known.parent / f".known_hosts.{os.getpid()}.tmp").symlink_to(victim)
    append_known_host(known, "[127.0.0.1]:2222 ssh-ed25519 AAAA\n")
    assert victim.read_text() == "precious\n"
    assert known.read_text() == "[127.0.0.1]:2222 ssh-ed25519 AAAA\n"
    assert known.stat().st_mode & 0o777 == 0o600


def test_fleet_logs_are_private(tmp_path):
    logs = tmp_path / "logs" / "deploy-1"
    result = run_on([LOCAL_HOST], lambda conn: conn.run("echo secret-ish"), log_dir=logs)
    assert result.exit_code == 0
    log = logs / "local.log"
    assert "secret-ish" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    assert logs.stat().st_mode & 0o777 == 0o700
