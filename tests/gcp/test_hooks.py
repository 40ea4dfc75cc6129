"""AgentHookRunner's own results through the real Compute client, the fake API and the fake
metadata server: a call that gets no answer records when it really started and how long it
was waited for."""

from __future__ import annotations

from quiesce.ports import HookCall, Machine
from quiesce.record import HookStatus, utcnow
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AgentHookRunner

from .conftest import PROJECT, ZONE, Fleet
from .test_agent import one_vm_policy


class FakeClock:
    """A monotonic clock that moves only when the runner sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_call_without_an_answer_records_its_real_start_and_the_whole_wait(
    fleet: Fleet, clients: GcpClients
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy, agent=False)  # nobody on the VM answers
    clock = FakeClock()
    runner = AgentHookRunner(
        clients,
        keys=fleet.keys,
        poll_interval=1.0,
        answer_timeout=lambda hook, phase: 12.0,
        sleep=clock.sleep,
        clock=clock,
    )
    member = policy.groups["orders"].members[0]
    assert member.hooks.post is not None
    machine = Machine("gcp", "db", "db-vm", attributes={"project": PROJECT, "zone": ZONE})
    call = HookCall(
        "run-1", "shop", "orders", "db", machine, "post", member.hooks.post, spec=member
    )
    before = utcnow()

    result = runner.run(call)

    assert (result.status, result.code) == (HookStatus.TIMED_OUT, "NoAnswer")
    assert result.started_at is not None
    assert result.ended_at is not None
    assert before <= result.started_at  # taken before the command was written...
    assert result.started_at < result.ended_at  # ...not when the wait ended
    assert result.duration_ms is not None
    assert result.duration_ms >= 12_000.0  # the whole budget, not 0 ms
    assert (result.ended_at - result.started_at).total_seconds() * 1000 == result.duration_ms
