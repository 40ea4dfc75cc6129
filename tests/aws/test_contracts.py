"""The port contracts (tests/contracts/) on AWS, through the real boto3 clients against moto:
EBS snapshots, EventBridge (through a rule to an SQS queue) and the EC2 inventory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef, utcnow
from quiesce_aws.clients import SessionClients
from quiesce_aws.events import EventBridgePublisher
from quiesce_aws.inventory import Ec2Inventory
from quiesce_aws.snapshots import EbsSnapshotter
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract

from .conftest import REGION, FakeClock, Fleet, Sleeps, Wire, quick_backoff

# ------------------------------------------------------------------------------ Snapshotter


def aws_member(name: str, **fields: Any) -> MemberBase:
    return member({"name": name, "provider": "aws", "region": REGION, **fields})


class EbsSnapshots(SnapshotHarness):
    def __init__(
        self, clients: SessionClients, fleet: Fleet, clock: FakeClock, sleeps: Sleeps
    ) -> None:
        self.ec2 = clients.ec2(REGION)
        self.fleet = fleet
        self.inventory = Ec2Inventory(clients)
        self.snapshotter = EbsSnapshotter(
            clients,
            default_region=REGION,
            backoff=quick_backoff(sleeps),
            clock=clock,
            sleep=sleeps,
            poll_interval=5,
        )
        self.specs: dict[str, MemberBase] = {}

    def machine(self, name: str) -> Machine:
        (instance,) = self.fleet.launch(1, data_volumes=1)
        spec = aws_member("db", select={"instance_ids": [instance]})
        (found,) = self.inventory.resolve(spec)
        self.specs[found.machine_id] = spec
        return found

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        spec = self.specs[machine.machine_id]
        return SnapshotCall(
            run_id, "shop", "orders", "db", machine, f"rp-{run_id}", "crash", spec=spec
        )

    def exists(self, snapshot: SnapshotRef) -> bool:
        try:
            self.ec2.describe_snapshots(SnapshotIds=[snapshot.id])
        except ClientError:
            return False
        return True

    def foreign(self, machine: Machine) -> SnapshotRef:
        """An operator's own snapshot of the machine's volume, without Quiesce's tags."""
        made = self.ec2.create_snapshot(VolumeId=machine.volumes[0], Description="by hand")
        return SnapshotRef(
            id=made["SnapshotId"],
            provider="aws",
            machine_id=machine.machine_id,
            volume=machine.volumes[0],
            method="ebs",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=REGION,
        )


class TestEbsSnapshotter(SnapshotterContract):
    @pytest.fixture
    def harness(
        self, clients: SessionClients, fleet: Fleet, clock: FakeClock, sleeps: Sleeps
    ) -> EbsSnapshots:
        return EbsSnapshots(clients, fleet, clock, sleeps)


# ------------------------------------------------------------------------------ EventPublisher

BUS = "quiesce-contract"


class EventBridgeBus(BusHarness):
    """Events reach an SQS queue through a rule, as a subscriber would read them."""

    def __init__(self, clients: SessionClients, wire: Wire, sleeps: Sleeps) -> None:
        self.events = clients.events(REGION)
        self.events.create_event_bus(Name=BUS)
        self.sqs = clients.session.client("sqs", region_name=REGION)
        self.queue = self.sqs.create_queue(QueueName="quiesce-contract")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.events.put_rule(
            Name="quiesce-all",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": [{"prefix": ""}]}),
        )
        self.events.put_targets(
            Rule="quiesce-all", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}]
        )
        self.publisher = EventBridgePublisher(
            clients, REGION, bus=BUS, backoff=quick_backoff(sleeps)
        )
        self.wire = wire
        self.refusals: list[int] | None = None
        self.seen: list[CloudEvent] = []

    def received(self, count: int) -> list[CloudEvent]:
        for _ in range(10):
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            for message in messages:
                self.seen.append(CloudEvent.model_validate(json.loads(message["Body"])["detail"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            if not messages and len(self.seen) >= count:
                break
        return list(self.seen)

    def refuse(self, refusing: bool) -> None:
        if refusing:
            self.refusals = self.wire.fail(
                self.events, "PutEvents", "AccessDeniedException", times=10**6, status=403
            )
        elif self.refusals is not None:
            self.refusals[0] = 0


class TestEventBridgePublisher(EventPublisherContract):
    @pytest.fixture
    def harness(self, clients: SessionClients, wire: Wire, sleeps: Sleeps) -> EventBridgeBus:
        return EventBridgeBus(clients, wire, sleeps)


# ------------------------------------------------------------------------------ Inventory


class Ec2Machines(InventoryHarness):
    def __init__(self, clients: SessionClients, fleet: Fleet) -> None:
        self.fleet = fleet
        self.inventory = Ec2Inventory(clients)

    def by_names(self) -> tuple[MemberBase, set[str]]:
        first, second, _ = self.fleet.launch(3)
        return aws_member("db", select={"instance_ids": [second, first]}), {first, second}

    def by_tags(self) -> tuple[MemberBase, set[str]]:
        wanted = self.fleet.launch(2, tags={"app": "orders", "tier": "db"})
        self.fleet.launch(1, tags={"app": "orders", "tier": "web"})
        return aws_member("db", select={"tags": {"app": "orders", "tier": "db"}}), set(wanted)

    def unknown(self) -> tuple[MemberBase, str]:
        self.fleet.launch(1)
        missing = "i-0123456789abcdef0"
        return aws_member("db", select={"instance_ids": [missing]}), missing


class TestEc2Inventory(InventoryContract):
    @pytest.fixture
    def harness(self, clients: SessionClients, fleet: Fleet) -> Ec2Machines:
        return Ec2Machines(clients, fleet)
