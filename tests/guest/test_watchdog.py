"""The watchdog: a machine thaws on its own at the deadline, exactly once, whatever happens to
the orchestrator or the runner, and never while a pre hook can still freeze after it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .conftest import Guest, alive, processes_of, wait_until


def state_of(guest: Guest) -> dict[str, Any]:
    state = guest.state()
    assert state is not None
    return state


def hanging_pre(guest: Guest, log: Path) -> tuple[Path, Path]:
    """A pre hook that logs its start, logs being stopped, and otherwise hangs with a child."""
    child_pid = guest.root / "child.pid"
    script = guest.script(
        "pause.sh",
        f"echo pre-started >> {log}\n"
        f"trap 'echo pre-stopped >> {log}; exit 143' TERM\n"
        f"sleep 300 &\necho $! > {child_pid}\nwait",
    )
    return script, child_pid


def wait_for_running_pre(guest: Guest, log: Path) -> int:
    def running() -> bool:
        state = guest.state()
        return bool(state and state["pre"] and state["pre"]["pgid"]) and log.exists()

    assert wait_until(running, 10)
    pgid: int = state_of(guest)["pre"]["pgid"]
    return pgid


def test_without_a_post_the_watchdog_thaws_once_at_the_deadline_and_post_returns_its_result(
    guest: Guest,
) -> None:
    pre, _ = guest.counting_script("pause.sh")
    thaw, thaw_count = guest.counting_script("resume.sh")

    held = guest.run(guest.pre(pre, thaw, max_freeze_seconds=0.5))
    assert wait_until(lambda: guest.count(thaw_count) == 1, 3)
    assert wait_until(lambda: state_of(guest)["post"] is not None, 2)
    state = state_of(guest)
    late_post = guest.run(guest.request("post", thaw))

    assert held["status"] == "succeeded"
    assert state["post"]["by"] == "watchdog"
    assert state["post"]["result"]["by"] == "watchdog"
    assert state["post"]["result"]["status"] == "succeeded"
    thawed_at = datetime.fromisoformat(state["post"]["result"]["started_at"]).timestamp()
    assert thawed_at >= state["deadline"] - 0.001  # not before the deadline (ms resolution)
    assert late_post == state["post"]["result"]
    assert late_post["by"] == "watchdog"
    assert guest.count(thaw_count) == 1
    assert wait_until(lambda: not alive(state["watchdog_pid"]), 2)


def test_a_post_before_the_deadline_thaws_once_and_stops_the_watchdog(guest: Guest) -> None:
    pre, _ = guest.counting_script("pause.sh")
    thaw, thaw_count = guest.counting_script("resume.sh")

    guest.run(guest.pre(pre, thaw, max_freeze_seconds=10))
    watchdog = state_of(guest)["watchdog_pid"]
    assert alive(watchdog)
    thawed = guest.run(guest.request("post", thaw))

    assert thawed["status"] == "succeeded"
    assert thawed["by"] == "orchestrator"
    # Gone long before its deadline, so it can never run the thaw a second time.
    assert wait_until(lambda: not alive(watchdog), 2)
    assert state_of(guest)["watchdog_stopped_at"] is not None
    assert guest.count(thaw_count) == 1
    assert state_of(guest)["post"]["by"] == "orchestrator"
    assert processes_of(guest.run_id) == []


def test_a_pre_still_running_at_the_deadline_is_stopped_before_the_thaw_runs(
    guest: Guest,
) -> None:
    log = guest.root / "order.log"
    pre, child_pid = hanging_pre(guest, log)
    thaw, thaw_count = guest.counting_script("resume.sh", log=log)

    runner = guest.start(
        guest.pre(guest.hook(pre, timeout_seconds=30), thaw, max_freeze_seconds=1.5)
    )
    assert wait_until(lambda: child_pid.exists() and child_pid.read_text().strip() != "", 10)
    assert wait_until(lambda: guest.count(thaw_count) == 1, 5)
    held = guest.finish(runner)

    assert log.read_text().splitlines() == ["pre-started", "pre-stopped", "resume.sh"]
    assert held["status"] == "failed"
    assert held["code"] == "AlreadyThawed"
    assert not alive(int(child_pid.read_text()))
    state = state_of(guest)
    assert state["pre"]["stopped_by"] == "watchdog"
    assert state["post"]["by"] == "watchdog"
    assert state["pre"]["result"]["code"] == "AlreadyThawed"
    assert wait_until(lambda: processes_of(guest.run_id) == [], 3)


def test_a_post_stops_a_still_running_pre_before_running_the_post_hook(guest: Guest) -> None:
    log = guest.root / "order.log"
    pre, child_pid = hanging_pre(guest, log)
    thaw, thaw_count = guest.counting_script("resume.sh", log=log)

    runner = guest.start(
        guest.pre(guest.hook(pre, timeout_seconds=30), thaw, max_freeze_seconds=30)
    )
    wait_for_running_pre(guest, log)
    thawed = guest.run(guest.request("post", thaw))
    held = guest.finish(runner)

    assert thawed["status"] == "succeeded"
    assert thawed["by"] == "orchestrator"
    assert log.read_text().splitlines() == ["pre-started", "pre-stopped", "resume.sh"]
    assert held["code"] == "AlreadyThawed"
    assert guest.count(thaw_count) == 1
    assert not alive(int(child_pid.read_text()))
    assert wait_until(lambda: processes_of(guest.run_id) == [], 3)


def test_the_watchdog_survives_its_runner_being_sigkilled(guest: Guest) -> None:
    log = guest.root / "order.log"
    pre, child_pid = hanging_pre(guest, log)
    thaw, thaw_count = guest.counting_script("resume.sh", log=log)
    max_freeze = 1.5

    runner = guest.start(
        guest.pre(guest.hook(pre, timeout_seconds=30), thaw, max_freeze_seconds=max_freeze)
    )
    wait_for_running_pre(guest, log)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    killed_at = time.monotonic()
    assert guest.count(thaw_count) == 0  # the runner died while the machine was frozen

    assert wait_until(lambda: guest.count(thaw_count) == 1, max_freeze + 2)
    assert time.monotonic() - killed_at <= max_freeze + 2
    assert wait_until(lambda: state_of(guest)["post"] is not None, 2)
    assert log.read_text().splitlines() == ["pre-started", "pre-stopped", "resume.sh"]
    assert not alive(int(child_pid.read_text()))  # the orphaned pre hook was stopped too
    assert state_of(guest)["post"]["by"] == "watchdog"
    assert wait_until(lambda: processes_of(guest.run_id) == [], 3)


def test_a_post_arriving_while_the_watchdog_thaws_waits_and_returns_its_result(
    guest: Guest,
) -> None:
    pre, _ = guest.counting_script("pause.sh")
    counter = guest.root / "thaw.count"
    started = guest.root / "thaw.started"
    thaw = guest.script(
        "resume.sh",
        f"touch {started}\nsleep 0.5\n"
        f"n=$(cat {counter} 2>/dev/null || echo 0)\necho $((n + 1)) > {counter}",
    )

    guest.run(guest.pre(pre, thaw, max_freeze_seconds=0.3))
    assert wait_until(started.exists, 4)
    thawed = guest.run(guest.request("post", thaw))  # blocks on the lock until the thaw is done

    assert thawed["by"] == "watchdog"
    assert thawed["status"] == "succeeded"
    assert guest.count(counter) == 1


def test_the_watchdog_runs_the_thaw_it_was_handed_not_what_is_at_the_path_later(
    guest: Guest,
) -> None:
    pre, _ = guest.counting_script("pause.sh")
    thaw, thaw_count = guest.counting_script("resume.sh")
    swapped = guest.root / "swapped.ran"

    guest.run(guest.pre(pre, thaw, max_freeze_seconds=0.5))
    replacement = guest.script("replacement.sh", f"touch {swapped}")
    os.replace(replacement, thaw)  # the path now names another file
    assert wait_until(lambda: state_of(guest)["post"] is not None, 4)

    assert state_of(guest)["post"]["result"]["status"] == "succeeded"
    assert guest.count(thaw_count) == 1
    assert not swapped.exists()


def test_post_never_signals_a_process_that_merely_reused_the_watchdogs_pid(guest: Guest) -> None:
    pre, _ = guest.counting_script("pause.sh")
    thaw, _ = guest.counting_script("resume.sh")
    guest.run(guest.pre(pre, thaw, max_freeze_seconds=30))
    watchdog = state_of(guest)["watchdog_pid"]
    os.kill(watchdog, signal.SIGKILL)
    assert wait_until(lambda: not alive(watchdog), 5)
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        guest.edit_state(lambda state: state.update(watchdog_pid=bystander.pid))

        thawed = guest.run(guest.request("post", thaw))

        assert thawed["status"] == "succeeded"
        assert not wait_until(lambda: bystander.poll() is not None, 0.3)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_stale_pre_process_group_id_now_used_by_another_process_is_left_alone(
    guest: Guest,
) -> None:
    log = guest.root / "order.log"
    pre, _ = hanging_pre(guest, log)
    thaw, thaw_count = guest.counting_script("resume.sh")
    runner = guest.start(
        guest.pre(guest.hook(pre, timeout_seconds=30), thaw, max_freeze_seconds=30)
    )
    pgid = wait_for_running_pre(guest, log)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    os.killpg(pgid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pgid), 5)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:

        def point_at_bystander(state: dict[str, Any]) -> None:
            state["pre"]["pgid"] = bystander.pid

        guest.edit_state(point_at_bystander)

        thawed = guest.run(guest.request("post", thaw))

        assert thawed["status"] == "succeeded"
        assert guest.count(thaw_count) == 1
        assert not wait_until(lambda: bystander.poll() is not None, 0.3)
        assert any("left alone" in event["what"] for event in state_of(guest)["events"])
    finally:
        bystander.kill()
        bystander.wait()
