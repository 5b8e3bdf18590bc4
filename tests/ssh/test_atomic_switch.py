"""A redeploy switches `current` in one rename: a reader on the host never finds it missing.

The kernel's inotify log of the deploy folder is the reader that cannot miss a short gap: with
`rm current; ln -s …` it shows `current` deleted then created; with the symlink made under a temp
name and renamed over (`ln -sfn … .current.tmp && mv -T`), only a rename onto `current`."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.inotify import FolderEvents
from tests.ssh.test_deploy_ssh import changed_models, current_release, release_intact, run_deploy

pytestmark = pytest.mark.ssh


def test_current_is_never_missing_during_a_redeploy(lab, models_dir):
    lab.add("pi-switch")
    lab.trust("pi-switch")
    where = lab.deploy_dir("pi-switch")
    first = run_deploy(lab, "pi-switch", models_dir)
    assert first.exit_code == 0, first.reports[0].message
    old = current_release(where)
    changed = changed_models(models_dir, lab.root / "models-switch")
    with FolderEvents(where) as watch:
        again = run_deploy(lab, "pi-switch", changed)
        events = watch.read()
    assert again.exit_code == 0, again.reports[0].message
    new = current_release(where)
    assert new == again.reports[0].result.release_id != old and release_intact(where, new)
    on_current = [kind for kind, name in events if name == "current"]
    assert on_current == ["moved_to"], f"`current` went through {on_current} (all: {events})"
    assert os.path.islink(where / "current") and not os.path.lexists(where / ".current.tmp")
