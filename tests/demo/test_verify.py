"""verify: a consistent pair restarts clean; extra journal lines, a torn last line, a corrupt
journal line and a corrupt database each need clean-up, and say why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quiesce.demo.app import Stores, journal_line
from quiesce.demo.verify import verify_pair


def make_pair(folder: Path, transactions: int) -> tuple[Path, Path]:
    """A database and a journal written by the application's own stores, closed cleanly."""
    folder.mkdir(parents=True, exist_ok=True)
    db, journal = folder / "orders.db", folder / "journal.log"
    stores = Stores(db, journal)
    for i in range(transactions):
        stores.commit(100 + i)
    stores.close()
    return db, journal


def append(journal: Path, data: bytes) -> None:
    with journal.open("ab") as f:
        f.write(data)


def test_a_consistent_pair_restarts_clean(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 10)

    verdict = verify_pair(db, journal)

    assert verdict.ok
    assert verdict.verdict == "restarts clean"
    assert (verdict.db_last_id, verdict.journal_last_id, verdict.differ) == (10, 10, 0)
    assert verdict.to_dict()["ok"] is True
    assert "reason" not in verdict.to_dict()


def test_extra_journal_lines_need_clean_up(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 10)
    for txid in (11, 12, 13):
        append(journal, journal_line(txid, 500))

    verdict = verify_pair(db, journal)

    assert not verdict.ok
    assert verdict.verdict == "needs clean-up: 3 transactions differ"
    assert (verdict.db_last_id, verdict.journal_last_id, verdict.differ) == (10, 13, 3)
    assert verdict.journal_only == 3
    assert verdict.to_dict()["reason"] == verdict.verdict


def test_a_database_ahead_of_its_journal_needs_clean_up(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 10)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]))

    verdict = verify_pair(db, journal)

    assert verdict.verdict == "needs clean-up: 1 transaction differs"
    assert verdict.missing_from_journal == 1


def test_a_torn_last_journal_line_is_reported(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 10)
    append(journal, journal_line(11, 500)[:5])

    verdict = verify_pair(db, journal)

    assert not verdict.ok
    assert verdict.torn_tail_bytes == 5
    assert "torn last journal line (5 bytes)" in verdict.verdict
    assert verdict.journal_last_id == 10  # the last *complete* line
    assert verdict.differ == 0


def test_a_corrupt_journal_line_is_reported(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 3)
    text = journal.read_text().replace("\t101\t", "\t999\t")  # the checksum no longer matches
    journal.write_text(text)

    verdict = verify_pair(db, journal)

    assert not verdict.ok
    assert verdict.bad_lines == 1
    assert "1 corrupt journal line" in verdict.verdict


def test_a_corrupt_database_fails_the_integrity_check(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 3000)
    data = bytearray(db.read_bytes())
    assert len(data) > 4 * 4096
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)  # pages 2 and 3: b-tree pages of the table
    db.write_bytes(bytes(data))

    verdict = verify_pair(db, journal)

    assert not verdict.ok
    assert verdict.integrity != "ok"
    assert "database integrity check failed" in verdict.verdict


def test_a_file_that_is_not_a_database_fails_the_integrity_check(tmp_path: Path) -> None:
    _, journal = make_pair(tmp_path, 3)
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database" * 500)

    verdict = verify_pair(bogus, journal)

    assert not verdict.ok
    assert verdict.db_last_id is None
    assert "database integrity check failed" in verdict.verdict


# ------------------------------------------------------------------------ as the verify hook


def restored_layout(root: Path, transactions: int) -> Path:
    """DIR/db/db/orders.db and DIR/journal/journal/journal.log, as restore_point lays them out;
    returns DIR/db (what the verify hook gets last)."""
    db, journal = make_pair(root / "work", transactions)
    (root / "db" / "db").mkdir(parents=True)
    (root / "journal" / "journal").mkdir(parents=True)
    db.rename(root / "db" / "db" / "orders.db")
    journal.rename(root / "journal" / "journal" / "journal.log")
    return root / "db"


def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quiesce.demo.verify", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_hook_finds_the_journal_in_the_sibling_member_folder(tmp_path: Path) -> None:
    member_dir = restored_layout(tmp_path, 5)

    proc = verify_cli("--journal-member", "journal", str(member_dir))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    verdict = json.loads(lines[0])
    assert verdict["ok"] is True
    assert (verdict["db_last_id"], verdict["journal_last_id"], verdict["differ"]) == (5, 5, 0)


def test_the_hook_exits_1_with_the_reason_when_clean_up_is_needed(tmp_path: Path) -> None:
    member_dir = restored_layout(tmp_path, 5)
    append(tmp_path / "journal" / "journal" / "journal.log", journal_line(6, 1))

    proc = verify_cli(str(member_dir))

    assert proc.returncode == 1
    verdict = json.loads(proc.stdout)
    assert verdict["ok"] is False
    assert verdict["reason"] == "needs clean-up: 1 transaction differs"


@pytest.mark.parametrize("missing", ["db", "journal"])
def test_the_hook_exits_2_when_a_file_is_missing(tmp_path: Path, missing: str) -> None:
    member_dir = restored_layout(tmp_path, 2)
    name = "orders.db" if missing == "db" else "journal.log"
    (tmp_path / missing / missing / name).unlink()

    proc = verify_cli(str(member_dir))

    assert proc.returncode == 2
    assert json.loads(proc.stdout)["ok"] is False


def test_the_files_can_be_named_directly(tmp_path: Path) -> None:
    db, journal = make_pair(tmp_path, 4)

    proc = verify_cli("--db", str(db), "--journal", str(journal))

    assert proc.returncode == 0
    assert json.loads(proc.stdout)["db_last_id"] == 4
