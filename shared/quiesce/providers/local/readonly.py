"""The catalog and the event bus opened for reading only, for `quiesce points` and `events`.

Reading never writes: no folder or file is created, no schema migrated, and a state folder on
read-only media (a read-only mount, a backup copy) can still be listed. SQLite needs to write a
`-shm` file next to a WAL database even to read it; where it cannot (the folder is read-only),
the file is opened as immutable, which is exact as long as no `-wal` file holds uncheckpointed
writes (then the error says so).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from quiesce.providers.local.bus import EVENTS_FILE, SqliteEventBus
from quiesce.providers.local.state import (
    BUSY_TIMEOUT,
    CATALOG_FILE,
    CatalogAccessError,
    SqliteFile,
    SqliteStateStore,
)


class ReadOnlySqliteFile(SqliteFile):
    """A SqliteFile whose connections can only read."""

    def __init__(self, path: Path) -> None:  # no super().__init__: it creates and migrates
        self.path = Path(path)
        self._check_file()

    def connect(self) -> contextlib.closing[sqlite3.Connection]:
        uri = "file:" + quote(str(self.path.absolute())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.OperationalError as exc:
            if os.access(self.path.parent, os.W_OK) and not _read_only_mount(self.path.parent):
                raise CatalogAccessError(f"cannot open {self.path} for reading: {exc}") from exc
            wal = Path(f"{self.path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise CatalogAccessError(
                    f"cannot read {self.path}: its folder is read-only and {wal} holds writes "
                    "not yet in the file; open it once where the folder is writable"
                ) from exc
            try:
                conn = sqlite3.connect(
                    uri + "&immutable=1", uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False
                )
            except sqlite3.Error as again:
                raise CatalogAccessError(f"cannot open {self.path}: {again}") from again
        return contextlib.closing(conn)


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def read_catalog(state_dir: Path) -> SqliteStateStore | None:
    """The catalog for reading, or None when the state folder has none yet."""
    path = Path(state_dir) / CATALOG_FILE
    if not path.exists():
        return None
    return SqliteStateStore(state_dir, db=ReadOnlySqliteFile(path))


def read_events(state_dir: Path) -> SqliteEventBus | None:
    """The event bus for reading, or None when the state folder has none yet."""
    path = Path(state_dir) / EVENTS_FILE
    if not path.exists():
        return None
    return SqliteEventBus(state_dir, db=ReadOnlySqliteFile(path))
