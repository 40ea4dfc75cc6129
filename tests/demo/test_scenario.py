"""The whole demo, end to end: two backups of a live application, both restored and verified;
the application-consistent copy restarts clean, and no process is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from quiesce.demo import DemoReport, DemoRow, render_report, run_demo

from .conftest import processes_mentioning

pytestmark = pytest.mark.integration

CLEAN = "restarts clean"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("demo")
    yield root
    # snapshots and restored copies carry volume B's ballast: do not keep them around
    for heavy in ("state", "restore", "data"):
        shutil.rmtree(root / heavy, ignore_errors=True)
    (root / "data.img").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def report(workspace: Path) -> DemoReport:
    return run_demo(workspace, duration_hint=0.8)


def assert_counts_match(row: DemoRow) -> None:
    assert row.db_last_id is not None
    assert row.journal_last_id is not None
    assert row.db_transactions == row.db_last_id  # ids start at 1 and have no gaps
    assert row.journal_transactions == row.journal_last_id


def test_the_application_consistent_copy_restarts_clean(report: DemoReport) -> None:
    app = report.application

    assert app.label == "application-consistent"
    assert app.consistency == "application"
    assert app.status == "succeeded"
    assert app.verified
    assert app.verdict == CLEAN
    assert_counts_match(app)
    assert app.db_last_id == app.journal_last_id == app.paused_at
    assert app.differ == 0
    assert app.freeze_window_ms is not None


def test_the_crash_consistent_copy_is_whatever_the_copy_caught(report: DemoReport) -> None:
    crash = report.crash

    assert crash.label == "crash-consistent"
    # copied file by file, unheld: no point in time; btrfs: each volume one point in time
    assert crash.consistency == ("crash" if crash.method == "btrfs" else "none")
    assert crash.paused_at is None
    assert_counts_match(crash)
    assert crash.db_last_id is not None
    assert crash.journal_last_id is not None
    if crash.verdict == CLEAN:
        assert crash.verified
        assert crash.differ == 0
        assert crash.db_last_id == crash.journal_last_id
    else:
        assert not crash.verified
        assert crash.verdict.startswith("needs clean-up: ")
        assert crash.differ is not None
        if crash.differ:
            differ = crash.differ
            word = "transaction differs" if differ == 1 else "transactions differ"
            assert crash.verdict.startswith(f"needs clean-up: {differ} {word}")
            assert differ == abs(crash.db_last_id - crash.journal_last_id)


def test_the_report_has_both_rows_and_the_workspace(report: DemoReport, workspace: Path) -> None:
    crash_level = "crash" if report.btrfs else "none"
    assert [row.consistency for row in report.rows] == [crash_level, "application"]
    assert [row.group for row in report.rows] == ["demo-crash", "demo-app"]
    assert report.workspace == workspace.resolve()
    assert report.policy.is_file()
    assert report.reflink == (report.crash.method == "reflink")
    assert report.btrfs == (report.crash.method == "btrfs")
    assert report.ok
    assert report.summary
    assert report.seconds < 60
    assert DemoReport.model_validate_json(report.model_dump_json()) == report


def test_the_volumes_are_btrfs_subvolumes_when_this_machine_can_mount_btrfs(
    report: DemoReport, workspace: Path
) -> None:
    from quiesce.demo.btrfs_volumes import unavailable

    why = unavailable()
    if why is None:
        assert report.btrfs, report.why_not_btrfs
        assert [r.method for r in report.rows] == ["btrfs", "btrfs"]
        assert (workspace / "data.img").is_file()  # kept; its loop mount is gone
        attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False)
        assert str(workspace / "data.img") not in attached.stdout
    else:
        assert not report.btrfs
        assert report.why_not_btrfs == why
    assert not (workspace / "data").is_mount()


def test_both_copies_are_restored_into_the_workspace(report: DemoReport, workspace: Path) -> None:
    for name in ("crash", "app"):
        restored = workspace.resolve() / "restore" / name
        assert (restored / "db" / "db" / "orders.db").is_file()
        assert (restored / "journal" / "journal" / "journal.log").is_file()


def test_the_application_was_stopped(report: DemoReport, workspace: Path) -> None:
    assert processes_mentioning(str(workspace / "app.sock")) == []
    assert "stopped last_id=" in (workspace / "app.log").read_text()
    assert report.transactions is not None
    assert report.application.db_last_id is not None
    assert report.transactions >= report.application.db_last_id


def test_the_table_shows_both_backups_side_by_side(report: DemoReport, workspace: Path) -> None:
    console = Console(record=True, width=140)

    render_report(report, console)

    text = console.export_text()
    for expected in (
        "crash-consistent",
        "application-consistent",
        "demo-crash",
        "demo-app",
        "freeze window",
        "skew",
        CLEAN,
        str(workspace.resolve()),
        report.summary[:40],
        "snapshot method: btrfs" if report.btrfs else "snapshot method: ",
    ):
        assert expected in text


def test_a_non_empty_workdir_is_refused(tmp_path: Path) -> None:
    from quiesce.demo import DemoError

    (tmp_path / "something").write_text("mine")

    with pytest.raises(DemoError, match="not an empty folder"):
        run_demo(tmp_path)


def _ctrl_c_delivered() -> None:
    """In the child: Ctrl-C is delivered even if the tests were started with SIGINT ignored
    (as background jobs of a non-interactive shell are)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "ws"
    demo = subprocess.Popen(
        [sys.executable, "-m", "quiesce.demo", "--workdir", str(workdir), "--warm-up", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ctrl_c_delivered,
    )
    try:
        deadline = time.monotonic() + 20
        while not processes_mentioning(str(workdir / "app.sock")):
            assert time.monotonic() < deadline, "the application never started"
            assert demo.poll() is None, demo.communicate()[0]
            time.sleep(0.05)
        time.sleep(0.3)

        os.kill(demo.pid, signal.SIGINT)
        output, _ = demo.communicate(timeout=20)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

    assert demo.returncode == 130, output
    assert "interrupted" in output
    assert processes_mentioning(str(workdir / "app.sock")) == []
    shutil.rmtree(workdir / "data", ignore_errors=True)
