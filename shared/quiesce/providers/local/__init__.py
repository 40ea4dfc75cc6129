"""The `local` provider: this machine's folders, processes and a SQLite catalog and bus.

state_dir/
    catalog.sqlite3   runs, recovery points, locks, trigger ids, outbox (SqliteStateStore)
    events.sqlite3    published CloudEvents (SqliteEventBus)
    snapshots/        volume snapshots (LocalSnapshotter)
    guest/            the guest hook runner's state and watchdogs (LocalHookRunner)
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from quiesce.ports import Backends, HookRunner, Provider
from quiesce.providers.local.bus import SqliteEventBus
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.providers.local.inventory import LocalInventory
from quiesce.providers.local.reflink import clone_file, clone_tree
from quiesce.providers.local.snapshots import LocalSnapshotter
from quiesce.providers.local.state import SqliteStateStore

__all__ = [
    "LocalHookRunner",
    "LocalInventory",
    "LocalSnapshotter",
    "SqliteEventBus",
    "SqliteStateStore",
    "clone_file",
    "clone_tree",
    "local_backends",
    "local_provider",
]


def local_provider(
    state_dir: Path, hooks: HookRunner | None = None, freezing_members: Collection[str] = ()
) -> Provider:
    """Inventory, hooks and snapshots of this machine, keeping their state in `state_dir`.

    `freezing_members`: members whose volumes a pre hook may freeze (see LocalSnapshotter)."""
    state_dir = Path(state_dir)
    return Provider(
        inventory=LocalInventory(),
        hooks=hooks if hooks is not None else LocalHookRunner(state_dir),
        snapshots=LocalSnapshotter(state_dir, freezing_members),
    )


def local_backends(state_dir: Path, hooks: HookRunner | None = None) -> Backends:
    """Everything the engine needs to back up local members, all kept in `state_dir`.

    The folder is created private (0o700): it holds copies of the members' data.
    """
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
    return Backends(
        providers={"local": local_provider(state_dir, hooks)},
        state=SqliteStateStore(state_dir),
        bus=SqliteEventBus(state_dir),
    )
