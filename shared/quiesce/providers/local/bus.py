"""The local event bus: CloudEvents appended to `<state_dir>/events.sqlite3`.

Publishing is idempotent by event id (the outbox may deliver an event twice after a crash); each
stored event gets an increasing sequence number, so `quiesce events` can read what came after the
last one it showed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher
from quiesce.providers.local.state import SqliteFile, timestamp

log = logging.getLogger(__name__)

EVENTS_FILE = "events.sqlite3"

EVENTS_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        type     TEXT NOT NULL,
        time     TEXT NOT NULL,
        json     TEXT NOT NULL
    );
    CREATE INDEX events_by_type ON events (type, seq);
    """,
)


class SqliteEventBus(EventPublisher):
    """The EventPublisher port over a SQLite file, plus reading for `quiesce events`."""

    def __init__(self, state_dir: Path, db: SqliteFile | None = None) -> None:
        """`db`: an already opened events file (e.g. read-only, for `quiesce events`)."""
        self.db = db or SqliteFile(Path(state_dir) / EVENTS_FILE, EVENTS_MIGRATIONS)

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        """Stores the events; returns the ids not stored (all of them if the file failed)."""
        if not events:
            return []
        try:
            with self.db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO events (event_id, type, time, json) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    [(e.id, e.type, timestamp(e.time), e.to_json()) for e in events],
                )
        except sqlite3.Error as exc:
            log.warning("could not store %d event(s) in %s: %s", len(events), self.db.path, exc)
            return [e.id for e in events]
        return []

    def read_entries(
        self, after_seq: int = 0, types: set[str] | None = None, limit: int | None = None
    ) -> list[tuple[int, CloudEvent]]:
        """(sequence number, event) pairs after `after_seq`, oldest first, of `types` if given."""
        query = "SELECT seq, json FROM events WHERE seq > ?"
        params: list[object] = [after_seq]
        if types is not None:
            if not types:
                return []
            query += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(sorted(types))
        query += " ORDER BY seq ASC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self.db.reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [(int(seq), CloudEvent.model_validate_json(text)) for seq, text in rows]

    def read(self, after_seq: int = 0, types: set[str] | None = None) -> list[CloudEvent]:
        """The events stored after sequence number `after_seq`, oldest first."""
        return [event for _, event in self.read_entries(after_seq, types)]

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when there is none)."""
        with self.db.reading() as conn:
            row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
