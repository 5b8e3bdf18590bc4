"""known_hosts has one writer (deploy.hosts.trust): trust-host appends, the emulator's own fresh
key replaces only that emulator's line; both write the file whole, 0600, in a 0700 .ssh."""

from __future__ import annotations

import os

from deploy.hosts.trust import append_known_host, record_own_host_key


def test_own_key_replaces_only_its_line_and_keeps_the_file_private(tmp_path, monkeypatch):
    known = tmp_path / "project" / ".ssh" / "known_hosts"
    monkeypatch.setenv("RETINAFACE_PI_KNOWN_HOSTS", str(known))
    append_known_host(known, "pi4 ssh-ed25519 AAAApi4\n")
    append_known_host(known, "[127.0.0.1]:2222 ssh-ed25519 AAAAold\n")
    append_known_host(known, "[127.0.0.1]:22220 ssh-ed25519 AAAAother\n")
    os.chmod(known, 0o644)  # as the emulator's own writer used to leave it
    assert record_own_host_key("[127.0.0.1]:2222", "ssh-ed25519", "AAAAnew") == known
    assert known.read_text().splitlines() == [
        "pi4 ssh-ed25519 AAAApi4",
        "[127.0.0.1]:22220 ssh-ed25519 AAAAother",  # a prefix of another key name is not it
        "[127.0.0.1]:2222 ssh-ed25519 AAAAnew",
    ]
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"


def test_append_never_replaces_a_recorded_line(tmp_path):
    known = tmp_path / "known_hosts"
    append_known_host(known, "pi4 ssh-ed25519 AAAAone\n")
    append_known_host(known, "pi4 ssh-ed25519 AAAAtwo\n")
    assert known.read_text() == "pi4 ssh-ed25519 AAAAone\npi4 ssh-ed25519 AAAAtwo\n"
