"""The catalog is the truth: a listed point is restorable, retention unlists before it deletes,
restore refuses an incomplete point, and an empty or damaged catalog is an error naming the file.
Every test runs `quiesce` as real processes on the local provider."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.support import (
    catalog,
    cli,
    copy_workspace,
    dead_pid,
    files_under,
    points_of,
    run_json,
    snapshots_dir,
    start,
)

pytestmark = pytest.mark.integration


def test_a_point_listed_by_a_run_killed_before_its_record_named_it_stays_restorable(
    tmp_path: Path,
) -> None:
    """The state a SIGKILL between listing the point and saving the record left behind: the
    point listed, the record still running without it. `recover` must keep the snapshots."""
    ws = copy_workspace(tmp_path, files=20)
    first = run_json(ws)
    point = first["recovery_point"]
    assert point is not None
    with sqlite3.connect(catalog(ws)) as db:
        (raw,) = db.execute("SELECT json FROM runs WHERE run_id = ?", (first["run_id"],)).fetchone()
        record = json.loads(raw)
        record.update(
            status="running",
            phase="awaiting_durability",
            recovery_point=None,
            finished_at=None,
            orchestrator={"host": record["orchestrator"]["host"], "pid": dead_pid()},
        )
        db.execute(
            "UPDATE runs SET status = 'running', json = ? WHERE run_id = ?",
            (json.dumps(record), first["run_id"]),
        )

    recovered = cli("recover", str(ws.policy), "--json")

    assert recovered.returncode == 0, recovered.stderr
    (closed,) = json.loads(recovered.stdout)
    assert closed["recovery_point"] == point, "the listed point is the run's point"
    assert [p["id"] for p in points_of(ws)] == [point]
    restored = cli("restore", str(ws.policy), point, "--to", str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    assert files_under(tmp_path / "restored" / "m" / "m") == files_under(tmp_path / "data" / "m")


def test_restore_refuses_a_listed_point_whose_snapshot_lost_files(tmp_path: Path) -> None:
    ws = copy_workspace(tmp_path, files=40)
    point = run_json(ws)["recovery_point"]
    (data,) = snapshots_dir(ws).glob("*/*/*/data")
    for victim in sorted(p for p in data.rglob("*") if p.is_file())[:3]:
        victim.unlink()

    restored = cli("restore", str(ws.policy), point, "--to", str(tmp_path / "restored"))

    assert restored.returncode == 1
    assert "incomplete" in restored.stderr
    assert str(data) in " ".join(restored.stderr.split())
    assert not (tmp_path / "restored").exists() or not files_under(tmp_path / "restored")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_retention_that_cannot_delete_a_snapshot_has_already_unlisted_its_point(
    tmp_path: Path,
) -> None:
    """A mount inside the old point's snapshot makes its deletion fail half-way (EBUSY), as a
    stop during retention would: the old point must be unlisted, never listed half-deleted."""
    ws = copy_workspace(tmp_path, files=40, retention={"keep_last": 1})
    old = run_json(ws)["recovery_point"]
    (data,) = snapshots_dir(ws).glob(f"{old}/*/*/data")
    blocker = data / "zz-mount"
    blocker.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(blocker)], check=True)
    try:
        second = run_json(ws)
    finally:
        subprocess.run(["umount", str(blocker)], check=True)

    assert [p["id"] for p in points_of(ws)] == [second["recovery_point"]]
    assert any(old in w and "could not be deleted" in w for w in second["warnings"])
    restored = cli("restore", str(ws.policy), old, "--to", str(tmp_path / "restored"))
    assert restored.returncode == 1

    recovered = cli("recover", str(ws.policy))  # the leftovers are orphans now

    assert recovered.returncode == 0, recovered.stderr
    assert not (snapshots_dir(ws) / old).exists()


def test_an_empty_catalog_is_an_error_naming_the_file_and_is_not_recreated(
    tmp_path: Path,
) -> None:
    ws = copy_workspace(tmp_path, files=5)
    run_json(ws)
    kept = files_under(snapshots_dir(ws))
    catalog(ws).write_bytes(b"")

    for args in (["run", str(ws.policy), "-g", "g"], ["points", str(ws.policy)]):
        done = cli(*args)
        assert done.returncode == 1, done.stdout
        assert str(catalog(ws)) in " ".join(done.stderr.split())
        assert "empty" in done.stderr
    assert catalog(ws).stat().st_size == 0
    assert files_under(snapshots_dir(ws)) == kept


def test_a_damaged_catalog_is_an_error_naming_the_file_and_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    ws = copy_workspace(tmp_path, files=5)
    for _ in range(3):
        run_json(ws)
    path = catalog(ws)
    raw = bytearray(path.read_bytes())
    page = 4096
    assert len(raw) > 3 * page
    raw[page : 3 * page] = os.urandom(2 * page)  # the pages after the header: garbage
    path.write_bytes(bytes(raw))

    done = cli("run", str(ws.policy), "-g", "g")

    assert done.returncode == 1
    assert str(path) in " ".join(done.stderr.split())
    assert "unexpected" not in done.stderr
    assert path.read_bytes() == bytes(raw)


def test_a_run_killed_while_retention_deletes_never_leaves_a_half_deleted_point_listed(
    tmp_path: Path,
) -> None:
    """SIGKILL as soon as the old point's files start to disappear: the point must already be
    unlisted (or, if still listed, restore complete); `recover` removes what is left."""
    ws = copy_workspace(tmp_path, files=800, retention={"keep_last": 1})
    old = run_json(ws)["recovery_point"]
    volume = tmp_path / "data" / "m"
    original = files_under(volume)
    for name in original[10:]:
        (volume / name).unlink()  # the next copy is quick; the old point stays big
    (data,) = snapshots_dir(ws).glob(f"{old}/*/*/data")
    folders = len(list(data.iterdir()))

    proc = start("run", str(ws.policy), "-g", "g", "--json")
    try:
        while len(list(data.iterdir())) == folders and proc.poll() is None:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()

    target = tmp_path / "restored"
    if old in [p["id"] for p in points_of(ws)]:
        restored = cli("restore", str(ws.policy), old, "--to", str(target))
        assert restored.returncode == 0, restored.stderr
        assert files_under(target / "m" / "m") == original, "a listed point is complete"
    else:
        assert cli("restore", str(ws.policy), old, "--to", str(target)).returncode == 1
    recovered = cli("recover", str(ws.policy), "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert old not in [p["id"] for p in points_of(ws)]
    assert not (snapshots_dir(ws) / old).exists()
