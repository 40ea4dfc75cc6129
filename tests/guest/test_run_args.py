"""`quiesce_guest.py run-args`: the same request as `run`, given as one typed flag per field (how
the Quiesce SSM document calls the runner), and a result that fits a channel's output limit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import PYTHON_38, Guest, alive, wait_until


def run_args(
    guest: Guest, *flags: str, python: str | None = None, expect_rc: int = 0
) -> dict[str, Any]:
    identity = ["--run-id", guest.run_id, "--member", guest.member]
    done = subprocess.run(
        [
            *guest.command(python),
            "run-args",
            *identity,
            "--state-dir",
            str(guest.state_dir),
            *flags,
        ],
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


def echo_script(guest: Guest) -> Path:
    body = "for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\nenv | grep '^MODE=' || true"
    return guest.script("echo.sh", body)


def test_run_args_runs_a_hook_given_as_typed_flags(guest: Guest) -> None:
    script = echo_script(guest)

    result = run_args(
        guest, "--phase", "verify", "--script", str(script), "--arg", "a b", "--arg", "$(x)"
    )

    assert result["status"] == "succeeded"
    assert result["output"] == "[a b]\n[$(x)]\n"


def test_args_json_is_how_ssm_renders_an_embedded_string_list(guest: Guest) -> None:
    script = echo_script(guest)

    listed = run_args(
        guest, "--phase", "verify", "--script", str(script), "--args-json", '["one","two, three"]'
    )
    empty = run_args(guest, "--phase", "verify", "--script", str(script), "--args-json", "[]")
    null = run_args(guest, "--phase", "verify", "--script", str(script), "--args-json", "null")

    assert listed["output"] == "[one]\n[two, three]\n"
    assert empty["output"] == null["output"] == ""


def test_env_items_are_name_value_pairs(guest: Guest) -> None:
    script = echo_script(guest)

    as_list = run_args(
        guest, "--phase", "verify", "--script", str(script), "--env-json", '["MODE=a=b"]'
    )
    as_flags = run_args(guest, "--phase", "verify", "--script", str(script), "--env", "MODE=c")

    assert as_list["output"] == "MODE=a=b\n"
    assert as_flags["output"] == "MODE=c\n"


def test_empty_flags_mean_not_given(guest: Guest) -> None:
    script = echo_script(guest)

    result = run_args(
        guest,
        "--phase",
        "verify",
        "--script",
        str(script),
        "--sha256",
        "",
        "--timeout",
        "",
        "--retries",
        "",
        "--thaw-script",
        "",
        "--max-freeze-seconds",
        "",
        "--expires-at",
        "",
    )

    assert result["status"] == "succeeded"


def test_a_pre_post_cycle_through_typed_flags_arms_and_stops_the_watchdog(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, post_count = guest.counting_script("resume.sh")
    flags = ["--timeout", "5", "--retries", "0"]

    held = run_args(
        guest,
        "--phase",
        "pre",
        "--script",
        str(pre),
        *flags,
        "--thaw-script",
        str(post),
        "--thaw-timeout",
        "5",
        "--thaw-retries",
        "0",
        "--max-freeze-seconds",
        "30",
    )
    state = guest.state()
    assert state is not None
    watchdog = state["watchdog_pid"]
    assert alive(watchdog)
    thawed = run_args(guest, "--phase", "post", "--script", str(post), *flags)

    assert (held["status"], thawed["status"]) == ("succeeded", "succeeded")
    assert (guest.count(pre_count), guest.count(post_count)) == (1, 1)
    assert wait_until(lambda: not alive(watchdog), 5)


def test_a_pre_that_arrives_after_it_expired_is_refused_as_stale(guest: Guest) -> None:
    pre, pre_count = guest.counting_script("pause.sh")
    post, _ = guest.counting_script("resume.sh")

    result = run_args(
        guest,
        "--phase",
        "pre",
        "--script",
        str(pre),
        "--thaw-script",
        str(post),
        "--max-freeze-seconds",
        "30",
        "--expires-at",
        "1000.5",
    )

    assert (result["status"], result["code"]) == ("refused", "Stale")
    assert guest.count(pre_count) == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--timeout", "abc"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--retries", "-1"], "--retries"),
        (["--args-json", "[1, 2]"], "--args-json"),
        (["--args-json", "not json"], "--args-json"),
        (["--env", "NOEQUALS"], "--env"),
        (["--arg", "x", "--args-json", '["y"]'], "--arg"),
    ],
)
def test_a_bad_flag_value_is_a_bad_request_naming_the_flag(
    guest: Guest, flags: list[str], named: str
) -> None:
    script = echo_script(guest)

    result = run_args(guest, "--phase", "verify", "--script", str(script), *flags, expect_rc=2)

    assert (result["status"], result["code"]) == ("refused", "BadRequest")
    assert named in result["message"]


def test_the_request_is_validated_like_a_json_request(guest: Guest) -> None:
    script = echo_script(guest)

    no_script = run_args(guest, "--phase", "verify", expect_rc=2)
    bad_phase = run_args(guest, "--phase", "thaw", "--script", str(script), expect_rc=2)
    pre_without_thaw = run_args(guest, "--phase", "pre", "--script", str(script), expect_rc=2)

    assert "--script" in no_script["message"]
    assert "phase" in bad_phase["message"]
    assert "thaw" in pre_without_thaw["message"]


def test_max_result_chars_keeps_the_result_whole_and_the_end_of_the_output(guest: Guest) -> None:
    script = guest.script("loud.sh", "i=0\nwhile [ $i -lt 700 ]; do echo line-$i; i=$((i+1)); done")

    result = run_args(
        guest, "--phase", "verify", "--script", str(script), "--max-result-chars", "2400"
    )
    full = run_args(guest, "--phase", "verify", "--script", str(script))

    assert len(json.dumps(result, sort_keys=True)) <= 2400
    assert result["status"] == "succeeded"
    assert result["output"].startswith("[...]")
    assert result["output"].endswith("line-699\n")
    assert len(full["output"]) == 4096


@pytest.mark.skipif(not PYTHON_38.exists(), reason=f"no Python 3.8 interpreter at {PYTHON_38}")
def test_run_args_runs_under_python_3_8(guest: Guest) -> None:
    script = echo_script(guest)

    result = run_args(
        guest,
        "--phase",
        "verify",
        "--script",
        str(script),
        "--args-json",
        '["ok"]',
        "--max-result-chars",
        "2400",
        python=str(PYTHON_38),
    )

    assert result["output"] == "[ok]\n"
