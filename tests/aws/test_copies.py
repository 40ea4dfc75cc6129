"""EbsSnapshotter.copy_to_region: CopySnapshot in the destination region, tagged and encrypted
as asked, returning the pending replica that wait_durable, states and delete then find in its
own region; and the instance's shape recorded with each snapshot at take time."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce.record import SnapshotRef, SnapshotState
from quiesce_aws.clients import SessionClients
from quiesce_aws.shape import decode_devices
from quiesce_aws.snapshots import EbsSnapshotter, region_of, snapshot_arn

from .conftest import REGION, FakeClock, Fleet, Sleeps, Wire, quick_backoff
from .restore_fakes import DR_REGION, POINT, aws_member, take_point

KEY = "arn:aws:kms:eu-west-1:123456789012:key/0b4d6c1e-dr"


@pytest.fixture
def snapshotter(clients: SessionClients, clock: FakeClock, sleeps: Sleeps) -> EbsSnapshotter:
    return EbsSnapshotter(
        clients,
        default_region=REGION,
        backoff=quick_backoff(sleeps),
        clock=clock,
        sleep=sleeps,
        poll_interval=5,
    )


@pytest.fixture
def point(clients: SessionClients, fleet: Fleet) -> list[SnapshotRef]:
    (instance,) = fleet.launch(1, data_volumes=1)
    _, refs = take_point(clients, aws_member("db", [instance]))
    return refs


def copy_tags(ref: SnapshotRef) -> dict[str, str]:
    """What the core hands over: the source's tags, what it is a copy of, and where."""
    return {**ref.tags, "quiesce:copy-of": ref.id, "quiesce:region": DR_REGION}


def described(clients: SessionClients, region: str, snapshot_id: str) -> dict[str, Any]:
    (item,) = clients.ec2(region).describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    return dict(item)


def test_a_copy_is_started_in_the_destination_region_from_the_source_region(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    sent = wire.sent(clients.ec2(DR_REGION), "CopySnapshot")
    source = point[0]

    replica = snapshotter.copy_to_region(source, DR_REGION, None, copy_tags(source))

    (call,) = sent
    assert call["SourceRegion"] == REGION
    assert call["SourceSnapshotId"] == source.id
    assert "Encrypted" not in call
    assert "KmsKeyId" not in call
    assert replica.id != source.id
    assert replica.state is SnapshotState.PENDING
    assert replica.location == snapshot_arn(DR_REGION, replica.id)
    assert region_of(replica) == DR_REGION
    assert replica.fixed_at == source.fixed_at  # the same point in time
    assert (replica.machine_id, replica.volume) == (source.machine_id, source.volume)
    live = described(clients, DR_REGION, replica.id)
    tags = {t["Key"]: t["Value"] for t in live["Tags"]}
    assert tags["quiesce:copy-of"] == source.id
    assert tags["quiesce:region"] == DR_REGION
    assert tags["quiesce:managed"] == "true"
    assert tags["quiesce:recovery-point"] == POINT
    assert replica.tags == tags
    # The source is where it was.
    assert described(clients, REGION, source.id)["SnapshotId"] == source.id


def test_a_copy_with_a_key_is_encrypted_with_that_key(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    sent = wire.sent(clients.ec2(DR_REGION), "CopySnapshot")

    replica = snapshotter.copy_to_region(point[0], DR_REGION, KEY, copy_tags(point[0]))

    assert sent[0]["Encrypted"] is True
    assert sent[0]["KmsKeyId"] == KEY
    assert described(clients, DR_REGION, replica.id)["KmsKeyId"] == KEY


def test_the_replica_is_pending_until_ebs_has_copied_it_and_is_read_in_its_region(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    replica = snapshotter.copy_to_region(point[0], DR_REGION, None, copy_tags(point[0]))
    copying = [True]

    def still_copying(parsed: dict[str, Any]) -> None:
        for item in parsed.get("Snapshots", []):
            if copying[0]:
                item["State"], item["Progress"] = "pending", "40%"

    wire.after(clients.ec2(DR_REGION), "DescribeSnapshots", still_copying)

    assert snapshotter.states([replica]) == {replica.id: SnapshotState.PENDING}
    copying[0] = False
    assert snapshotter.states([replica]) == {replica.id: SnapshotState.COMPLETED}
    (done,) = snapshotter.wait_durable([replica], timeout=60)
    assert done.state is SnapshotState.COMPLETED


def test_the_replica_is_deleted_in_its_region_and_the_source_is_kept(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef]
) -> None:
    replica = snapshotter.copy_to_region(point[0], DR_REGION, None, copy_tags(point[0]))

    snapshotter.delete(replica)

    assert clients.ec2(DR_REGION).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    assert described(clients, REGION, point[0].id)["State"] == "completed"


def test_a_copy_to_the_snapshots_own_region_is_refused(
    snapshotter: EbsSnapshotter, point: list[SnapshotRef]
) -> None:
    with pytest.raises(ProviderError, match="is in eu-central-1 already") as caught:
        snapshotter.copy_to_region(point[0], REGION, None, copy_tags(point[0]))
    assert caught.value.code == "SameRegion"


def test_a_snapshot_that_is_not_completed_cannot_be_copied_and_the_error_says_so(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    wire.fail(clients.ec2(DR_REGION), "CopySnapshot", "IncorrectState")

    with pytest.raises(ProviderError, match="once it is completed") as caught:
        snapshotter.copy_to_region(point[0], DR_REGION, None, copy_tags(point[0]))
    assert caught.value.code == "IncorrectState"


def test_throttling_and_the_copy_limit_are_retried_but_an_unknown_outcome_is_not(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    ec2 = clients.ec2(DR_REGION)
    sent = wire.sent(ec2, "CopySnapshot")
    wire.fail(ec2, "CopySnapshot", "RequestLimitExceeded")
    wire.fail(ec2, "CopySnapshot", "ResourceLimitExceeded")

    replica = snapshotter.copy_to_region(point[0], DR_REGION, None, copy_tags(point[0]))

    assert len(sent) == 3
    assert replica.state is SnapshotState.PENDING

    sent.clear()
    wire.fail(ec2, "CopySnapshot", "InternalError", status=500)
    with pytest.raises(ProviderError, match="CopySnapshot of snap-"):
        snapshotter.copy_to_region(point[1], DR_REGION, None, copy_tags(point[1]))
    assert len(sent) == 1  # a repeat could make a second replica


def test_a_key_the_role_cannot_use_is_named_in_the_error(
    snapshotter: EbsSnapshotter, clients: SessionClients, point: list[SnapshotRef], wire: Wire
) -> None:
    wire.fail(clients.ec2(DR_REGION), "CopySnapshot", "KMSKeyNotAccessibleFault")

    with pytest.raises(ProviderError, match=f"the key {KEY} must be usable"):
        snapshotter.copy_to_region(point[0], DR_REGION, KEY, copy_tags(point[0]))


def test_each_snapshot_records_its_instances_shape_and_the_copy_carries_it(
    snapshotter: EbsSnapshotter, clients: SessionClients, fleet: Fleet
) -> None:
    (instance,) = fleet.launch(1, data_volumes=2)
    described_instance = fleet.instance(instance)
    _, refs = take_point(clients, aws_member("db", [instance]))

    for ref in refs:
        assert ref.tags["quiesce:instance-type"] == described_instance["InstanceType"]
        assert ref.tags["quiesce:root-device"] == "/dev/sda1"
        assert decode_devices(ref.tags["quiesce:devices"]) == {
            b["Ebs"]["VolumeId"]: b["DeviceName"] for b in described_instance["BlockDeviceMappings"]
        }
    replica = snapshotter.copy_to_region(refs[0], DR_REGION, None, copy_tags(refs[0]))
    live = {t["Key"]: t["Value"] for t in described(clients, DR_REGION, replica.id)["Tags"]}
    assert live["quiesce:instance-type"] == described_instance["InstanceType"]
    assert live["quiesce:devices"] == refs[0].tags["quiesce:devices"]
