"""The orchestrator is SIGKILLed between quiesce and thaw: the machines' watchdogs thaw every
member within max_freeze_seconds + 2 s, and `quiesce recover` records and publishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.workspace import Workspace

pytestmark = pytest.mark.integration

MAX_FREEZE = 4.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quiesce.cli.app", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """Two members: `fast` quiesces at once; `slow` is still in its pre hook when the
    orchestrator dies."""
    os.chmod(tmp_path, 0o755)
    ws = Workspace(tmp_path)
    log = ws.log
    pre = ws.hook(
        "pre",
        f"""\
        echo "pre-start $1 $(date +%s.%N)" >> {log}
        if [ "$1" = slow ]; then sleep 3; fi
        echo "pre-end $1 $(date +%s.%N)" >> {log}
        """,
    )
    post = ws.hook("post", f'echo "post $1 $(date +%s.%N)" >> {log}\n')
    members = []
    for name in ("fast", "slow"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "f").write_text(name)
        members.append(
            {
                "name": name,
                "provider": "local",
                "volumes": [str(tmp_path / "data" / name)],
                "hooks": {
                    "pre": {"run": [pre, name], "timeout_seconds": 3.5},
                    "post": {"run": [post, name], "timeout_seconds": 5},
                },
            }
        )
    ws.write_policy({"g": {"max_freeze_seconds": MAX_FREEZE, "members": members}})
    return ws


def entries(ws: Workspace, kind: str) -> list[tuple[str, float]]:
    return [
        (parts[1], float(parts[2]))
        for parts in (line.split() for line in ws.log_lines())
        if parts[0] == kind
    ]


def test_the_watchdog_thaws_every_member_after_the_orchestrator_is_killed_mid_freeze(
    ws: Workspace,
) -> None:
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "quiesce.cli.app", "run", str(ws.policy), "-g", "g", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: len(entries(ws, "pre-start")) == 2, 20), ws.log_lines()
        assert wait_for(lambda: entries(ws, "pre-end"), 5)  # `fast` is frozen
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait(5)
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()

    first_pre = min(t for _, t in entries(ws, "pre-start"))
    assert wait_for(lambda: len(entries(ws, "post")) == 2, MAX_FREEZE + 4), ws.log_lines()
    thaws = dict(entries(ws, "post"))
    assert sorted(thaws) == ["fast", "slow"]
    for member, thawed_at in thaws.items():
        assert thawed_at - first_pre <= MAX_FREEZE + 2, f"{member} thawed too late"
    pre_ends = dict(entries(ws, "pre-end"))
    assert all(pre_ends[m] < thaws[m] for m in pre_ends), "nothing froze after its thaw"

    recovered = cli("recover", str(ws.policy), "--json")
    assert recovered.returncode == 0, recovered.stderr
    (result,) = json.loads(recovered.stdout)
    assert result["abandoned"] is True
    assert result["status"] == "failed"
    posts = {m["name"]: m["machines"][0]["post"] for m in result["members"]}
    assert {p["by"] for p in posts.values()} == {"watchdog"}
    time.sleep(0.5)
    assert len(entries(ws, "post")) == 2, "recover did not run a post hook a second time"

    events = cli("events", str(ws.policy), "--json", "--type", "quiesce.run.failed")
    (failed,) = [json.loads(line) for line in events.stdout.splitlines()]
    assert failed["data"]["abandoned"] is True
    assert failed["quiescerunid"] == result["run_id"]
    assert not list((ws.root / "state" / "snapshots").rglob("f")), "orphans are deleted"

    again = cli("run", str(ws.policy), "-g", "g", "--json")
    assert json.loads(again.stdout)["status"] == "succeeded", "the group's lock was released"
