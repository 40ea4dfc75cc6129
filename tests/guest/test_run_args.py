"""`quiesce_guest.py run-args`: the same request as `run`, given as one typed flag per field (how
the Quiesce SSM document and the Azure Run Command script call the runner): only the run's
identifiers and a declared hook's name; and a result that fits a channel's output limit."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from .conftest import PYTHON_38, Guest, alive, wait_until


def run_args(
    guest: Guest, *flags: str, python: str | None = None, expect_rc: int = 0
) -> dict[str, Any]:
    identity = ["--run-id", guest.run_id, "--member", guest.member]
    done = subprocess.run(
        [*guest.command(python), "run-args", "--config", str(guest.config), *identity, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == expect_rc, (done.returncode, done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def test_run_args_runs_a_declared_hook_by_name(guest: Guest) -> None:
    script = guest.script("echo.sh", 'for a in "$@"; do printf \'[%s]\\n\' "$a"; done')
    name = guest.declare("verify", guest.hook(script, "a b", "$(x)"))

    result = run_args(guest, "--phase", "verify", "--hook", name, "--restore-path", "/r/copy 1")

    assert result["status"] == "succeeded", result
    assert result["output"] == "[a b]\n[$(x)]\n[/r/copy 1]\n"


def test_empty_optional_flags_mean_not_given(guest: Guest) -> None:
    script, marker = guest.marking_script("check.sh")
    name = guest.declare("verify", script)

    result = run_args(
        guest, "--phase", "verify", "--hook", name, "--expires-at", "", "--restore-path", ""
    )

    assert result["status"] == "succeeded", result
    assert marker.exists()


def test_a_pre_post_cycle_through_typed_flags_arms_and_stops_the_watchdog(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, post_count = guest.counting_script("resume.sh")
    request = guest.pre(pre, post, max_freeze_seconds=30)

    held = run_args(guest, "--phase", "pre", "--hook", request["hook"])
    state = guest.state()
    assert state is not None
    watchdog = state["watchdog_pid"]
    thawed = run_args(guest, "--phase", "post", "--hook", guest.post_for(request)["hook"])

    assert held["status"] == thawed["status"] == "succeeded"
    assert (guest.count(pre_count), guest.count(post_count)) == (1, 1)
    assert wait_until(lambda: not alive(watchdog), 5)


def test_a_pre_that_arrives_after_it_expired_is_refused_as_stale(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, _ = guest.counting_script("resume.sh")
    request = guest.pre(pre, post)

    result = run_args(
        guest, "--phase", "pre", "--hook", request["hook"], "--expires-at", str(time.time() - 5)
    )

    assert result["code"] == "Stale"
    assert guest.count(pre_count) == 0
    assert guest.state() is None


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--phase", "verify", "--hook", "x", "--expires-at", "soon"], "--expires-at"),
        (["--phase", "verify", "--hook", "x", "--expires-at", "nan"], "--expires-at"),
        (["--phase", "verify", "--hook", "/bin/sh"], "hook"),
        (["--phase", "verify", "--hook", "x'; sh -c 'id"], "hook"),
        (["--phase", "pre", "--hook", "x", "--restore-path", "/r"], "restore_path"),
        (["--phase", "verify", "--hook", "x", "--restore-path", "relative"], "restore_path"),
        (["--phase", "verify", "--script", "/bin/sh", "--hook", "x"], "--script"),
        (["--phase", "verify", "--hook", "x", "--arg", "-c"], "--arg"),
        (["--phase", "verify", "--hook", "x", "--env", "LD_PRELOAD=/x.so"], "--env"),
    ],
)
def test_a_bad_or_unknown_flag_is_a_bad_request_naming_it(
    guest: Guest, flags: list[str], field: str
) -> None:
    result = run_args(guest, *flags, expect_rc=2)

    assert result["code"] == "BadRequest"
    assert field in result["message"]


def test_max_result_chars_keeps_the_result_whole_and_the_end_of_the_output(guest: Guest) -> None:
    body = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done"
    script = guest.script("chatty.sh", body)
    name = guest.declare("verify", script)

    result = run_args(guest, "--phase", "verify", "--hook", name, "--max-result-chars", "600")

    assert len(json.dumps(result, sort_keys=True)) <= 600
    assert result["status"] == "succeeded"
    assert result["output"].endswith("line-399\n")


def test_run_args_runs_under_python_3_8(guest: Guest) -> None:
    if not PYTHON_38.exists():
        pytest.skip(f"{PYTHON_38} is not installed")
    script, marker = guest.marking_script("check.sh")
    name = guest.declare("verify", script)

    result = run_args(guest, "--phase", "verify", "--hook", name, python=str(PYTHON_38))

    assert result["status"] == "succeeded", result
    assert marker.exists()
