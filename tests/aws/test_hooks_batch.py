"""SsmHookRunner.run_many: the hooks of a phase sent as one SendCommand per member and 50
instances, followed together, each call answered as `run` would answer it alone.

On moto's SSM. moto answers every invocation Success with empty output and adds every instance
of the region to a command; tests set what each instance answered by editing moto's invocation
records right after SendCommand. moto has no ListCommandInvocations: `ListedLikeSsm` answers it
in botocore's event chain of the runner's own client, from moto's records of the command and
only for the instances the command was sent to, as SSM does (plugin output cut at 2,500
characters, pages with NextToken). Without it the runner follows with GetCommandInvocation,
which moto implements: the failure paths are run both ways.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from quiesce.policy.model import LocalMember
from quiesce.record import HookResult, HookStatus
from quiesce_aws.clients import SessionClients
from quiesce_aws.hooks import MAX_INSTANCES_PER_COMMAND, SsmHookRunner

from .conftest import (
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


class ListedLikeSsm:
    """ListCommandInvocations (Details=true) for an SSM client on moto, from moto's records."""

    def __init__(self, ssm: Any, page_size: int = 50) -> None:
        self.page_size = page_size
        self.sent: dict[str, list[str]] = {}  # command id -> the instance ids it was sent to
        self.pages: list[tuple[str, int]] = []  # (command id, invocations listed) per call
        events = ssm.meta.events
        for operation in ("SendCommand", "ListCommandInvocations"):
            events.register(f"before-parameter-build.ssm.{operation}", self._keep)
        events.register("after-call.ssm.SendCommand", self._sent)
        events.register("before-call.ssm.ListCommandInvocations", self._list)

    def _keep(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_params"] = dict(params)

    def _sent(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Command" in parsed:
            self.sent[parsed["Command"]["CommandId"]] = list(context["test_params"]["InstanceIds"])

    def _list(self, context: dict[str, Any], **_: Any) -> tuple[Any, Any]:
        params = context["test_params"]
        command_id = params["CommandId"]
        assert params.get("Details") is True, "the runner reads the outputs from the list"
        ids = self.sent.get(command_id, [])
        mine = [i for i in moto_invocations(command_id) if i["InstanceId"] in ids]
        start = int(params.get("NextToken") or 0)
        size = min(self.page_size, int(params.get("MaxResults") or 50))
        page = mine[start : start + size]
        self.pages.append((command_id, len(page)))
        parsed: dict[str, Any] = {
            "CommandInvocations": [self._item(command_id, i) for i in page],
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}},
        }
        if start + len(page) < len(mine):
            parsed["NextToken"] = str(start + len(page))
        return AWSResponse("https://ssm.invalid", 200, HTTPHeaders(), None), parsed

    @staticmethod
    def _item(command_id: str, invocation: dict[str, Any]) -> dict[str, Any]:
        output = str(invocation.get("StandardOutputContent") or "")
        error = str(invocation.get("StandardErrorContent") or "")
        if error:
            output += f"\n----------ERROR-------\n{error}"
        return {
            "CommandId": command_id,
            "InstanceId": invocation["InstanceId"],
            "Status": invocation["Status"],
            "StatusDetails": invocation["StatusDetails"],
            "CommandPlugins": [
                {
                    "Name": "runHook",
                    "Status": invocation["Status"],
                    "ResponseCode": invocation.get("ResponseCode", 0),
                    "Output": output[:2500],
                }
            ],
        }


@pytest.fixture
def ssm(clients: SessionClients) -> Any:
    return clients.ssm(REGION)


@pytest.fixture
def runner(clients: SessionClients, clock: FakeClock, sleeps: Sleeps) -> SsmHookRunner:
    return SsmHookRunner(clients, backoff=quick_backoff(sleeps), clock=clock, sleep=sleeps)


@pytest.fixture(params=["list", "get"])
def follow(request: pytest.FixtureRequest, ssm: Any) -> ListedLikeSsm | None:
    """How the runner reads the answers: ListCommandInvocations, or (where that call is
    missing, as on moto alone) GetCommandInvocation per instance."""
    return ListedLikeSsm(ssm) if request.param == "list" else None


def ok(result: HookResult | BaseException) -> HookResult:
    assert isinstance(result, HookResult), result
    return result


def answers(wire: Wire, ssm: Any, by_instance: dict[str, dict[str, Any]]) -> None:
    """What each instance answers (the fields of its invocation); others: the runner's success."""
    success = {"StandardOutputContent": runner_result() + "\n"}

    def answer(_command: str, invocation: dict[str, Any]) -> dict[str, Any]:
        return by_instance.get(invocation["InstanceId"], success)

    on_send_command(wire, ssm, answer)


def ssm_state(status: str, details: str, output: str = "", code: int = 1) -> dict[str, Any]:
    return {
        "Status": status,
        "StatusDetails": details,
        "StandardOutputContent": output,
        "StandardErrorContent": "something went wrong",
        "ResponseCode": code,
    }


#: What an instance's invocation may come to, and what the call's result must then be.
OUTCOMES: dict[str, tuple[dict[str, Any], tuple[HookStatus, str]]] = {
    "succeeded": (
        ssm_state("Success", "Success", runner_result() + "\n", 0),
        (HookStatus.SUCCEEDED, "Succeeded"),
    ),
    "the hook failed": (
        ssm_state("Failed", "Failed", runner_result("failed", "ExecutionFailed") + "\n"),
        (HookStatus.FAILED, "ExecutionFailed"),
    ),
    "the runner refused": (
        ssm_state("Failed", "Failed", runner_result("refused", "HookNotDeclared") + "\n"),
        (HookStatus.REFUSED, "HookNotDeclared"),
    ),
    "no result printed": (ssm_state("Success", "Success", ""), (HookStatus.FAILED, "RunnerError")),
    "undeliverable": (ssm_state("Failed", "Undeliverable"), (HookStatus.FAILED, "Undeliverable")),
    "delivery timed out": (
        ssm_state("TimedOut", "Delivery Timed Out"),
        (HookStatus.TIMED_OUT, "TimedOut"),
    ),
    "access denied on the instance": (
        ssm_state("Failed", "AccessDenied"),
        (HookStatus.REFUSED, "AccessDenied"),
    ),
    "no answer": (ssm_state("InProgress", "InProgress"), (HookStatus.TIMED_OUT, "NoAnswer")),
}


#: Outcomes whose result the runner makes (the others are the guest runner's own answer).
MADE_BY_THE_CHANNEL = {
    "no result printed",
    "undeliverable",
    "delivery timed out",
    "access denied on the instance",
    "no answer",
}


# ------------------------------------------------------------------------- one call, one answer


def test_each_instance_of_one_command_is_answered_as_run_answers_it_alone(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    follow: ListedLikeSsm | None,
) -> None:
    ids = fleet.launch(len(OUTCOMES), data_volumes=0)
    outcome_of = dict(zip(ids, OUTCOMES, strict=True))
    answers(wire, ssm, {i: OUTCOMES[name][0] for i, name in outcome_of.items()})
    sent = wire.sent(ssm, "SendCommand")

    batch = [ok(r) for r in runner.run_many([hook_call(machine(i)) for i in ids])]

    assert len(sent) == 1  # one member, one phase, one command
    for instance_id, result in zip(ids, batch, strict=True):
        expected = OUTCOMES[outcome_of[instance_id]][1]
        assert (result.status, result.code) == expected, (outcome_of[instance_id], result)
        if outcome_of[instance_id] in MADE_BY_THE_CHANNEL:
            assert instance_id in result.message, result
        assert result.ended_at is not None
    alone = [runner.run(hook_call(machine(i))) for i in ids]
    assert [(r.status, r.code) for r in alone] == [(r.status, r.code) for r in batch]


def test_results_come_back_in_the_order_of_the_calls_whatever_command_carried_them(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    follow: ListedLikeSsm | None,
) -> None:
    ids = fleet.launch(6, data_volumes=0)
    (windows,) = fleet.launch(1, data_volumes=0, windows=True)
    answers(
        wire,
        ssm,
        {i: {"StandardOutputContent": runner_result(message=i) + "\n"} for i in ids},
    )
    sent = wire.sent(ssm, "SendCommand")
    members = ["db", "web", "db", "web", "db", "web"]
    calls = [hook_call(machine(i, m)) for i, m in zip(ids, members, strict=True)]
    calls.insert(3, hook_call(machine(windows, "web", os="windows")))
    calls.append(hook_call(machine(ids[0], "db"), "post"))  # the same machine, another phase
    order = [*reversed(calls[:4]), *calls[4:]]

    results = runner.run_many(order)

    assert len(results) == len(order)
    for call, result in zip(order, results, strict=True):
        if call.machine.machine_id == windows:
            assert (ok(result).status, ok(result).code) == (HookStatus.REFUSED, "InvalidPlatform")
        else:
            assert ok(result).message == call.machine.machine_id
    # db pre, web pre, db post: the Windows machine is never sent anything
    assert sorted(len(c["InstanceIds"]) for c in sent) == [1, 3, 3]
    assert all(windows not in c["InstanceIds"] for c in sent)


def test_calls_that_cannot_be_sent_are_answered_without_holding_back_the_others(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
) -> None:
    good, hostile = fleet.launch(2, data_volumes=0)
    answered_by_runner(wire, ssm)
    sent = wire.sent(ssm, "SendCommand")
    elsewhere = LocalMember(name="db", provider="local", volumes=["/data"])
    other = replace(hook_call(machine(good, "db", region="")), spec=elsewhere)
    bad_name = replace(hook_call(machine(hostile)), run_id="r$(reboot)")

    results = runner.run_many([other, hook_call(machine(good)), bad_name])

    assert getattr(results[0], "code", None) == "WrongProvider"
    assert ok(results[1]).code == "Succeeded"
    assert (ok(results[2]).status, ok(results[2]).code) == (HookStatus.REFUSED, "BadParameter")
    assert [c["InstanceIds"] for c in sent] == [[good]]


# --------------------------------------------------------------------------- sending failures


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ThrottlingException", (HookStatus.FAILED, "ThrottlingException")),
        ("AccessDeniedException", (HookStatus.REFUSED, "AccessDenied")),
        ("InvalidDocument", (HookStatus.FAILED, "InvalidDocument")),
    ],
)
def test_a_command_that_is_not_sent_fails_its_own_calls_only(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    follow: ListedLikeSsm | None,
    code: str,
    expected: tuple[HookStatus, str],
) -> None:
    ids = fleet.launch(4, data_volumes=0)
    members = ["db", "web", "db", "web"]
    answered_by_runner(wire, ssm)
    wire.fail(
        ssm, "SendCommand", code, times=100, when=lambda p: p["Parameters"]["Member"] == ["web"]
    )

    results = runner.run_many([hook_call(machine(i, m)) for i, m in zip(ids, members, strict=True)])

    got = [(ok(r).status, ok(r).code) for r in results]
    succeeded = (HookStatus.SUCCEEDED, "Succeeded")
    assert got == [succeeded, expected, succeeded, expected]


def test_a_throttled_send_is_retried_and_its_whole_batch_then_answers(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    sleeps: Sleeps,
    follow: ListedLikeSsm | None,
) -> None:
    ids = fleet.launch(30, data_volumes=0)
    answered_by_runner(wire, ssm)
    sent = wire.sent(ssm, "SendCommand")
    wire.fail(ssm, "SendCommand", "ThrottlingException", times=2)

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == ["Succeeded"] * 30
    assert len(sent) == 3  # the one command, twice refused, then through
    assert sleeps.waits[:2] == [0.05, 0.1]


def test_instances_ssm_does_not_manage_are_found_by_halving_and_fail_alone(
    runner: SsmHookRunner,
    ssm: Any,
    fleet: Fleet,
    wire: Wire,
    follow: ListedLikeSsm | None,
) -> None:
    ids = fleet.launch(MAX_INSTANCES_PER_COMMAND, data_volumes=0)
    bad = {ids[7], ids[31]}
    answered_by_runner(wire, ssm)
    sent = wire.sent(ssm, "SendCommand")
    wire.fail(
        ssm,
        "SendCommand",
        "InvalidInstanceId",
        times=1000,
        when=lambda p: bool(bad & set(p["InstanceIds"])),
    )

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    codes = {i: ok(r).code for i, r in zip(ids, results, strict=True)}
    assert {i: c for i, c in codes.items() if c != "Succeeded"} == dict.fromkeys(
        bad, "Undeliverable"
    )
    delivered = [i for c in sent for i in c["InstanceIds"] if not bad & set(c["InstanceIds"])]
    assert sorted(delivered) == sorted(set(ids) - bad)  # every good instance got it once
    assert len(sent) <= 2 * 2 * 6 + 1  # two culprits, a halving of depth 6 each


# --------------------------------------------------------------------------- following failures


def test_a_throttled_list_is_retried_within_its_round(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    throttled = wire.fail(ssm, "ListCommandInvocations", "ThrottlingException", times=2)
    listed = ListedLikeSsm(ssm)  # answers what the throttling lets through
    ids = fleet.launch(10, data_volumes=0)
    answered_by_runner(wire, ssm)
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == ["Succeeded"] * 10
    assert throttled == [0]
    assert len(listed.pages) == 1  # the two throttled calls never reached the answerer
    assert gets == []
    assert runner.use_list is True


def test_a_list_that_stays_throttled_gives_up_at_the_budget_naming_the_polling_error(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, clock: FakeClock
) -> None:
    wire.fail(ssm, "ListCommandInvocations", "ThrottlingException", times=10_000)
    listed = ListedLikeSsm(ssm)
    ids = fleet.launch(3, data_volumes=0)
    answered_by_runner(wire, ssm)
    gets = wire.sent(ssm, "GetCommandInvocation")
    started = clock.now

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    for instance_id, result in zip(ids, results, strict=True):
        assert (ok(result).status, ok(result).code) == (HookStatus.TIMED_OUT, "NoAnswer")
        assert instance_id in ok(result).message
        assert "ThrottlingException" in ok(result).message
    assert gets == []  # throttling is waited out, not worked around with more calls
    assert listed.pages == []
    assert clock.now - started >= 5 + 1.5 + 20  # the hook's budget, not less


def test_a_list_call_the_role_may_not_make_falls_back_to_one_get_per_instance(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    denied = wire.fail(ssm, "ListCommandInvocations", "AccessDeniedException", times=1)
    listed = ListedLikeSsm(ssm)
    ids = fleet.launch(4, data_volumes=0)
    answers(wire, ssm, {ids[1]: OUTCOMES["the hook failed"][0]})
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == [
        "Succeeded",
        "ExecutionFailed",
        "Succeeded",
        "Succeeded",
    ]
    assert denied == [0]
    assert listed.pages == []
    assert runner.use_list is False
    assert sorted(g["InstanceId"] for g in gets) == sorted(ids)


def test_a_command_is_listed_page_by_page(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    listed = ListedLikeSsm(ssm, page_size=20)
    ids = fleet.launch(MAX_INSTANCES_PER_COMMAND, data_volumes=0)
    answers(wire, ssm, {ids[45]: OUTCOMES["the runner refused"][0]})
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    codes = [ok(r).code for r in results]
    assert codes[45] == "HookNotDeclared"  # on the last page
    assert codes[:45] + codes[46:] == ["Succeeded"] * 49
    assert [n for _, n in listed.pages] == [20, 20, 10]
    assert gets == []


def test_only_commands_with_instances_still_running_are_listed_again(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire, sleeps: Sleeps
) -> None:
    listed = ListedLikeSsm(ssm)
    db = fleet.launch(3, data_volumes=0)
    web = fleet.launch(3, data_volumes=0)
    answers(wire, ssm, {web[0]: OUTCOMES["no answer"][0]})
    rounds = [0]

    def finish_later(parsed: dict[str, Any]) -> None:
        rounds[0] += 1
        if rounds[0] == 3:  # after web's second list: its third sees the answer
            (command_id,) = [c for c, sent in listed.sent.items() if web[0] in sent]
            (invocation,) = [i for i in moto_invocations(command_id) if i["InstanceId"] == web[0]]
            invocation.update(OUTCOMES["succeeded"][0])

    wire.after(ssm, "ListCommandInvocations", finish_later)
    calls = [hook_call(machine(i, "db")) for i in db] + [hook_call(machine(i, "web")) for i in web]

    results = runner.run_many(calls)

    assert [ok(r).code for r in results] == ["Succeeded"] * 6
    by_command: dict[str, int] = {}
    for command_id, _ in listed.pages:
        by_command[command_id] = by_command.get(command_id, 0) + 1
    assert sorted(by_command.values()) == [1, 3]
    assert sleeps.waits == [0.5, 0.75]


def test_an_output_cut_by_the_list_is_read_whole_for_that_instance_only(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    ListedLikeSsm(ssm)
    ids = fleet.launch(20, data_volumes=0)
    long = runner_result(output="x" * 4000) + "\n"
    answers(wire, ssm, {ids[3]: {"StandardOutputContent": long}})
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == ["Succeeded"] * 20
    assert ok(results[3]).output == "x" * 4000
    assert [g["InstanceId"] for g in gets] == [ids[3]]


# ------------------------------------------------------------------------------ economy


def test_a_phase_of_100_instances_is_two_sends_and_two_lists(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    listed = ListedLikeSsm(ssm)
    ids = fleet.launch(100, data_volumes=0)
    answered_by_runner(wire, ssm)
    sent = wire.sent(ssm, "SendCommand")
    gets = wire.sent(ssm, "GetCommandInvocation")

    results = runner.run_many([hook_call(machine(i)) for i in ids])

    assert [ok(r).code for r in results] == ["Succeeded"] * 100
    assert [len(c["InstanceIds"]) for c in sent] == [50, 50]
    assert len({c["Parameters"]["ExpiresAt"][0] for c in sent}) == 1  # one request, twice
    assert len(listed.pages) == 2
    assert gets == []


def test_the_commands_of_many_members_are_polled_together_not_one_after_the_other(
    runner: SsmHookRunner, ssm: Any, fleet: Fleet, wire: Wire
) -> None:
    listed = ListedLikeSsm(ssm)
    ids = fleet.launch(3, data_volumes=0)
    answered_by_runner(wire, ssm)
    # Each member's list call waits for the other two: only polls in flight together pass.
    together = threading.Barrier(3, timeout=30)

    def wait_for_the_others(_parsed: dict[str, Any]) -> None:
        together.wait()

    wire.after(ssm, "ListCommandInvocations", wait_for_the_others)

    results = runner.run_many([hook_call(machine(i, f"m{n}")) for n, i in enumerate(ids)])

    assert [ok(r).code for r in results] == ["Succeeded"] * 3
    assert len(listed.pages) == 3
    assert not together.broken
