"""The guest protocol module: one request, one set of timeouts, one answer parser and one way
of building results for every channel (quiesce.guest.protocol)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Literal

import pytest

from quiesce.guest.protocol import (
    LOCAL,
    REMOTE,
    Request,
    Stopwatch,
    argument_problem,
    ended,
    format_number,
    machine_os,
    parse_answer,
    read_answer,
    state_word,
    windows_refusal,
)
from quiesce.guest.quiesce_guest import REQUEST_VERSION, parse_request
from quiesce.policy.model import Hook, Hooks, LocalMember, MemberBase
from quiesce.ports import HookCall, Machine
from quiesce.record import HookStatus

PRE = Hook(run=["/opt/pause.sh"], timeout_seconds=10, retries=1)
POST = Hook(run=["/opt/resume.sh"], timeout_seconds=5)
MEMBER = LocalMember(
    name="db", provider="local", volumes=["/data"], hooks=Hooks(pre=PRE, post=POST)
)

RESULT = {
    "status": "succeeded",
    "code": "Allowed",
    "message": "declared",
    "exit_code": None,
    "attempts": 0,
    "started_at": "2026-11-29T10:00:00.000+00:00",
    "ended_at": "2026-11-29T10:00:00.010+00:00",
    "duration_ms": 10.0,
    "output": "[...]the end of a long output",
    "by": "orchestrator",
    "declared": "a" * 64,
    "thaw_declared": "b" * 64,
}


def call(phase: str = "pre", **changes: object) -> HookCall:
    base = HookCall(
        run_id="r-1",
        policy="shop",
        group="orders",
        member="db",
        machine=Machine(provider="local", member="db", machine_id="host-1"),
        phase=phase,  # type: ignore[arg-type]
        hook=PRE if phase == "pre" else POST,
        thaw=POST if phase == "pre" else None,
        max_freeze_seconds=30 if phase == "pre" else None,
        spec=MEMBER,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------ timeouts


def test_the_answer_timeout_is_the_hooks_budget_plus_per_attempt_and_fixed_slack() -> None:
    assert LOCAL.answer(PRE, "pre") == 10 * 2 + 1.5 * 2 + 5
    assert REMOTE.answer(PRE, "pre") == 10 * 2 + 1.5 * 2 + 20
    assert REMOTE.answer(POST, "post") == 5 + 1.5 + 20


def test_a_check_has_its_own_bound_whatever_the_hook() -> None:
    assert LOCAL.answer(PRE, "check") == 30
    assert REMOTE.answer(PRE, "check") == 60
    assert REMOTE.answer(None, "pre") == 60


def test_a_channels_execution_bound_lies_past_the_answer_timeout_in_whole_seconds() -> None:
    slow = Hook(run=["/opt/x"], timeout_seconds=100, retries=2)
    assert REMOTE.execution(slow, "pre") == 355  # ceil(300 + 4.5 + 20 + 30)
    assert REMOTE.execution(POST, "post") == 60  # never below a minute


# ------------------------------------------------------------------------------ the request


def test_a_pre_request_names_the_hook_and_expires_after_the_freeze_bound() -> None:
    request = Request.for_call(call("pre"), "pre", sent_at=1_800_000_000.0)
    assert request.document() == {
        "version": REQUEST_VERSION,
        "run_id": "r-1",
        "member": "db",
        "phase": "pre",
        "hook": "orders.db.pre",
        "expires_at": 1_800_000_030.0,
    }
    assert request.fields()["expires_at"] == "1800000030.000"
    parsed = parse_request(json.dumps(request.document()))  # the runner's own parser
    assert (parsed.hook, parsed.expires_at) == ("orders.db.pre", 1_800_000_030.0)


def test_without_a_send_time_or_outside_pre_nothing_expires() -> None:
    assert "expires_at" not in Request.for_call(call("pre"), "pre").document()
    assert Request.for_call(call("post"), "post", sent_at=1.0).expires_at is None
    assert Request.for_call(call("pre"), "check", sent_at=1.0).expires_at is None


def test_a_check_names_the_hook_of_the_calls_own_phase() -> None:
    request = Request.for_call(call("post"), "check")
    assert (request.phase, request.hook) == ("check", "orders.db.post")


def test_a_named_hook_is_sent_by_its_name() -> None:
    named = call("post", hook=Hook(name="pg.resume", run=["/opt/r"]))
    assert Request.for_call(named, "post").hook == "pg.resume"


def test_only_a_verify_carries_its_last_argument_as_the_restore_path() -> None:
    verify = call("verify", hook=POST, extra_args=("/restore/db",))
    assert Request.for_call(verify, "verify").restore_path == "/restore/db"
    assert Request.for_call(call("post", extra_args=("/x",)), "post").restore_path is None
    assert argument_problem(verify, "verify") is None
    problem = argument_problem(call("post", extra_args=("--fast",)), "post")
    assert problem is not None
    assert "declare the arguments" in problem


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"member": "x' ; sh -c 'id"}, "member"),
        ({"run_id": "r$(reboot)"}, "run_id"),
        ({"group": "orders/../../tmp"}, "hook"),
        ({"phase": "verify", "hook": POST, "extra_args": ("relative/path",)}, "restore_path"),
        ({"phase": "verify", "hook": POST, "extra_args": ("/restore/a\nb",)}, "restore_path"),
    ],
)
def test_what_the_runner_would_refuse_is_found_before_sending(
    change: dict[str, object], field: str
) -> None:
    bad = replace(call("post"), **change)  # type: ignore[arg-type]
    assert field in Request.for_call(bad, bad.phase).problems()


def test_numbers_are_formatted_to_the_millisecond() -> None:
    assert format_number(1_800_000_000.12345) == "1800000000.123"


# ------------------------------------------------------------------------------ the answer


def test_the_result_line_is_found_among_noise_and_keeps_the_check_digests() -> None:
    output = "a warning from the shell\n" + json.dumps(RESULT) + "\n\n"
    parsed = parse_answer(output)
    assert parsed is not None
    assert (parsed.declared, parsed.thaw_declared) == ("a" * 64, "b" * 64)
    assert parsed.output.startswith("[...]")  # the runner's truncation marker is kept
    assert parsed.signed is None


def test_a_channel_that_signs_answers_marks_the_result_signed() -> None:
    parsed = read_answer(json.dumps(RESULT), signed=True)
    assert not isinstance(parsed, str)
    assert parsed.signed is True


def test_no_result_is_never_a_guess_and_says_what_was_printed() -> None:
    line = json.dumps(RESULT)
    assert read_answer("") == "printed nothing"
    assert read_answer("Traceback: boom") == "printed no result"
    assert parse_answer(line[:-20]) is None  # cut short by a channel
    problem = read_answer(json.dumps({"status": "great"}))
    assert isinstance(problem, str)
    assert problem.startswith("printed no valid result")


# ------------------------------------------------------------------------------ results


def test_a_result_the_channel_makes_spans_the_whole_wait() -> None:
    clock = FakeClock()
    watch = Stopwatch(clock)
    clock.now += 42.5
    result = watch.no_answer("no answer from host-1 within 42.5s")
    assert (result.status, result.code) == (HookStatus.TIMED_OUT, "NoAnswer")
    assert result.duration_ms == 42_500.0
    assert result.started_at == watch.started
    assert result.ended_at is not None
    assert result.started_at is not None
    assert (result.ended_at - result.started_at).total_seconds() == 42.5
    assert "watchdog" in result.message


def test_a_refusal_before_sending_names_what_the_channel_carries() -> None:
    result = Stopwatch().bad_parameters(["member 'x' does not match"], "names only")
    assert (result.status, result.code) == (HookStatus.REFUSED, "BadParameter")
    assert result.message == "not sent: member 'x' does not match (names only)"


class ToyMember(MemberBase):
    """A member of a provider whose model declares the machines' OS."""

    provider: Literal["toy"] = "toy"
    os: Literal["linux", "windows"] = "linux"


def on(os_found: str | None, declared: str | None = None) -> HookCall:
    attributes = {} if os_found is None else {"os": os_found}
    spec = MEMBER if declared is None else ToyMember(name="db", os=declared)  # type: ignore[arg-type]
    target = Machine(provider="toy", member="db", machine_id="host-1", attributes=attributes)
    return call(machine=target, spec=spec)


def test_a_machine_the_inventory_or_the_member_calls_windows_is_refused() -> None:
    for windows in (on("windows"), on(None, "windows"), on("linux", "windows")):
        assert machine_os(windows) == "windows"
        refused = windows_refusal(windows, machine="VM", quiesced_by="VSS")
        assert refused is not None
        assert (refused.status, refused.code) == (HookStatus.REFUSED, "InvalidPlatform")
        assert refused.message == (
            "host-1 is a Windows VM: Windows members are quiesced by VSS, not by hooks"
        )


def test_other_machines_are_not_refused() -> None:
    for other in (on("linux"), on(None), on(None, "linux")):
        assert windows_refusal(other, machine="VM", quiesced_by="VSS") is None
    assert machine_os(on(None)) is None  # a local member declares no OS
    assert machine_os(on(None, "linux")) == "linux"


def test_channel_states_are_one_word_with_one_spelling_of_cancelled() -> None:
    assert state_word("In Progress") == "inprogress"
    assert state_word("Canceled") == state_word("Cancelled") == "cancelled"
    assert state_word(None) == ""


def test_a_channel_call_that_ended_is_the_runners_result_or_says_what_failed() -> None:
    watch = Stopwatch()
    common = {"error": "x" * 3000 + "Traceback: boom\n", "where": "on vm-1", "script": "the script"}

    answered = ended(watch, succeeded=False, output=json.dumps(RESULT), exit_code=1, **common)
    silent = ended(watch, succeeded=True, output="noise\n", exit_code=0, **common)
    broken = ended(watch, succeeded=False, output="", exit_code=127, **common)

    assert answered.code == "Allowed"  # the runner's own answer, whatever the channel says
    assert (silent.code, silent.exit_code) == ("RunnerError", 0)
    assert silent.message.startswith("the hook runner printed no result on vm-1")
    assert (broken.code, broken.exit_code) == ("ExecutionFailed", 127)
    assert broken.message.startswith("the script failed on vm-1 with exit code 127")
    assert broken.message.endswith("Traceback: boom")
    assert len(broken.message) < 1600  # only the end of stderr
