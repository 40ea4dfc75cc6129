"""SIGTERM while the post hooks run: the record says what the thaw came to, or keeps the thaw
owed so `quiesce recover` finds the run; events match the record; a failed hook's output is in
the run result. Real `quiesce run` processes, hooks through the guest runner."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.support import cli, events_of, wait_for
from tests.workspace import Workspace

pytestmark = pytest.mark.integration


def hooked_workspace(root: Path, post_body: str, pre_body: str = "") -> Workspace:
    os.chmod(root, 0o755)
    ws = Workspace(root)
    log = ws.log
    pre = ws.hook("pre", f'{pre_body}\necho "pre $1" >> {log}\n')
    post = ws.hook(
        "post", f'echo "post-start $1" >> {log}\n{post_body}\necho "post-end $1" >> {log}\n'
    )
    (root / "data" / "db").mkdir(parents=True)
    (root / "data" / "db" / "f").write_text("db")
    ws.write_policy(
        {
            "g": {
                "max_freeze_seconds": 20,
                "members": [
                    {
                        "name": "db",
                        "provider": "local",
                        "volumes": [str(root / "data" / "db")],
                        "hooks": {
                            "pre": {"run": [pre, "db"], "timeout_seconds": 5},
                            "post": {"run": [post, "db"], "timeout_seconds": 5},
                        },
                    }
                ],
            }
        }
    )
    return ws


def logged(ws: Workspace, word: str) -> bool:
    return any(line.split()[0] == word for line in ws.log_lines())


def test_sigterm_to_the_orchestrator_mid_post_lets_the_post_finish_and_records_it(
    tmp_path: Path,
) -> None:
    ws = hooked_workspace(tmp_path, "sleep 1.5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "quiesce.cli.app", "run", str(ws.policy), "-g", "g", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: logged(ws, "post-start"), 30), ws.log_lines()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()

    assert proc.returncode == 130, err
    assert logged(ws, "post-end")
    result = json.loads(out)
    post = result["members"][0]["machines"][0]["post"]
    assert post is not None, "the post hook's result is recorded"
    assert post["status"] == "succeeded"
    assert result["status"] == "failed"
    assert any("interrupted" in e for e in result["errors"])
    thawed = events_of(ws, "quiesce.member.thawed")
    quiesced = events_of(ws, "quiesce.member.quiesced")
    assert [e["quiescerunid"] for e in thawed] == [result["run_id"]]
    assert [e["quiescerunid"] for e in quiesced] == [result["run_id"]]
    assert cli("recover", str(ws.policy), "--json").stdout.strip() == "[]"


def test_sigterm_to_the_whole_run_mid_post_keeps_the_thaw_owed_until_recover_proves_it(
    tmp_path: Path,
) -> None:
    """What `systemctl stop` does: every process of the run gets SIGTERM, the hook runner and
    the hook included. Either the thaw was proven before the run ended, or the run stays open
    for `recover`, which thaws and closes it."""
    ws = hooked_workspace(tmp_path, "sleep 1.5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "quiesce.cli.app", "run", str(ws.policy), "-g", "g", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: logged(ws, "post-start"), 30), ws.log_lines()
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()

    assert proc.returncode == 130, err
    result = json.loads(out)
    post = result["members"][0]["machines"][0]["post"]
    if post is not None and post["status"] == "succeeded":
        assert result["status"] != "running"
        return
    assert result["status"] == "running", "a thaw not proven stays owed"
    recovered = cli("recover", str(ws.policy), "--json")
    assert recovered.returncode == 0, recovered.stderr
    (closed,) = json.loads(recovered.stdout)
    assert closed["run_id"] == result["run_id"]
    assert closed["members"][0]["machines"][0]["post"]["status"] == "succeeded"
    assert wait_for(lambda: logged(ws, "post-end"), 10), ws.log_lines()


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_a_thaw_lost_to_a_signal_stays_owed_and_recover_closes_the_run(tmp_path: Path) -> None:
    """SIGTERM to the orchestrator while its hook runner is SIGKILLed mid-post: the post never
    answers, so the record keeps the thaw owed (`running`) and `recover` finds the run, thaws it
    and closes it."""
    ws = hooked_workspace(tmp_path, "sleep 1.5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "quiesce.cli.app", "run", str(ws.policy), "-g", "g", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: logged(ws, "post-start"), 30), ws.log_lines()
        runners = children(proc.pid)
        assert runners
        proc.send_signal(signal.SIGTERM)
        for pid in runners:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()

    assert proc.returncode == 130, err
    left = json.loads(out)
    assert left["status"] == "running", "the thaw is owed until one is proven"
    assert left["members"][0]["machines"][0]["post"] is None
    assert events_of(ws, "quiesce.run.failed") == []

    recovered = cli("recover", str(ws.policy), "--json")

    assert recovered.returncode == 0, recovered.stderr
    (closed,) = json.loads(recovered.stdout)
    assert closed["run_id"] == left["run_id"]
    assert closed["members"][0]["machines"][0]["post"] is not None
    assert [e["quiescerunid"] for e in events_of(ws, "quiesce.run.failed")] == [left["run_id"]]


def test_a_failed_hook_s_output_is_in_the_run_result(tmp_path: Path) -> None:
    ws = hooked_workspace(
        tmp_path, "", pre_body='echo "cannot lock tables: permission denied on orders"; exit 3'
    )

    done = cli("run", str(ws.policy), "-g", "g", "--json")

    result = json.loads(done.stdout)
    pre = result["members"][0]["machines"][0]["pre"]
    assert pre["status"] == "failed"
    assert "permission denied on orders" in pre["output"]
    assert "permission denied on orders" in result["members"][0]["error"]
    human = cli("run", str(ws.policy), "-g", "g")
    assert "permission denied on orders" in " ".join(human.stdout.split())
