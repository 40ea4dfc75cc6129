"""The catalog in a SQLite file: runs, recovery points, group locks, trigger ids and the outbox.

Every call opens its own connection (the engine calls from many threads and several `quiesce`
processes may share one state folder); the file is in WAL mode so readers never wait for a
writer, and writers wait up to BUSY_TIMEOUT for each other. Operations that read then write
(locks, triggers) do so in one BEGIN IMMEDIATE transaction, so they are atomic across threads
and processes alike. Records are stored as their JSON, with the columns queries need beside it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from quiesce.errors import QuiesceError
from quiesce.ports import LockHolder
from quiesce.record import utcnow
from quiesce.state_base import (
    POINT,
    RUN,
    CatalogStateStore,
    Item,
    Kind,
    Queued,
    parse_sortable,
    sortable,
)

#: Seconds a writer waits for another writer before giving up.
BUSY_TIMEOUT = 30.0

CATALOG_FILE = "catalog.sqlite3"

# The outbox holds one row per batch of events: its `event_id` column holds the batch's key
# (the name stays, so catalogs written when a row held one event open as they are).
#: Migration N (1-based) brings the schema from version N-1 to N. Only ever append.
CATALOG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id     TEXT PRIMARY KEY,
        policy     TEXT NOT NULL,
        grp        TEXT NOT NULL,
        status     TEXT NOT NULL,
        started_at TEXT NOT NULL,
        json       TEXT NOT NULL
    );
    CREATE INDEX runs_by_group ON runs (policy, grp, started_at);
    CREATE TABLE points (
        id         TEXT PRIMARY KEY,
        policy     TEXT NOT NULL,
        grp        TEXT NOT NULL,
        created_at TEXT NOT NULL,
        json       TEXT NOT NULL
    );
    CREATE INDEX points_by_group ON points (policy, grp, created_at);
    CREATE TABLE locks (
        key        TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE triggers (
        trigger_id TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        json     TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE cooldowns (
        key      TEXT PRIMARY KEY,
        fired_at TEXT NOT NULL
    );
    """,
)


# ------------------------------------------------------------------------------ SQLite plumbing

#: Timestamps are stored as text whose order is their time order.
timestamp = sortable
parse_timestamp = parse_sortable


class CatalogError(QuiesceError):
    """A catalog file that cannot be used as it is (empty, damaged, unreadable)."""


class CatalogAccessError(CatalogError, sqlite3.DatabaseError):
    """A catalog operation SQLite refused; the message names the file (still an sqlite3.Error
    for callers that handle those)."""


#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


class SqliteFile:
    """One SQLite file with a versioned schema; hands out short-lived connections.

    A new file is built under a temporary name and linked into place once its schema is
    complete, so the file at `path` is never a half-made catalog: an empty or damaged file there
    is an error that names it, never silently re-created (that would forget every snapshot the
    catalog knew of).
    """

    def __init__(self, path: Path, migrations: Sequence[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            self._create(migrations)
        self._check_file()
        try:
            with self.reading() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise self._damaged(f"integrity check failed: {row[0] if row else '?'}")
            self._migrate(migrations)
        except CatalogAccessError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.OperationalError):  # locked, I/O: not the file's shape
                raise
            raise self._damaged(cause or exc) from exc

    def _create(self, migrations: Sequence[str]) -> None:
        # Created private: it holds the catalog of backups, not for other users to read.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            staging = SqliteFile.__new__(SqliteFile)
            staging.path = tmp
            with staging.connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            staging._migrate(migrations)
            _publish(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _check_file(self) -> None:
        try:
            with open(self.path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise CatalogError(f"cannot read the catalog {self.path}: {exc}") from exc
        if not header:
            raise CatalogError(
                f"the catalog {self.path} is empty (0 bytes): it was truncated or damaged. "
                "It is not re-created, because a new catalog would forget every recovery point "
                "and snapshot the old one listed; restore the file from a backup, or move it "
                "away to start an empty catalog"
            )
        if header != SQLITE_HEADER:
            raise self._damaged("file is not a database")

    def _damaged(self, exc: BaseException | str) -> CatalogError:
        return CatalogError(
            f"the catalog {self.path} cannot be used: {exc}. It is left as it is; restore it "
            "from a backup, or move it away to start an empty catalog (which forgets every "
            "recovery point it listed)"
        )

    def connect(self) -> contextlib.closing[sqlite3.Connection]:
        """A new autocommit connection; use `transaction` for atomic work."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise CatalogAccessError(f"cannot open the catalog {self.path}: {exc}") from exc
        return contextlib.closing(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT on a fresh connection: writers are serialised from the start."""
        with self.connect() as conn, self._naming_the_file():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as conn, self._naming_the_file():
            yield conn

    @contextlib.contextmanager
    def _naming_the_file(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise CatalogAccessError(f"catalog {self.path}: {exc}") from exc

    def _migrate(self, migrations: Sequence[str]) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > len(migrations):
                raise QuiesceError(
                    f"{self.path} has schema version {current}, newer than this Quiesce knows "
                    f"({len(migrations)}): upgrade Quiesce to use it"
                )
            for version in range(current + 1, len(migrations) + 1):
                for statement in _statements(migrations[version - 1]):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        with self.reading() as conn:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def _publish(tmp: Path, path: Path) -> None:
    """Puts the finished file `tmp` at `path` unless a file is there already (another process
    made it first: that one is used)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return
    except OSError:  # no hard links on this filesystem: a rename, if the name is still free
        if not path.exists():
            os.rename(tmp, path)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT the surrounding transaction; split instead (no ';' in data).
    return [s.strip() for s in script.split(";") if s.strip()]


# ------------------------------------------------------------------------------ the store


class SqliteStateStore(CatalogStateStore):
    """The StateStore port over `<state_dir>/catalog.sqlite3`."""

    def __init__(self, state_dir: Path, db: SqliteFile | None = None) -> None:
        """`db`: an already opened catalog file (e.g. read-only, for `quiesce points`)."""
        super().__init__()
        if db is not None:
            self.db = db
            return
        path = Path(state_dir) / CATALOG_FILE
        snapshots = Path(state_dir) / "snapshots"
        if not path.exists() and any(snapshots.glob("*/*/*/manifest.json")):
            raise CatalogError(
                f"the catalog {path} is missing but {snapshots} holds snapshots: it is not "
                "re-created, because a new catalog would orphan them. Restore the file from a "
                "backup, or move the snapshots folder away to start an empty catalog"
            )
        self.db = SqliteFile(path, CATALOG_MIGRATIONS)

    # storage primitives

    def put_items(self, items: Sequence[Item]) -> None:
        """All in one transaction: `record_point` lists the point and closes the run at once."""
        with self.db.transaction() as conn:
            for item in items:
                conn.execute(_SQL[item.kind].put, _SQL[item.kind].row(item))

    def get_item(self, kind: Kind, key: str) -> str | None:
        with self.db.reading() as conn:
            row = conn.execute(_SQL[kind].get, (key,)).fetchone()
        return str(row[0]) if row else None

    def query_items(self, kind: Kind, policy: str, group: str | None) -> list[str]:
        sql = _SQL[kind]
        with self.db.reading() as conn:
            if group is None:
                rows = conn.execute(sql.by_policy, (policy,)).fetchall()
            else:
                rows = conn.execute(sql.by_group, (policy, group)).fetchall()
        return [str(r[0]) for r in rows]

    def delete_item(self, kind: Kind, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(_SQL[kind].delete, (key,))

    def put_queued(self, batches: Sequence[Queued]) -> None:
        # The order is the table's autoincrement `seq`, which follows `Queued.seq` here.
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox (event_id, json) VALUES (?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(b.key, b.data) for b in sorted(batches, key=lambda b: b.seq)],
            )

    def scan_queued(self, limit: int) -> list[str]:
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT json FROM outbox ORDER BY seq ASC LIMIT ?", (limit,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def delete_queued(self, keys: Sequence[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM outbox WHERE event_id = ?", [(i,) for i in keys])

    # locks and triggers: each one BEGIN IMMEDIATE transaction

    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT run_id, expires_at FROM locks WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                holder = LockHolder(run_id=row[0], expires_at=parse_timestamp(row[1]))
                if holder.run_id != run_id and holder.expires_at > utcnow():
                    return holder
            conn.execute(
                "INSERT INTO locks (key, run_id, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, "
                "expires_at = excluded.expires_at",
                (key, run_id, timestamp(expires_at)),
            )
        return None

    def release_lock(self, key: str, run_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM locks WHERE key = ? AND run_id = ?", (key, run_id))

    def lock_holder(self, key: str) -> LockHolder | None:
        """Who holds `key` now (expired locks are free: None)."""
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT run_id, expires_at FROM locks WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        holder = LockHolder(run_id=row[0], expires_at=parse_timestamp(row[1]))
        return holder if holder.expires_at > utcnow() else None

    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        """Claims `trigger_id` for `run_id`; returns the run that claimed it before, if another.

        Claiming again for the same run is not a duplicate (a retried call): it returns None.
        """
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT run_id FROM triggers WHERE trigger_id = ?", (trigger_id,)
            ).fetchone()
            if row is not None:
                earlier = str(row[0])
                return None if earlier == run_id else earlier
            conn.execute(
                "INSERT INTO triggers (trigger_id, run_id, created_at) VALUES (?, ?, ?)",
                (trigger_id, run_id, timestamp(utcnow())),
            )
        return None

    def trigger_owner(self, trigger_id: str) -> str | None:
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT run_id FROM triggers WHERE trigger_id = ?", (trigger_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT fired_at FROM cooldowns WHERE key = ?", (key,)).fetchone()
            if row is not None:
                last = parse_timestamp(str(row[0]))
                if (now - last).total_seconds() < cooldown_seconds:
                    return False
            conn.execute(
                "INSERT INTO cooldowns (key, fired_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET fired_at = excluded.fired_at",
                (key, timestamp(now)),
            )
        return True

    def fired_at(self, key: str) -> datetime | None:
        with self.db.reading() as conn:
            row = conn.execute("SELECT fired_at FROM cooldowns WHERE key = ?", (key,)).fetchone()
        return None if row is None else parse_timestamp(str(row[0]))


@dataclass(frozen=True)
class _Statements:
    """The SQL for one kind of item."""

    put: str
    row: Callable[[Item], tuple[str, ...]]
    get: str
    by_policy: str
    by_group: str
    delete: str


_SQL: dict[Kind, _Statements] = {
    RUN: _Statements(
        put="INSERT INTO runs (run_id, policy, grp, status, started_at, json) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
        "policy = excluded.policy, grp = excluded.grp, status = excluded.status, "
        "started_at = excluded.started_at, json = excluded.json",
        row=lambda i: (i.key, i.policy, i.group, i.status, timestamp(i.at), i.data),
        get="SELECT json FROM runs WHERE run_id = ?",
        by_policy="SELECT json FROM runs WHERE policy = ? ORDER BY started_at DESC, run_id DESC",
        by_group="SELECT json FROM runs WHERE policy = ? AND grp = ? "
        "ORDER BY started_at DESC, run_id DESC",
        delete="DELETE FROM runs WHERE run_id = ?",
    ),
    POINT: _Statements(
        put="INSERT INTO points (id, policy, grp, created_at, json) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, grp = excluded.grp, "
        "created_at = excluded.created_at, json = excluded.json",
        row=lambda i: (i.key, i.policy, i.group, timestamp(i.at), i.data),
        get="SELECT json FROM points WHERE id = ?",
        by_policy="SELECT json FROM points WHERE policy = ? ORDER BY created_at DESC, id DESC",
        by_group="SELECT json FROM points WHERE policy = ? AND grp = ? "
        "ORDER BY created_at DESC, id DESC",
        delete="DELETE FROM points WHERE id = ?",
    ),
}
