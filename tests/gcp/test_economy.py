"""What a run asks of Compute Engine and Firestore, counted exactly where the requests arrive:
one guest-attributes read per round per VM (all keys of the namespace at once, none right
after the command is written), a run's snapshot states in one snapshots.list per round (a
request per page of 500), never a get per snapshot or operation, a recovery point written
with its run in one commit, and a trigger claim, a free lock and its release one commit each.
Clocks are fakes that move only when the adapters sleep: no test here waits on time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from quiesce.ports import HookCall, Machine, SnapshotCall
from quiesce.record import HookStatus, SnapshotState, utcnow
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AFTER_PACING, PRE_PACING, AgentHookRunner
from quiesce_gcp.member import GcpMember
from quiesce_gcp.quiesce_agent import answer_signature, canonical
from quiesce_gcp.signing import instance_path
from quiesce_gcp.snapshots import GceSnapshotter, label_value
from quiesce_gcp.state import FirestoreStateStore
from tests.contracts.state_store import point as recovery_point
from tests.contracts.state_store import run_record

from .conftest import PROJECT, ZONE, Fleet
from .emulators import FirestoreEmulator, firestore_emulator, unique_prefix
from .fake_compute import FakeCompute
from .test_agent import one_vm_policy

__all__ = ["firestore_emulator"]

RUN = "20261202T100000Z-ABC123"


def requests(compute: FakeCompute, method: str, suffix: str) -> int:
    """How many requests the fake got with this method whose path ends with `suffix`."""
    with compute.lock:
        return sum(1 for m, path in compute.requests if m == method and path.endswith(suffix))


# ------------------------------------------------------------------------------ hook answers


class AnswerAfter:
    """A clock that moves only when the runner sleeps; during the `rounds`-th sleep, the VM's
    agent answers the command in its metadata (signed with the VM's key, as the agent does)."""

    def __init__(self, fleet: Fleet, compute: FakeCompute, vm: str, rounds: int) -> None:
        self.fleet, self.compute, self.vm, self.rounds = fleet, compute, vm, rounds
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.waits.append(seconds)
        if len(self.waits) == self.rounds:
            self.answer()

    def answer(self) -> None:
        value = self.compute.metadata_value(PROJECT, ZONE, self.vm, "quiesce-command")
        assert value is not None
        command = json.loads(json.loads(value)["command"])
        key = f"{command['run_id']}-{command['member']}-{command['phase']}"
        result = canonical(
            {"status": "succeeded", "code": "Succeeded", "message": "ok", "exit_code": 0,
             "attempts": 1, "duration_ms": 1.0, "output": "", "by": "orchestrator"}
        )  # fmt: skip
        own = self.fleet.keys.for_instance(instance_path(PROJECT, ZONE, self.vm))
        signature = answer_signature(own, command["nonce"], key, result)
        answer = {"nonce": command["nonce"], "result": result, "sig": signature}
        self.compute.put_guest_attribute(PROJECT, ZONE, self.vm, "quiesce", key, json.dumps(answer))


def hook_call(fleet: Fleet, phase: str) -> HookCall:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy, agent=False)  # the test's clock answers instead
    member = policy.groups["orders"].members[0]
    assert member.hooks.pre is not None
    assert member.hooks.post is not None
    hook = member.hooks.pre if phase == "pre" else member.hooks.post
    machine = Machine("gcp", "db", "db-vm", attributes={"project": PROJECT, "zone": ZONE})
    return HookCall(RUN, "shop", "orders", "db", machine, phase, hook, spec=member)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phase", "rounds", "waits"),
    [
        ("pre", 1, [0.4]),
        ("pre", 5, [0.4, 0.6, 0.9, 1.0, 1.0]),  # never more than a poll interval unread
        ("post", 1, [1.0]),
        ("post", 4, [1.0, 2.0, 4.0, 4.0]),
    ],
)
def test_each_round_reads_the_vms_guest_attributes_once_and_none_comes_before_the_first_wait(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, phase: str, rounds: int,
    waits: list[float],
) -> None:  # fmt: skip
    call = hook_call(fleet, phase)
    # Answers of earlier commands sit in the same namespace: one read returns them all.
    for old in ("20261201T100000Z-OLD-db-pre", "20261201T100000Z-OLD-db-post"):
        compute.put_guest_attribute(PROJECT, ZONE, "db-vm", "quiesce", old, '{"nonce": "x"}')
    clock = AnswerAfter(fleet, compute, "db-vm", rounds)
    runner = AgentHookRunner(
        clients, keys=fleet.keys, poll_interval=1.0, sleep=clock.sleep, clock=clock
    )

    result = runner.run(call)

    assert (result.status, result.code) == (HookStatus.SUCCEEDED, "Succeeded"), result.message
    assert clock.waits == pytest.approx(waits)
    assert requests(compute, "GET", "/instances/db-vm/getGuestAttributes") == rounds
    assert requests(compute, "GET", "/instances/db-vm") == 1  # the metadata's fingerprint
    assert requests(compute, "POST", "/instances/db-vm/setMetadata") == 1


def test_the_pacing_bounds_a_pre_answers_wait_by_one_poll_interval() -> None:
    def first(pacing: Any, n: int, interval: float) -> list[float]:
        waits: Iterator[float] = pacing.waits(interval)
        return [next(waits) for _ in range(n)]

    assert max(first(PRE_PACING, 20, 0.5)) == 0.5
    assert first(PRE_PACING, 3, 0.5) == pytest.approx([0.2, 0.3, 0.45])
    assert max(first(AFTER_PACING, 20, 0.5)) == 2.0
    assert first(AFTER_PACING, 3, 0.5) == pytest.approx([0.5, 1.0, 2.0])


def test_no_answer_costs_a_read_per_round_until_the_budget_is_spent(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    call = hook_call(fleet, "post")
    clock = AnswerAfter(fleet, compute, "db-vm", rounds=0)  # nobody answers
    runner = AgentHookRunner(
        clients,
        keys=fleet.keys,
        poll_interval=1.0,
        answer_timeout=lambda hook, phase: 12.0,
        sleep=clock.sleep,
        clock=clock,
    )

    result = runner.run(call)

    assert (result.status, result.code) == (HookStatus.TIMED_OUT, "NoAnswer")
    assert clock.waits == pytest.approx([1.0, 2.0, 4.0, 4.0, 1.0])  # the last one: to the end
    assert requests(compute, "GET", "/instances/db-vm/getGuestAttributes") == 5


# ------------------------------------------------------------------------------ snapshots


def member() -> GcpMember:
    return GcpMember.model_validate(
        {"name": "db", "provider": "gcp", "project": PROJECT, "zone": ZONE,
         "select": {"labels": {"role": "db"}}}
    )  # fmt: skip


def snapshot_calls(compute: FakeCompute, count: int, run: str = RUN) -> list[SnapshotCall]:
    calls = []
    for n in range(count):
        inst = compute.add_instance(PROJECT, ZONE, f"db-{n}", data_disks=1)
        machine = Machine(
            "gcp", "db", f"db-{n}", tuple(d["source"] for d in inst["disks"]),
            {"project": PROJECT, "zone": ZONE},
        )  # fmt: skip
        calls.append(
            SnapshotCall(run, "shop", "orders", "db", machine, "rp-1", "application", spec=member())
        )
    return calls


def snapper(clients: GcpClients) -> GceSnapshotter:
    return GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.0)


def test_a_runs_snapshot_states_are_read_in_one_listing_per_round(
    compute: FakeCompute, clients: GcpClients
) -> None:
    other = snapshot_calls(compute, 1, run="20261201T100000Z-EARLIER")
    snapper(clients).take(other[0])  # another run's snapshots share the project
    with compute.lock:
        compute.requests.clear()
    calls = [c for c in snapshot_calls(compute, 3)]
    s = snapper(clients)

    taken = s.take_many(calls)

    refs = [ref for result in taken for ref in result]  # type: ignore[union-attr]
    assert len(refs) == 6
    assert all(ref.tags["status"] == "UPLOADING" for ref in refs)
    assert requests(compute, "POST", "/createSnapshot") == 6
    # The fake shows each snapshot CREATING, then UPLOADING: two rounds, one listing each.
    assert requests(compute, "GET", "/global/snapshots") == 2
    assert requests(compute, "GET", "/operations/") == 0
    with compute.lock:
        gets = [p for m, p in compute.requests if m == "GET" and "/global/snapshots/" in p]
    assert gets == []

    done = s.wait_durable(refs, timeout=10)

    assert [r.state for r in done] == [SnapshotState.COMPLETED] * 6
    assert requests(compute, "GET", "/global/snapshots") == 3  # one more round: READY
    with compute.lock:
        gets = [p for m, p in compute.requests if m == "GET" and "/global/snapshots/" in p]
    assert gets == []
    # The earlier run's snapshots were never read: the listing is filtered on the run.
    earlier = [snap for (_, _), snap in compute.snapshots.items()
               if snap["labels"]["quiesce-run"] == label_value(other[0].run_id)]  # fmt: skip
    assert [snap["status"] for snap in earlier] == ["UPLOADING", "UPLOADING"]


def test_a_listing_is_one_request_per_page_of_500(
    compute: FakeCompute, clients: GcpClients
) -> None:
    labels = {
        "quiesce-managed": "true", "quiesce-policy": "shop", "quiesce-group": "orders",
        "quiesce-run": label_value(RUN),
    }  # fmt: skip
    with compute.lock:
        for n in range(501):
            name = f"q-disk-{n:04d}"
            compute.snapshots[(PROJECT, name)] = {
                "name": name,
                "status": "CREATING",
                "labels": dict(labels),
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/snapshots/{name}",
            }
    s = snapper(clients)
    refs = s.find("shop", "orders", RUN)  # shows each CREATING
    assert len(refs) == 501
    with compute.lock:
        compute.requests.clear()

    done = s.wait_durable(refs, timeout=10)

    assert {r.state for r in done} == {SnapshotState.COMPLETED}
    assert requests(compute, "GET", "/global/snapshots") == 4  # 2 rounds of 2 pages


def test_a_failed_disk_costs_no_poll_and_its_machines_other_snapshot_is_deleted(
    compute: FakeCompute, clients: GcpClients
) -> None:
    calls = snapshot_calls(compute, 2)
    compute.fail_disks.add("db-1-data1")

    taken = snapper(clients).take_many(calls)

    assert isinstance(taken[0], list)
    assert len(taken[0]) == 2
    assert isinstance(taken[1], Exception)
    assert "I/O error" in str(taken[1])
    assert sorted(name for (_, name) in compute.snapshots) == sorted(r.id for r in taken[0])
    # The failed create's operation answered at once, done with its error: nothing to poll.
    assert requests(compute, "GET", "/operations/") == 0
    assert requests(compute, "GET", "/global/snapshots") == 2
    # The label check before deleting db-1's boot snapshot, and the delete.
    with compute.lock:
        gets = [p for m, p in compute.requests if m == "GET" and "/global/snapshots/" in p]
        deletes = [p for m, p in compute.requests if m == "DELETE"]
    assert len(gets) == 1
    assert len(deletes) == 1


# ------------------------------------------------------------------------------ Firestore


class Counted:
    """Firestore gRPC calls by method, counted at the client."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        counted = self

        class Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
            def intercept_unary_unary(self, go: Callable[..., Any], details: Any, req: Any) -> Any:
                counted.calls.append(details.method.rsplit("/", 1)[-1])
                return go(details, req)

            def intercept_unary_stream(self, go: Callable[..., Any], details: Any, req: Any) -> Any:
                counted.calls.append(details.method.rsplit("/", 1)[-1])
                return go(details, req)

        interceptor = Interceptor()

        class Client(firestore.Client):  # type: ignore[misc]
            def _emulator_channel(self, transport: Any) -> Any:
                return grpc.intercept_channel(super()._emulator_channel(transport), interceptor)

        self.client = Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


def test_a_recovery_point_and_its_run_are_one_commit(firestore_emulator: FirestoreEmulator) -> None:
    counted = Counted()
    store = FirestoreStateStore(counted.client, unique_prefix())
    point = recovery_point("rp-economy")
    record = run_record(point.run_id)

    store.record_point(point, record)

    assert counted.calls == ["Commit"]
    assert store.get_point(point.id) is not None
    assert store.get_run(record.run_id) is not None


def test_a_free_trigger_is_claimed_with_one_create_and_a_claimed_one_costs_a_read_more(
    firestore_emulator: FirestoreEmulator,
) -> None:
    counted = Counted()
    store = FirestoreStateStore(counted.client, unique_prefix())

    assert store.claim_trigger("evt-1", RUN) is None
    assert counted.calls == ["Commit"]

    counted.calls.clear()
    assert store.claim_trigger("evt-1", "20261202T110000Z-OTHER1") == RUN
    assert counted.calls == ["Commit", "BatchGetDocuments"]  # refused create, the holder

    counted.calls.clear()
    assert store.claim_trigger("evt-1", RUN) is None  # a retry by the same run
    assert counted.calls == ["Commit", "BatchGetDocuments"]


def test_a_free_lock_and_its_release_are_one_commit_each(
    firestore_emulator: FirestoreEmulator,
) -> None:
    counted = Counted()
    store = FirestoreStateStore(counted.client, unique_prefix())
    until = utcnow() + timedelta(minutes=10)

    assert store.acquire_lock("shop/orders", RUN, until) is None
    assert counted.calls == ["Commit"]

    counted.calls.clear()
    store.release_lock("shop/orders", RUN)
    assert counted.calls == ["Commit"]  # a delete conditional on our own write's time

    counted.calls.clear()
    assert store.acquire_lock("shop/orders", "20261202T110000Z-NEXT01", until) is None
    assert counted.calls == ["Commit"]  # released: free again


def test_a_held_lock_costs_a_refused_create_and_a_read_and_an_expired_one_a_write_more(
    firestore_emulator: FirestoreEmulator,
) -> None:
    counted = Counted()
    prefix = unique_prefix()
    store = FirestoreStateStore(counted.client, prefix)
    until = utcnow() + timedelta(minutes=10)
    store.acquire_lock("held", "20261202T090000Z-HOLDER", until)
    store.acquire_lock("expired", "20261202T090000Z-DEAD01", utcnow() - timedelta(seconds=1))

    counted.calls.clear()
    holder = store.acquire_lock("held", RUN, until)
    assert holder is not None
    assert holder.run_id == "20261202T090000Z-HOLDER"
    assert counted.calls == ["Commit", "BatchGetDocuments"]

    counted.calls.clear()
    assert store.acquire_lock("expired", RUN, until) is None
    assert counted.calls == ["Commit", "BatchGetDocuments", "Commit"]  # the conditional update

    counted.calls.clear()
    store.release_lock("expired", RUN)  # its update's time was remembered
    assert counted.calls == ["Commit"]


def test_a_lock_released_by_a_store_that_did_not_take_it_is_read_then_deleted(
    firestore_emulator: FirestoreEmulator,
) -> None:
    """`quiesce recover` in another process closes a run whose lock it never took."""
    prefix = unique_prefix()
    taker = FirestoreStateStore(Counted().client, prefix)
    taker.acquire_lock("shop/orders", RUN, utcnow() + timedelta(minutes=10))
    counted = Counted()
    closer = FirestoreStateStore(counted.client, prefix)

    closer.release_lock("shop/orders", "20261202T110000Z-NOTOURS")  # not the holder: kept
    assert counted.calls == ["BatchGetDocuments"]

    counted.calls.clear()
    closer.release_lock("shop/orders", RUN)
    assert counted.calls == ["BatchGetDocuments", "Commit"]
    assert closer.acquire_lock("shop/orders", "20261202T120000Z-AFTER1", utcnow()) is None


def test_a_release_after_the_lock_was_taken_over_does_not_delete_the_new_holders(
    firestore_emulator: FirestoreEmulator,
) -> None:
    """The remembered write is stale: its conditional delete is refused, the lock is read and
    left to its new holder."""
    prefix = unique_prefix()
    counted = Counted()
    old = FirestoreStateStore(counted.client, prefix)
    old.acquire_lock("k", RUN, utcnow() - timedelta(seconds=1))  # expired at once
    new = FirestoreStateStore(Counted().client, prefix)
    until = utcnow() + timedelta(minutes=10)
    assert new.acquire_lock("k", "20261202T110000Z-NEWRUN", until) is None

    counted.calls.clear()
    old.release_lock("k", RUN)

    assert counted.calls == ["Commit", "BatchGetDocuments"]  # refused, then read: not ours
    holder = new.acquire_lock("k", "20261202T120000Z-THIRD1", until)
    assert holder is not None
    assert holder.run_id == "20261202T110000Z-NEWRUN"
