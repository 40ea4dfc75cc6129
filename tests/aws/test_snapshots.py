"""EbsSnapshotter: CreateSnapshots per instance with Quiesce's tags, durability, deletion of own
snapshots only, listing by tags — and Windows through AWSEC2-CreateVssSnapshot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce_aws.clients import SessionClients
from quiesce_aws.snapshots import VSS_DOCUMENT, EbsSnapshotter, snapshot_arn

from .conftest import REGION, FakeClock, Fleet, Sleeps, Wire, machine, member_of, quick_backoff

RUN = "20261129T100000Z-abc123"


@pytest.fixture
def ec2(clients: SessionClients) -> Any:
    return clients.ec2(REGION)


@pytest.fixture
def snapshotter(clients: SessionClients, clock: FakeClock, sleeps: Sleeps) -> EbsSnapshotter:
    return EbsSnapshotter(
        clients,
        default_region=REGION,
        backoff=quick_backoff(sleeps),
        clock=clock,
        sleep=sleeps,
        poll_interval=5,
        vss_poll_interval=2,
    )


def snapshot_call(
    target: Machine,
    run_id: str = RUN,
    group: str = "orders",
    consistency: str = "application",
    spec: MemberBase | None = None,
) -> SnapshotCall:
    return SnapshotCall(
        run_id=run_id,
        policy="shop",
        group=group,
        member=target.member,
        machine=target,
        recovery_point=f"rp-{run_id}",
        consistency=consistency,
        spec=spec or member_of(target),
    )


def tags_of(ec2: Any, snapshot_id: str) -> dict[str, str]:
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    return {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}


# ------------------------------------------------------------------------------ take


def test_take_snapshots_every_volume_of_a_two_volume_instance_with_the_quiesce_tags(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any
) -> None:
    (instance,) = fleet.launch(1, data_volumes=1)

    refs = snapshotter.take(snapshot_call(machine(instance)))

    assert sorted(r.volume for r in refs) == fleet.volumes(instance)
    expected = {
        "quiesce:managed": "true",
        "quiesce:policy": "shop",
        "quiesce:group": "orders",
        "quiesce:run-id": RUN,
        "quiesce:recovery-point": f"rp-{RUN}",
        "quiesce:member": "db",
        "quiesce:machine": instance,
        "quiesce:consistency": "application",
    }
    for ref in refs:
        assert tags_of(ec2, ref.id) == expected
        assert ref.tags == expected
        assert ref.provider == "aws"
        assert ref.machine_id == instance
        assert ref.method == "ebs"
        assert ref.location == snapshot_arn(REGION, ref.id)


def test_take_calls_create_snapshots_once_per_instance_and_returns_pending_at_once(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=2)
    sent = wire.sent(ec2, "CreateSnapshots")
    before = utcnow()

    refs = snapshotter.take(snapshot_call(machine(instance)))

    (call,) = sent
    assert call["InstanceSpecification"] == {"InstanceId": instance, "ExcludeBootVolume": False}
    assert call["TagSpecifications"][0]["ResourceType"] == "snapshot"
    assert len(refs) == 3
    assert {r.state for r in refs} == {SnapshotState.PENDING}
    fixed = {r.fixed_at for r in refs}
    assert len(fixed) == 1  # one call: one point in time for every volume
    assert before <= refs[0].started_at <= refs[0].fixed_at <= utcnow()


def test_exclude_boot_volume_is_passed_per_member(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=2)
    sent = wire.sent(ec2, "CreateSnapshots")

    refs = snapshotter.take(snapshot_call(machine(instance, exclude_boot_volume="true")))

    assert sent[0]["InstanceSpecification"]["ExcludeBootVolume"] is True
    assert fleet.root(instance) not in {r.volume for r in refs}
    assert len(refs) == 2


def test_exclude_boot_volume_comes_from_the_policy_when_the_machine_does_not_say(
    clients: SessionClients, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    from quiesce.policy.model import Policy

    (instance,) = fleet.launch(1, data_volumes=1)
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
                            "exclude_boot_volume": True,
                        }
                    ],
                }
            },
        }
    )
    sent = wire.sent(ec2, "CreateSnapshots")
    bare = Machine(provider="aws", member="db", machine_id=instance)

    spec = policy.groups["orders"].members[0]
    EbsSnapshotter(clients).take(snapshot_call(bare, spec=spec))

    assert sent[0]["InstanceSpecification"]["ExcludeBootVolume"] is True


@pytest.mark.parametrize("code", ["ConcurrentSnapshotLimitExceeded", "RequestLimitExceeded"])
def test_snapshot_limits_and_throttling_are_retried_with_backoff(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire, sleeps: Sleeps, code: str
) -> None:
    (instance,) = fleet.launch(1, data_volumes=1)
    left = wire.fail(ec2, "CreateSnapshots", code, times=2)

    refs = snapshotter.take(snapshot_call(machine(instance)))

    assert len(refs) == 2
    assert left == [0]
    assert sleeps.waits == [0.05, 0.1]


def test_a_create_snapshots_error_names_the_member_and_the_instance(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1)
    wire.fail(ec2, "CreateSnapshots", "UnauthorizedOperation", status=403)

    with pytest.raises(ProviderError) as caught:
        snapshotter.take(snapshot_call(machine(instance)))

    assert caught.value.code == "UnauthorizedOperation"
    assert "'db'" in str(caught.value)
    assert instance in str(caught.value)


# ------------------------------------------------------------------------------ durability


def test_wait_durable_polls_describe_snapshots_until_completed(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire, sleeps: Sleeps
) -> None:
    (instance,) = fleet.launch(1, data_volumes=1)
    refs = snapshotter.take(snapshot_call(machine(instance)))
    polls = wire.sent(ec2, "DescribeSnapshots")

    def pending_twice(parsed: dict[str, Any]) -> None:
        if len(polls) <= 2:  # moto completes snapshots at once; EBS takes a while
            for snapshot in parsed.get("Snapshots", []):
                snapshot["State"] = "pending"

    wire.after(ec2, "DescribeSnapshots", pending_twice)

    done = snapshotter.wait_durable(refs, timeout=600)

    assert [d.id for d in done] == [r.id for r in refs]
    assert {d.state for d in done} == {SnapshotState.COMPLETED}
    assert all(d.durable_at is not None for d in done)
    assert len(polls) == 3
    assert all(len(p["Filters"][0]["Values"]) == 2 for p in polls)  # both ids in one call
    assert sleeps.waits == [5, 5]


def test_wait_durable_gives_up_at_the_timeout_leaving_snapshots_pending(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire, clock: FakeClock
) -> None:
    (instance,) = fleet.launch(1)
    refs = snapshotter.take(snapshot_call(machine(instance)))

    def always_pending(parsed: dict[str, Any]) -> None:
        for snapshot in parsed.get("Snapshots", []):
            snapshot["State"] = "pending"

    wire.after(ec2, "DescribeSnapshots", always_pending)
    start = clock.now

    done = snapshotter.wait_durable(refs, timeout=30)

    assert {d.state for d in done} == {SnapshotState.PENDING}
    assert clock.now - start == pytest.approx(30)


def test_wait_durable_marks_errored_and_vanished_snapshots_failed(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=1)
    errored, vanished = snapshotter.take(snapshot_call(machine(instance)))
    ec2.delete_snapshot(SnapshotId=vanished.id)

    def error_one(parsed: dict[str, Any]) -> None:
        for snapshot in parsed.get("Snapshots", []):
            if snapshot["SnapshotId"] == errored.id:
                snapshot["State"] = "error"

    wire.after(ec2, "DescribeSnapshots", error_one)

    done = snapshotter.wait_durable([errored, vanished], timeout=60)

    assert [d.state for d in done] == [SnapshotState.FAILED, SnapshotState.FAILED]


# ------------------------------------------------------------------------------ delete and find


def test_delete_removes_a_quiesce_snapshot(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    (ref,) = snapshotter.take(snapshot_call(machine(instance)))

    snapshotter.delete(ref)

    assert snapshotter.find("shop", "orders") == []


def test_delete_refuses_a_snapshot_not_tagged_managed(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any
) -> None:
    (instance,) = fleet.launch(1)
    volume = fleet.root(instance)
    theirs = ec2.create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "quiesce:run-id", "Value": RUN}]}
        ],
    )["SnapshotId"]
    forged = SnapshotRef(
        id=theirs,
        provider="aws",
        machine_id=instance,
        volume=volume,
        method="ebs",
        started_at=utcnow(),
        fixed_at=utcnow(),
        location=snapshot_arn(REGION, theirs),
        tags={"quiesce:managed": "true"},  # the ref says so; EC2's tags decide
    )

    with pytest.raises(ProviderError) as caught:
        snapshotter.delete(forged)

    assert caught.value.code == "NotManaged"
    assert ec2.describe_snapshots(SnapshotIds=[theirs])["Snapshots"]  # still there


def test_deleting_a_snapshot_that_is_gone_is_fine(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any
) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    (ref,) = snapshotter.take(snapshot_call(machine(instance)))
    ec2.delete_snapshot(SnapshotId=ref.id)

    snapshotter.delete(ref)
    snapshotter.delete(ref)


def test_find_lists_only_quiesce_snapshots_of_the_group_and_of_the_run_when_given(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any
) -> None:
    first, second = fleet.launch(2, data_volumes=1)
    run_a = snapshotter.take(snapshot_call(machine(first), run_id="run-a"))
    run_b = snapshotter.take(snapshot_call(machine(second), run_id="run-b"))
    snapshotter.take(snapshot_call(machine(second), run_id="run-c", group="billing"))
    ec2.create_snapshot(VolumeId=fleet.root(first))  # not Quiesce's

    of_group = snapshotter.find("shop", "orders")
    of_run = snapshotter.find("shop", "orders", "run-a")
    other_policy = snapshotter.find("other", "orders")

    assert sorted(r.id for r in of_group) == sorted(r.id for r in run_a + run_b)
    assert sorted(r.id for r in of_run) == sorted(r.id for r in run_a)
    assert other_policy == []
    found = {r.id: r for r in of_run}
    for ref in run_a:
        assert found[ref.id].volume == ref.volume
        assert found[ref.id].machine_id == first
        assert found[ref.id].tags == ref.tags
        assert found[ref.id].location == ref.location


def test_find_reads_every_page_describe_snapshots_answers(
    snapshotter: EbsSnapshotter, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, data_volumes=1)
    taken = snapshotter.take(snapshot_call(machine(instance)))
    ids = {r.id for r in taken}
    mine = [
        s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s["SnapshotId"] in ids
    ]
    sent = wire.sent(ec2, "DescribeSnapshots")

    def two_pages(_: dict[str, Any]) -> dict[str, Any]:
        if len(sent) == 1:
            return {"Snapshots": mine[:1], "NextToken": "page-2"}
        return {"Snapshots": mine[1:]}

    wire.answer(ec2, "DescribeSnapshots", two_pages)

    found = snapshotter.find("shop", "orders")

    assert [call.get("NextToken") for call in sent] == [None, "page-2"]
    assert sorted(r.id for r in found) == sorted(ids)


# ------------------------------------------------------------------------------ Windows (VSS)


def vss_document_on_moto(wire: Wire, ssm: Any, ec2: Any, app_consistent: str = "true") -> Any:
    """What AWSEC2-CreateVssSnapshot does on the instance, which moto cannot run: freeze with
    VSS, CreateSnapshots, tag each snapshot (our tags plus AppConsistent, Device) — done here
    with moto's EC2 — and answer SendCommand and the invocation list (faked: moto has none)."""
    sent: list[dict[str, Any]] = []

    def send(params: dict[str, Any]) -> dict[str, Any]:
        sent.append(params)
        instance = params["InstanceIds"][0]
        tags = [
            {"Key": k.split("=", 1)[1], "Value": v.split("=", 1)[1]}
            for k, v in (pair.split(",", 1) for pair in params["Parameters"]["tags"][0].split(";"))
        ]
        tags.append({"Key": "AppConsistent", "Value": app_consistent})
        ec2.create_snapshots(
            InstanceSpecification={
                "InstanceId": instance,
                "ExcludeBootVolume": params["Parameters"]["ExcludeBootVolume"] == ["True"],
            },
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
        )
        return {"Command": {"CommandId": str(uuid.uuid4()), "InstanceIds": [instance]}}

    def invocations(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {
                    "CommandId": params["CommandId"],
                    "InstanceId": params["InstanceId"],
                    "Status": "Success",
                    "CommandPlugins": [{"Name": "createVssSnapshot", "Output": "snapshots made"}],
                }
            ]
        }

    wire.answer(ssm, "SendCommand", send)
    wire.answer(ssm, "ListCommandInvocations", invocations)
    return sent


def test_windows_take_runs_the_vss_document_and_records_app_consistent(
    snapshotter: EbsSnapshotter, clients: SessionClients, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, windows=True, data_volumes=1)
    sent = vss_document_on_moto(wire, clients.ssm(REGION), ec2)

    refs = snapshotter.take(snapshot_call(machine(instance, os="windows")))

    (command,) = sent
    assert command["DocumentName"] == VSS_DOCUMENT
    assert command["InstanceIds"] == [instance]
    assert command["Parameters"]["ExcludeBootVolume"] == ["False"]
    assert command["Parameters"]["CreateAmi"] == ["False"]
    assert "Key=quiesce:managed,Value=true" in command["Parameters"]["tags"][0]
    assert sorted(r.volume for r in refs) == fleet.volumes(instance)
    for ref in refs:
        assert ref.method == "ebs-vss"
        assert ref.state is SnapshotState.PENDING
        assert ref.tags["AppConsistent"] == "true"
        assert ref.tags["quiesce:consistency"] == "application"
        assert ref.tags["quiesce:run-id"] == RUN


def test_a_vss_snapshot_that_was_not_app_consistent_is_recorded_as_crash_consistent(
    snapshotter: EbsSnapshotter, clients: SessionClients, fleet: Fleet, ec2: Any, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, windows=True, data_volumes=0)
    vss_document_on_moto(wire, clients.ssm(REGION), ec2, app_consistent="false")

    (ref,) = snapshotter.take(snapshot_call(machine(instance, os="windows")))

    assert ref.tags["quiesce:consistency"] == "crash"


def test_a_failed_vss_command_is_a_provider_error_with_its_output(
    snapshotter: EbsSnapshotter, clients: SessionClients, fleet: Fleet, wire: Wire
) -> None:
    (instance,) = fleet.launch(1, windows=True)
    ssm = clients.ssm(REGION)
    wire.answer(ssm, "SendCommand", lambda p: {"Command": {"CommandId": str(uuid.uuid4())}})
    wire.answer(
        ssm,
        "ListCommandInvocations",
        lambda p: {
            "CommandInvocations": [
                {
                    "InstanceId": instance,
                    "Status": "Failed",
                    "CommandPlugins": [{"Output": "VSS writer timed out"}],
                }
            ]
        },
    )

    with pytest.raises(ProviderError) as caught:
        snapshotter.take(snapshot_call(machine(instance, os="windows")))

    assert caught.value.code == "VssFailed"
    assert "VSS writer timed out" in str(caught.value)


def test_describe_reports_how_each_volume_would_be_snapshotted(
    snapshotter: EbsSnapshotter,
) -> None:
    linux = Machine("aws", "db", "i-1", ("vol-1", "vol-2"), {"os": "linux"})
    windows = Machine("aws", "db", "i-2", ("vol-3",), {"os": "windows"})

    assert snapshotter.describe(linux) == {"vol-1": "ebs", "vol-2": "ebs"}
    assert snapshotter.describe(windows) == {"vol-3": "ebs-vss"}


def test_started_times_are_aware(snapshotter: EbsSnapshotter, fleet: Fleet) -> None:
    (instance,) = fleet.launch(1, data_volumes=0)
    snapshotter.take(snapshot_call(machine(instance)))

    (found,) = snapshotter.find("shop", "orders")

    assert found.started_at.tzinfo is not None
    assert found.started_at <= datetime.now(UTC)
