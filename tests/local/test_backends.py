"""local_backends wires every port of the local provider to one private state folder."""

from __future__ import annotations

import stat
from pathlib import Path

from quiesce.providers.local import (
    LocalHookRunner,
    LocalInventory,
    LocalSnapshotter,
    SqliteEventBus,
    SqliteStateStore,
    local_backends,
)


def test_local_backends_creates_a_private_state_folder_and_wires_every_port(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "nested" / ".quiesce"
    backends = local_backends(state_dir)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert set(backends.providers) == {"local"}
    local = backends.providers["local"]
    assert isinstance(local.inventory, LocalInventory)
    assert isinstance(local.hooks, LocalHookRunner)
    assert local.hooks.guest_state_dir == state_dir / "guest"
    assert isinstance(local.snapshots, LocalSnapshotter)
    assert local.snapshots.root == state_dir / "snapshots"
    assert isinstance(backends.state, SqliteStateStore)
    assert isinstance(backends.bus, SqliteEventBus)
    assert (state_dir / "catalog.sqlite3").is_file()
    assert (state_dir / "events.sqlite3").is_file()


def test_local_backends_on_an_existing_state_folder_keeps_its_data(tmp_path: Path) -> None:
    from .support import run_record

    local_backends(tmp_path).state.save_run(run_record("r-1"))
    assert local_backends(tmp_path).state.get_run("r-1") == run_record("r-1")
