"""Runs stopped by signals, and what the next `recover` finds: no orphan is left, an abandoned
run is closed exactly once, a duplicate trigger reports the run still on, and the exit code is
130 however many SIGTERMs came. Real `quiesce` processes on the local provider."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.integration.support import (
    MANY_FILES,
    cli,
    copy_workspace,
    copying,
    events_of,
    kill_when_copying,
    points_of,
    snapshots_dir,
    start,
    wait_for,
)
from tests.workspace import Workspace

pytestmark = pytest.mark.integration


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_snapshot_phase_leaves_no_copy_behind(
    tmp_path: Path, sig: signal.Signals
) -> None:
    ws = copy_workspace(tmp_path, files=MANY_FILES)

    proc = kill_when_copying(ws, sig)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stderr
    manifests = list(snapshots_dir(ws).rglob("manifest.json"))
    assert manifests == [], "the copy went on after its snapshot was discarded"
    assert leftovers(snapshots_dir(ws)) == []
    assert points_of(ws) == []


def test_more_sigterms_while_it_stops_still_exit_130(tmp_path: Path) -> None:
    """SIGTERM after SIGTERM (as an impatient supervisor sends them) until the process is gone:
    during the thaw, the clean-up and the interpreter's own exit."""
    ws = copy_workspace(tmp_path, files=MANY_FILES)

    proc = kill_when_copying(ws, signal.SIGTERM)
    while proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stderr
    assert leftovers(snapshots_dir(ws)) == []


def abandon_a_run(ws_root: Path) -> tuple[Workspace, str]:
    """SIGKILLs `quiesce run` during its copy: a running record whose orchestrator is gone."""
    ws = copy_workspace(ws_root, files=MANY_FILES)
    proc = kill_when_copying(ws, signal.SIGKILL)
    proc.communicate(timeout=30)
    (run_dir,) = snapshots_dir(ws).iterdir()
    return ws, run_dir.name.removeprefix("rp-")


def test_a_folder_left_with_only_a_temporary_manifest_is_removed_by_recover(
    tmp_path: Path,
) -> None:
    """What a SIGKILL while the first manifest is written leaves: the folder holds only
    `.manifest.json.tmp` (here the killed run's folder is cut back to that)."""
    ws, run_id = abandon_a_run(tmp_path)
    (folder,) = snapshots_dir(ws).glob("*/*/*")
    for child in list(folder.iterdir()):
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    (folder / ".manifest.json.tmp").write_text('{"id": "rp-')

    recovered = cli("recover", str(ws.policy), "--json")

    assert recovered.returncode == 0, recovered.stderr
    assert [r["run_id"] for r in json.loads(recovered.stdout)] == [run_id]
    assert leftovers(snapshots_dir(ws)) == []


def test_three_concurrent_recovers_close_an_abandoned_run_once(tmp_path: Path) -> None:
    ws, run_id = abandon_a_run(tmp_path)
    policy = str(ws.policy)

    closers = [start("recover", policy, "--json") for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in closers]

    assert [p.returncode for p in closers] == [0, 0, 0], [err for _, err in outputs]
    closed = [r["run_id"] for out, _ in outputs for r in json.loads(out)]
    assert closed == [run_id]
    failed = events_of(ws, "quiesce.run.failed")
    assert [e["quiescerunid"] for e in failed] == [run_id]
    assert leftovers(snapshots_dir(ws)) == []


def test_a_duplicate_trigger_while_the_first_run_runs_reports_it_in_progress(
    tmp_path: Path,
) -> None:
    ws = copy_workspace(tmp_path, files=MANY_FILES)
    first = start("run", str(ws.policy), "-g", "g", "--json", "--trigger-id", "evt-1")
    try:
        assert wait_for(lambda: copying(ws), 30)
        duplicate = cli("run", str(ws.policy), "-g", "g", "--json", "--trigger-id", "evt-1")
    finally:
        first.communicate(timeout=60)

    assert duplicate.returncode == 4, duplicate.stderr
    assert json.loads(duplicate.stdout)["status"] == "running"
    assert "in progress" in duplicate.stderr
    assert first.returncode in (0, 3)
