"""Checks a restored copy of the sample application: would it restart without clean-up?

    python -m quiesce.demo.verify [--db FILE] [--journal FILE]
                                  [--journal-member NAME] [MEMBER_DIR]

As the `db` member's verify hook it gets the restored member folder last (``DIR/db``). The
database is found as ``orders.db`` in that folder or one of its volume folders
(``DIR/db/<volume>/orders.db``), and the journal in the *sibling* member's folder
(``DIR/journal/<volume>/journal.log``): the journal is restored first, so this one hook checks
the pair. ``--db`` and ``--journal`` name the two files directly instead.

The rule — a copy restarts clean when all of these hold:

- ``PRAGMA integrity_check`` answers ``ok``;
- the journal does not end in a torn (partial) line, and each line's checksum matches;
- the database and the journal hold the same transactions: the last id in the database equals
  the last complete journal line's id, every database id is in the journal (and every journal
  id in the database), with the same amount.

It prints one line of JSON — ``{"ok": true, "verdict": "restarts clean", "db_last_id": N,
"journal_last_id": M, "differ": D, ...}`` — and exits 0 when the copy restarts clean, 1 when it
needs clean-up (``"reason": "needs clean-up: D transactions differ"``), 2 when the files cannot
be found. ``differ`` counts the transactions in one store but not the other; the application's
ids have no gaps, so it is ``|N - M|``. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quiesce.demo.app import parse_journal_line

CLEAN = "restarts clean"
NEEDS_CLEAN_UP = "needs clean-up"
DB_NAME = "orders.db"
JOURNAL_NAME = "journal.log"
JOURNAL_MEMBER = "journal"


@dataclass
class Verdict:
    """What verify found; `verdict` is "restarts clean" or "needs clean-up: <reasons>"."""

    ok: bool
    verdict: str
    db_last_id: int | None
    journal_last_id: int
    differ: int
    db_transactions: int | None
    journal_transactions: int
    missing_from_journal: int = 0
    journal_only: int = 0
    amount_mismatches: int = 0
    integrity: str = "ok"
    torn_tail_bytes: int = 0
    bad_lines: int = 0
    problems: list[str] = field(default_factory=list)
    db: str = ""
    journal: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.ok:
            data["reason"] = self.verdict
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(", ", ": "))


class NotFound(Exception):
    """The database or the journal is not where the restored layout puts it."""


def _transactions(n: int) -> str:
    return f"{n} transaction differs" if n == 1 else f"{n} transactions differ"


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    # Read-write, so that SQLite can replay a WAL the copy carries (as a restart would).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _read_db(path: Path) -> tuple[str, dict[int, int] | None]:
    """(integrity_check's answer, {id: amount} or None when the rows cannot be read)."""
    try:
        with _connect(path) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            answer = "; ".join(str(r[0]) for r in rows[:5]) or "no answer"
            integrity = "ok" if answer == "ok" else answer
            try:
                amounts = dict(conn.execute("SELECT id, amount FROM orders ORDER BY id"))
            except sqlite3.Error as exc:
                return (integrity if integrity != "ok" else f"unreadable: {exc}"), None
            return integrity, {int(k): int(v) for k, v in amounts.items()}
    except sqlite3.Error as exc:
        return str(exc) or type(exc).__name__, None


def _read_journal(path: Path) -> tuple[list[tuple[int, int]], int, int]:
    """(valid lines as (id, amount), bytes of a torn last line, malformed complete lines)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    torn = len(data) - end
    entries: list[tuple[int, int]] = []
    bad = 0
    for raw in data[:end].decode("utf-8", errors="replace").splitlines():
        parsed = parse_journal_line(raw)
        if parsed is None:
            bad += 1
        else:
            entries.append(parsed)
    return entries, torn, bad


def verify_pair(db: Path, journal: Path) -> Verdict:
    """Applies the rule to a database and a journal (copies; the database may be changed by
    SQLite replaying its WAL, as a restart would)."""
    db, journal = Path(db), Path(journal)
    if not db.is_file():
        raise NotFound(f"no database at {db}")
    if not journal.is_file():
        raise NotFound(f"no journal at {journal}")
    integrity, amounts = _read_db(db)
    entries, torn, bad = _read_journal(journal)
    journal_amounts = dict(entries)
    journal_last = entries[-1][0] if entries else 0

    problems: list[str] = []
    differ = 0
    missing = only = mismatched = 0
    db_last: int | None = None
    if amounts is not None:
        db_last = max(amounts, default=0)
        missing = len(amounts.keys() - journal_amounts.keys())
        only = len(journal_amounts.keys() - amounts.keys())
        differ = missing + only
        mismatched = sum(
            1 for k in amounts.keys() & journal_amounts.keys() if amounts[k] != journal_amounts[k]
        )
        if db_last != journal_last and differ == 0:
            differ = abs(db_last - journal_last)  # duplicate journal lines; still a mismatch
        if differ:
            problems.append(_transactions(differ))
    if integrity != "ok":
        problems.append(f"database integrity check failed ({integrity})")
    if torn:
        problems.append(f"torn last journal line ({torn} bytes)")
    if bad:
        problems.append(f"{bad} corrupt journal line{'s' if bad != 1 else ''}")
    if mismatched:
        problems.append(f"{mismatched} amount{'s' if mismatched != 1 else ''} disagree")
    ok = not problems
    return Verdict(
        ok=ok,
        verdict=CLEAN if ok else f"{NEEDS_CLEAN_UP}: " + "; ".join(problems),
        db_last_id=db_last,
        journal_last_id=journal_last,
        differ=differ,
        db_transactions=len(amounts) if amounts is not None else None,
        journal_transactions=len(entries),
        missing_from_journal=missing,
        journal_only=only,
        amount_mismatches=mismatched,
        integrity=integrity,
        torn_tail_bytes=torn,
        bad_lines=bad,
        problems=problems,
        db=str(db),
        journal=str(journal),
    )


def _find_one(folder: Path, name: str, what: str) -> Path:
    """`folder/name`, or the only `folder/<volume>/name`."""
    if (folder / name).is_file():
        return folder / name
    found = sorted(p for p in folder.glob(f"*/{name}") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no {what} {name} in {folder} or its volume folders")
    raise NotFound(f"more than one {what} {name} under {folder}: {', '.join(map(str, found))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quiesce.demo.verify",
        description=(
            "Checks a restored copy of the demo's sample application and prints a one-line "
            "JSON verdict. Exit 0: restarts clean; 1: needs clean-up; 2: files not found."
        ),
    )
    parser.add_argument(
        "member_dir",
        nargs="?",
        type=Path,
        help="the restored db member folder (the verify hook's last argument)",
    )
    parser.add_argument("--db", type=Path, help="the database file (instead of MEMBER_DIR)")
    parser.add_argument("--journal", type=Path, help="the journal file (instead of the sibling)")
    parser.add_argument(
        "--journal-member",
        default=JOURNAL_MEMBER,
        help="the journal member's folder next to MEMBER_DIR (%(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        if args.member_dir is None and (args.db is None or args.journal is None):
            parser.error("give MEMBER_DIR, or both --db and --journal")
        db = args.db or _find_one(args.member_dir, DB_NAME, "database")
        journal = args.journal or _find_one(
            args.member_dir.parent / args.journal_member, JOURNAL_NAME, "journal"
        )
        verdict = verify_pair(db, journal)
    except NotFound as exc:
        print(json.dumps({"ok": False, "verdict": f"cannot verify: {exc}", "reason": str(exc)}))
        return 2
    print(verdict.to_json())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
