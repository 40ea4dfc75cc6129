"""How the runner executes hooks: no shell, clean environment, own process group, timeouts that
kill the whole group, retries, a bounded output tail, and the state that makes pre/post safe."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quiesce.guest import RUNNER_PATH

from .conftest import PYTHON_38, Guest, alive, processes_of, wait_until


def test_the_runner_path_points_at_the_single_runner_file() -> None:
    assert RUNNER_PATH.name == "quiesce_guest.py"
    assert RUNNER_PATH.is_file()
    assert RUNNER_PATH.is_absolute()


def test_the_runner_parses_as_python_3_8() -> None:
    source = RUNNER_PATH.read_text()

    ast.parse(source, filename=str(RUNNER_PATH), feature_version=(3, 8))


def test_the_runner_imports_only_the_standard_library() -> None:
    tree = ast.parse(RUNNER_PATH.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])

    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@pytest.mark.skipif(not PYTHON_38.exists(), reason=f"no Python 3.8 interpreter at {PYTHON_38}")
def test_a_pre_post_cycle_runs_under_python_3_8(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, post_count = guest.counting_script("resume.sh")

    held = guest.run(guest.pre(pre, post, max_freeze_seconds=30), python=str(PYTHON_38))
    watchdog = guest.state()["watchdog_pid"]  # type: ignore[index]
    assert alive(watchdog)
    thawed = guest.run(guest.request("post", post), python=str(PYTHON_38))

    assert held["status"] == "succeeded", held
    assert thawed["status"] == "succeeded", thawed
    assert thawed["by"] == "orchestrator"
    assert (guest.count(pre_count), guest.count(post_count)) == (1, 1)
    assert wait_until(lambda: not alive(watchdog), 5)


def test_a_successful_hook_reports_exit_code_attempts_timing_and_output(guest: Guest) -> None:
    script = guest.script("pause.sh", "echo paused the database")

    result = guest.run(guest.request("verify", script))

    assert result["status"] == "succeeded"
    assert result["code"] == "Succeeded"
    assert result["exit_code"] == 0
    assert result["attempts"] == 1
    assert result["output"] == "paused the database\n"
    assert result["by"] == "orchestrator"
    assert result["duration_ms"] >= 0
    assert result["started_at"].endswith("+00:00")
    assert result["ended_at"] >= result["started_at"]


def test_a_non_zero_exit_is_reported_as_execution_failed_with_its_code(guest: Guest) -> None:
    script = guest.script("pause.sh", "echo cannot reach the database >&2\nexit 3")

    result = guest.run(guest.request("verify", script))

    assert result["status"] == "failed"
    assert result["code"] == "ExecutionFailed"
    assert result["exit_code"] == 3
    assert result["attempts"] == 1
    assert "cannot reach the database" in result["output"]


def test_a_script_without_an_interpreter_line_fails_to_start_cleanly(guest: Guest) -> None:
    script = guest.hooks / "pause.sh"
    script.write_text("echo no shebang\n")
    script.chmod(0o755)

    result = guest.run(guest.request("verify", script))

    assert result["status"] == "failed"
    assert result["code"] == "ExecutionFailed"
    assert "#!" in result["message"]


def test_a_timed_out_hook_has_its_whole_process_group_killed(guest: Guest) -> None:
    child_pid = guest.root / "child.pid"
    script = guest.script("pause.sh", f"sleep 300 &\necho $! > {child_pid}\nwait")

    started = time.monotonic()
    result = guest.run(guest.request("verify", guest.hook(script, timeout_seconds=0.3)))
    elapsed = time.monotonic() - started

    assert result["status"] == "timed_out"
    assert result["code"] == "Timeout"
    assert "timeout_seconds" in result["message"]
    assert not alive(int(child_pid.read_text()))
    assert processes_of(guest.run_id) == []
    assert elapsed < 5


def test_a_hook_that_ignores_sigterm_is_sigkilled_after_a_one_second_grace(guest: Guest) -> None:
    child_pid = guest.root / "child.pid"
    script = guest.script(
        "pause.sh", f"trap '' TERM\nsleep 300 &\necho $! > {child_pid}\nwait\nwait"
    )

    result = guest.run(guest.request("verify", guest.hook(script, timeout_seconds=0.2)))

    assert result["status"] == "timed_out"
    assert result["exit_code"] == -9
    assert 1000 <= result["duration_ms"] < 5000
    assert not alive(int(child_pid.read_text()))
    assert processes_of(guest.run_id) == []


def test_a_failed_attempt_is_retried_and_can_then_succeed(guest: Guest) -> None:
    counter = guest.root / "attempts"
    script = guest.script(
        "pause.sh",
        f"n=$(cat {counter} 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > {counter}\n"
        f'echo "attempt $n"\n[ "$n" -ge 2 ]',
    )

    result = guest.run(guest.request("verify", guest.hook(script, retries=2)))

    assert result["status"] == "succeeded", result
    assert result["attempts"] == 2
    assert result["output"] == "attempt 2\n"
    assert counter.read_text().strip() == "2"


def test_retries_stop_after_the_configured_number_of_attempts(guest: Guest) -> None:
    script, counter = guest.counting_script("pause.sh")
    failing = guest.script("failing.sh", f"{script}\nexit 1")

    result = guest.run(guest.request("verify", guest.hook(failing, retries=2)))

    assert result["status"] == "failed"
    assert result["attempts"] == 3
    assert guest.count(counter) == 3


def test_a_timed_out_attempt_is_retried(guest: Guest) -> None:
    counter = guest.root / "attempts"
    script = guest.script(
        "pause.sh",
        f"n=$(cat {counter} 2>/dev/null || echo 0)\necho $((n + 1)) > {counter}\n"
        f'[ "$n" -ge 1 ] || sleep 300',
    )

    result = guest.run(guest.request("verify", guest.hook(script, timeout_seconds=0.3, retries=1)))

    assert result["status"] == "succeeded", result
    assert result["attempts"] == 2


def test_only_the_last_4_kb_of_output_are_returned(guest: Guest) -> None:
    script = guest.script("pause.sh", "head -c 10000 /dev/zero | tr '\\0' a\nprintf THE-END")

    result = guest.run(guest.request("verify", script))

    output = result["output"]
    assert len(output.encode()) == 4096
    assert output.endswith("THE-END")
    assert set(output[: -len("THE-END")]) == {"a"}


def test_stdout_and_stderr_are_combined_in_order(guest: Guest) -> None:
    script = guest.script("pause.sh", "echo one\necho two >&2\necho three")

    result = guest.run(guest.request("verify", script))

    assert result["output"] == "one\ntwo\nthree\n"


def test_the_hook_sees_a_clean_environment_plus_its_own_env(guest: Guest) -> None:
    script = guest.script("pause.sh", "env")
    caller_env = dict(os.environ, LEAKED_FROM_CALLER="secret", LD_PRELOAD="/evil.so")

    result = guest.run(
        guest.request("verify", guest.hook(script, env={"DB_NAME": "orders"})), env=caller_env
    )

    seen = dict(line.split("=", 1) for line in result["output"].splitlines())
    seen.pop("PWD", None)  # set by /bin/sh itself
    assert seen == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "QUIESCE_RUN_ID": guest.run_id,
        "QUIESCE_PHASE": "verify",
        "QUIESCE_MEMBER": "db",
        "QUIESCE_HOOK": guest.allowlist["hooks"] and next(iter(guest.allowlist["hooks"])),
        "QUIESCE_HOOK_PATH": str(script),
        "QUIESCE_STATE_DIR": str(guest.state_dir),
        "DB_NAME": "orders",
    }


def test_an_allowlist_that_lets_a_hook_impersonate_another_run_is_refused(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")

    result = guest.run(
        guest.request("verify", guest.hook(script, env={"QUIESCE_RUN_ID": "someone-else"}))
    )

    assert result["code"] == "ConfigRefused"
    assert "QUIESCE_RUN_ID" in result["message"]
    assert not marker.exists()


def test_arguments_and_the_restore_path_are_passed_without_a_shell(guest: Guest) -> None:
    pwned = guest.root / "pwned"
    script = guest.script(
        "verify.sh", 'for arg in "$@"; do echo "[$arg]"; done; echo "{$QUIESCE_RESTORE_PATH}"'
    )

    result = guest.run(
        guest.request(
            "verify",
            guest.hook(script, "db; touch " + str(pwned)),
            extra_args=[f"/restore/copy one $(touch {pwned})"],
        )
    )

    assert result["output"].splitlines() == [
        f"[db; touch {pwned}]",
        f"[/restore/copy one $(touch {pwned})]",
        f"{{/restore/copy one $(touch {pwned})}}",
    ]
    assert not pwned.exists()


def test_the_hook_runs_in_its_own_process_group_in_its_folder_with_no_stdin(guest: Guest) -> None:
    script = guest.script(
        "pause.sh",
        "set -- $(cut -d' ' -f5,6 /proc/$$/stat)\n"
        'echo "pgid=$1 sid=$2 pid=$$"\n'
        "pwd\n"
        "if read -r line; then echo stdin-had-data; else echo stdin-empty; fi",
    )

    done = subprocess.run(
        [*guest.run_command(), "--request-file", "/dev/stdin"],
        input=json.dumps(guest.request("verify", script)),
        capture_output=True,
        text=True,
        timeout=30,
    )

    lines = json.loads(done.stdout)["output"].splitlines()
    ids = dict(item.split("=") for item in lines[0].split())
    assert ids["pgid"] == ids["pid"] == ids["sid"]
    assert lines[1:] == [str(guest.hooks), "stdin-empty"]


def test_a_background_child_holding_the_output_does_not_hold_up_the_runner(guest: Guest) -> None:
    script = guest.script("resume.sh", "sleep 300 &\necho resumed")

    started = time.monotonic()
    result = guest.run(guest.request("verify", script))

    assert result["status"] == "succeeded"
    assert result["output"] == "resumed\n"
    assert time.monotonic() - started < 5


def test_a_caller_that_closed_stdout_does_not_break_the_runner(guest: Guest) -> None:
    script, marker = guest.marking_script("resume.sh")
    slow = guest.script("slow.sh", f"sleep 0.3\n{script}")

    proc = subprocess.Popen(
        [*guest.run_command(), "--request", json.dumps(guest.request("post", slow))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the caller went away before the result was printed
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert err == b""
    assert marker.exists()
    assert guest.state()["post"]["result"]["status"] == "succeeded"  # type: ignore[index]


def test_a_post_without_a_pre_runs_the_post_hook_and_a_later_pre_is_refused_already_thawed(
    guest: Guest,
) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, post_count = guest.counting_script("resume.sh")

    thawed = guest.run(guest.request("post", post))
    late = guest.run(guest.pre(pre, post))

    assert thawed["status"] == "succeeded"
    assert late["status"] == "refused"
    assert late["code"] == "AlreadyThawed"
    assert "new run" in late["message"]
    assert (guest.count(pre_count), guest.count(post_count)) == (0, 1)
    assert processes_of(guest.run_id) == []


def test_a_second_post_returns_the_stored_result_without_running_the_hook_again(
    guest: Guest,
) -> None:
    post, post_count = guest.counting_script("resume.sh")

    first = guest.run(guest.request("post", post))
    second = guest.run(guest.request("post", post))

    assert second == first
    assert guest.count(post_count) == 1


def test_a_second_pre_for_the_same_run_and_member_is_refused_as_replayed(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, _ = guest.counting_script("resume.sh")

    first = guest.run(guest.pre(pre, post))
    replay = guest.run(guest.pre(pre, post))

    assert first["status"] == "succeeded"
    assert replay["status"] == "refused"
    assert replay["code"] == "Replayed"
    assert guest.count(pre_count) == 1


def test_two_members_on_one_machine_keep_separate_state(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, post_count = guest.counting_script("resume.sh")

    db = guest.run(guest.pre(pre, post))
    guest.member = "cache"
    cache = guest.run(guest.pre(pre, post))
    guest.run(guest.request("post", post))
    guest.member = "db"
    guest.run(guest.request("post", post))

    assert (db["status"], cache["status"]) == ("succeeded", "succeeded")
    assert (guest.count(pre_count), guest.count(post_count)) == (2, 2)
    assert guest.state(f"{guest.run_id}--cache") is not None


def test_a_pre_records_its_state_and_status_prints_it(guest: Guest) -> None:
    pre, _ = guest.counting_script("pause.sh")
    post, _ = guest.counting_script("resume.sh")
    before = time.time()

    guest.run(guest.pre(pre, post, max_freeze_seconds=30))
    done = subprocess.run(
        [*guest.command(), "status", "--state-dir", str(guest.state_dir), "--key", guest.key],
        capture_output=True,
        text=True,
        timeout=30,
    )

    state = json.loads(done.stdout)
    assert state == guest.state()
    assert state["key"] == guest.key
    assert state["thaw"] == guest.allowlist["hooks"][state["hook"]]["thaw"]
    assert before + 30 <= state["deadline"] <= time.time() + 30
    assert state["pre"]["result"]["status"] == "succeeded"
    assert state["pre"]["pgid"] is None
    assert state["post"] is None
    assert alive(state["watchdog_pid"])
    assert Path(guest.state_dir / "runs" / f"{guest.key}.lock").exists()
    assert sorted(p.name for p in (guest.state_dir / "runs").iterdir()) == sorted(
        [f"{guest.key}.{ext}" for ext in ("json", "lock", "thaw", "watchdog.log")]
    )  # hook output never touches the state folder


def test_status_of_an_unknown_run_prints_null(guest: Guest) -> None:
    done = subprocess.run(
        [*guest.command(), "status", "--state-dir", str(guest.state_dir), "--key", guest.key],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0
    assert json.loads(done.stdout) is None
