"""The report: a side-by-side table, the workspace, and one honest sentence that says what
actually happened (also when the crash-consistent copy happened to agree)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from quiesce.demo import DemoReport, DemoRow, render_report
from quiesce.demo.scenario import summary_sentence


def row(**changes: Any) -> DemoRow:
    base: dict[str, Any] = {
        "label": "application-consistent",
        "group": "demo-app",
        "requested": "application",
        "consistency": "application",
        "status": "succeeded",
        "run_id": "r1",
        "recovery_point": "rp-r1",
        "freeze_window_ms": 300.0,
        "skew_ms": 60.0,
        "method": "copy",
        "copy_ms": {"db": 5.0, "journal": 80.0},
        "paused_at": 1500,
        "db_transactions": 1500,
        "journal_transactions": 1500,
        "db_last_id": 1500,
        "journal_last_id": 1500,
        "differ": 0,
        "verified": True,
        "verdict": "restarts clean",
        "restored_to": "/ws/restore/app",
    }
    return DemoRow(**{**base, **changes})


def crash_row(**changes: Any) -> DemoRow:
    return row(
        **{
            "label": "crash-consistent",
            "group": "demo-crash",
            "requested": "crash",
            "consistency": "crash",
            "freeze_window_ms": None,
            "paused_at": None,
            "restored_to": "/ws/restore/crash",
            **changes,
        }
    )


DIFFERING = {
    "db_transactions": 500,
    "journal_transactions": 560,
    "db_last_id": 500,
    "journal_last_id": 560,
    "differ": 60,
    "verified": False,
    "verdict": "needs clean-up: 60 transactions differ",
}


def report(crash: DemoRow, app: DemoRow, reflink: bool = False) -> DemoReport:
    return DemoReport(
        workspace=Path("/ws"),
        policy=Path("/ws/policy.yaml"),
        rows=[crash, app],
        reflink=reflink,
        summary=summary_sentence(crash, app, reflink),
        rate=1000,
        ballast_bytes=64 * 1024 * 1024,
        transactions=2000,
        seconds=4.2,
        size_bytes=300 * 1024 * 1024,
    )


def test_a_disagreeing_crash_copy_is_explained_by_the_copy_time() -> None:
    sentence = summary_sentence(crash_row(**DIFFERING), row(), reflink=False)

    assert "Volume B took 80 ms to copy" in sentence
    assert "the journal is 60 transactions ahead of the database" in sentence
    assert "paused at transaction 1,500" in sentence


def test_an_agreeing_crash_copy_on_reflink_says_the_copies_were_instant() -> None:
    sentence = summary_sentence(crash_row(method="reflink"), row(method="reflink"), reflink=True)

    assert sentence.startswith(
        "Copies were instant (reflink), so the crash-consistent copy happened to agree"
    )


def test_an_agreeing_crash_copy_on_a_plain_copy_says_it_was_luck() -> None:
    sentence = summary_sentence(crash_row(), row(), reflink=False)

    assert sentence.startswith("The crash-consistent copy happened to agree this time")


def test_an_application_copy_that_does_not_verify_is_said_plainly() -> None:
    failed = row(verified=False, verdict="needs clean-up: 2 transactions differ")

    sentence = summary_sentence(crash_row(**DIFFERING), failed, reflink=False)

    assert "did NOT restart clean" in sentence
    assert "needs clean-up: 2 transactions differ" in sentence


def test_the_table_puts_both_backups_side_by_side() -> None:
    console = Console(record=True, width=120)

    render_report(report(crash_row(**DIFFERING), row()), console)

    text = console.export_text()
    header = next(line for line in text.splitlines() if "crash-consistent" in line)
    assert "application-consistent" in header
    for line in (
        "freeze window       — (nothing held)",
        "paused at tx 1,500",
        "needs clean-up: 60 transactions differ",
        "restarts clean",
        "restore/crash/",
        "restore/app/",
        "workspace: /ws",
        "300 MiB",
    ):
        assert line in text, line
