"""The sample application: pause holds its writes, resume lets them go, its dead-man's switch
resumes on its own, and SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from quiesce.demo import control
from quiesce.demo.app import Stores, journal_line, last_journal_id, parse_journal_line
from quiesce.demo.verify import verify_pair

from .conftest import RunningApp

StartApp = Callable[..., RunningApp]


def db_last_id(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()[0])
    finally:
        conn.close()


def test_the_app_commits_transactions_continuously(start_app: StartApp) -> None:
    app = start_app()
    first = app.wait_for_commits(0)
    assert app.wait_for_commits(first + 50) > first + 50


def test_pause_answers_only_once_writes_are_held_and_both_stores_agree(
    start_app: StartApp,
) -> None:
    app = start_app()
    app.wait_for_commits(20)

    answer = app.ask("pause")

    paused_at = control.paused_at(answer)
    assert paused_at is not None, answer
    verdict = verify_pair(app.db, app.journal)
    assert verdict.ok, verdict
    assert verdict.db_last_id == verdict.journal_last_id == paused_at


def test_the_last_id_does_not_move_while_paused(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(20)
    paused_at = control.paused_at(app.ask("pause"))

    time.sleep(0.4)

    assert app.ask("status") == f"ok paused {paused_at}"
    assert db_last_id(app.db) == paused_at
    assert last_journal_id(app.journal) == paused_at


def test_the_database_file_is_complete_while_paused(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(20)
    app.ask("pause")

    wal = Path(f"{app.db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into orders.db


def test_a_second_pause_while_paused_answers_the_same_id(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(5)
    first = app.ask("pause")

    assert app.ask("pause") == first


def test_resume_lets_the_writes_go(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(20)
    paused_at = control.paused_at(app.ask("pause"))
    assert paused_at is not None

    assert app.ask("resume") == "ok resumed"

    assert app.wait_for_commits(paused_at + 20) > paused_at
    assert app.ask("status").startswith("ok running ")


def test_resume_without_a_pause_is_harmless(start_app: StartApp) -> None:
    app = start_app()

    assert app.ask("resume") == "ok resumed"
    assert app.ask("status").startswith("ok running ")


def test_an_unknown_command_is_an_error(start_app: StartApp) -> None:
    app = start_app()

    assert app.ask("freeze").startswith("error unknown command")


def test_the_dead_mans_switch_resumes_after_its_timeout(start_app: StartApp) -> None:
    app = start_app("--pause-timeout", "0.5")
    app.wait_for_commits(5)
    paused_at = control.paused_at(app.ask("pause"))
    assert paused_at is not None
    assert app.ask("status") == f"ok paused {paused_at}"

    assert app.wait_for_commits(paused_at, timeout=3) > paused_at

    assert app.ask("status").startswith("ok running ")
    assert "dead-man's switch" in app.output()


def test_sigterm_stops_it_cleanly_with_both_stores_agreeing(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(20)

    app.proc.send_signal(signal.SIGTERM)

    assert app.proc.wait(5) == 0
    assert not app.socket.exists()
    assert "stopped last_id=" in app.output()
    verdict = verify_pair(app.db, app.journal)
    assert verdict.ok, verdict


def test_sigterm_while_paused_stops_it_too(start_app: StartApp) -> None:
    app = start_app()
    app.wait_for_commits(5)
    app.ask("pause")

    app.proc.send_signal(signal.SIGTERM)

    assert app.proc.wait(5) == 0


def test_it_stops_when_the_process_that_started_it_is_gone(tmp_path: Path) -> None:
    # --parent-pid names a process that is not its parent: as if the demo had died.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "quiesce.demo.app",
            "--db",
            str(tmp_path / "orders.db"),
            "--journal",
            str(tmp_path / "journal.log"),
            "--control",
            str(tmp_path / "s.sock"),
            "--parent-pid",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert proc.returncode == 0
    assert "is gone: stopping" in proc.stderr


def test_a_restart_continues_after_the_last_transaction(tmp_path: Path) -> None:
    stores = Stores(tmp_path / "orders.db", tmp_path / "journal.log")
    for _ in range(5):
        stores.commit(100)
    stores.close()
    with (tmp_path / "journal.log").open("ab") as f:
        f.write(b"6\t1")  # a torn line left by a crash

    stores = Stores(tmp_path / "orders.db", tmp_path / "journal.log")
    assert stores.commit(200) == 6
    stores.close()

    assert verify_pair(tmp_path / "orders.db", tmp_path / "journal.log").ok


def test_journal_lines_carry_a_checksum() -> None:
    line = journal_line(7, 1234).decode()

    assert line.endswith("\n")
    assert parse_journal_line(line.rstrip("\n")) == (7, 1234)
    assert parse_journal_line(line.rstrip("\n").replace("1234", "1235")) is None


def test_the_control_client_exits_2_when_the_app_is_unreachable(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "quiesce.demo.control", "status", str(tmp_path / "none.sock")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert proc.returncode == 2
    assert "cannot reach the application" in proc.stderr


def test_the_control_client_prints_the_answer(start_app: StartApp) -> None:
    app = start_app()

    proc = subprocess.run(
        [sys.executable, "-m", "quiesce.demo.control", "pause", str(app.socket)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert proc.returncode == 0
    assert proc.stdout.startswith("ok paused ")
