"""A drill on AWS, end to end on moto with the backends the functions run with (aws_backends):
a two-instance group is backed up (hooks through SSM, EBS snapshots), its point copied to a
second region (CopySnapshot), restored there as new instances in an isolated subnet (an image
on the replicas, RunInstances without a public IP), verified through SSM on the copies,
measured and cleaned up, leaving nothing behind but the replicas (asserted by listing moto's
instances, images, volumes, network interfaces and snapshots in that region). Also: a verify
hook that fails, a copy still pending, and a restore that dies half-way, whose label finds
and removes what it made."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quiesce.drill import run_drill
from quiesce.engine import run_group
from quiesce.errors import QuiesceError
from quiesce.group_restore import cleanup_restore, restore_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import RunStatus, SnapshotState
from quiesce_aws.clients import SessionClients
from quiesce_aws.provider import aws_backends
from quiesce_aws.restorer import RESTORE_TAG
from quiesce_aws.state import table_definition

from .conftest import REGION, Fleet, Wire, hooked_vm, runner_answers
from .restore_fakes import (
    DR_REGION,
    SsmAgents,
    answer_hooks,
    isolated_network,
    leftovers,
    model_register_image,
)

TABLE = "quiesce-catalog"
BUS = "quiesce-bus"


def make_policy(subnet: str, group: str) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 30,
                    "durability_timeout_seconds": 60,
                    "copies": [
                        {
                            "region": DR_REGION,
                            "keep_last": 3,
                            "restore": {"network": subnet, "security_groups": [group]},
                        }
                    ],
                    "members": [hooked_vm("db", verify=True), hooked_vm("app", verify=True)],
                }
            },
            "triggers": [
                {
                    "name": "monthly-drill",
                    "group": "orders",
                    "schedule": "0 3 1 * *",
                    "action": "drill",
                    "region": DR_REGION,
                }
            ],
        }
    )


class World:
    def __init__(self, clients: SessionClients, fleet: Fleet, wire: Wire) -> None:
        self.clients = clients
        self.wire = wire
        self.originals = [
            fleet.launch(1, tags={"role": "db", "quiesce:enabled": "true"}, data_volumes=1)[0],
            fleet.launch(1, tags={"role": "app", "quiesce:enabled": "true"}, data_volumes=2)[0],
        ]
        clients.dynamodb(REGION).create_table(**table_definition(TABLE))
        events = clients.events(REGION)
        events.create_event_bus(Name=BUS)
        sqs = clients.session.client("sqs", region_name=REGION)
        self.sqs = sqs
        self.queue = sqs.create_queue(QueueName="quiesce-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["quiesce"]})
        )
        events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
        self.dr = clients.ec2(DR_REGION)
        self.subnet, self.group = isolated_network(self.dr, DR_REGION)
        self.policy = make_policy(self.subnet, self.group)
        model_register_image(wire, self.dr, DR_REGION)
        self.agents = SsmAgents(wire, clients.ssm(DR_REGION), DR_REGION, boot_polls=0)
        self.launches = wire.sent(self.dr, "RunInstances")
        self.backends: Backends = aws_backends(
            self.policy,
            clients=clients,
            env={"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": BUS, "QUIESCE_REGION": REGION},
        )
        runner_answers(wire, clients.ssm(REGION))

    def back_up(self) -> str:
        record = run_group(self.policy, "orders", self.backends)
        assert record.status is RunStatus.SUCCEEDED, record.errors
        assert record.recovery_point is not None
        return record.recovery_point

    def replicas(self, point_id: str) -> list[str]:
        point = self.backends.state.get_point(point_id)
        assert point is not None
        (copy,) = point.copies
        return sorted(s.id for m in copy.members for s in m.snapshots)

    def event_types(self) -> list[str]:
        types: list[str] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return types
            types += [json.loads(m["Body"])["detail-type"] for m in batch]


@pytest.fixture
def world(clients: SessionClients, fleet: Fleet, wire: Wire) -> World:
    return World(clients, fleet, wire)


def test_a_two_instance_group_is_backed_up_copied_drilled_in_the_other_region_and_torn_down(
    world: World,
) -> None:
    point_id = world.back_up()
    replicas = world.replicas(point_id)
    assert len(replicas) == 2 + 3  # every volume of both instances (roots included)
    before = leftovers(DR_REGION)
    assert before["instances"] == before["images"] == before["volumes"] == []
    verified = answer_hooks(world.wire, world.clients.ssm(DR_REGION), DR_REGION)

    drill = run_drill(world.policy, "orders", world.backends, region=DR_REGION)

    assert drill.verdict == "passed", drill.errors
    assert drill.region == DR_REGION
    assert drill.rto_seconds is not None
    assert drill.rto_seconds >= 0
    assert set(drill.phases) == {"restore", "ready", "verify", "cleanup"}
    assert drill.left == []
    # Two copies, launched in the isolated subnet without a public IP, from the replicas.
    assert len(world.launches) == 2
    for call in world.launches:
        (nic,) = call["NetworkInterfaces"]
        assert (nic["SubnetId"], nic["Groups"], nic["AssociatePublicIpAddress"]) == (
            world.subnet,
            [world.group],
            False,
        )
        assert {m["Ebs"]["SnapshotId"] for m in call["BlockDeviceMappings"]} <= set(replicas)
    copies = {c for c in drill.created if c.startswith("i-")}
    assert len(copies) == 2
    assert copies.isdisjoint(world.originals)
    # Each member's verify hook ran on its copy (and only there), through SSM in its region.
    assert {i for i, _ in verified} == copies
    assert sorted((p["Phase"][0], p["Member"][0]) for _, p in verified) == [
        ("verify", "app"),
        ("verify", "db"),
    ]
    # Nothing is left but the point's replicas.
    assert leftovers(DR_REGION) == before
    assert leftovers(DR_REGION)["snapshots"] == replicas
    # The point records the drill; the bus says it passed.
    point = world.backends.state.get_point(point_id)
    assert point is not None
    assert point.drills[-1].drill_id == drill.drill_id
    assert point.drills[-1].rto_seconds == drill.rto_seconds
    assert "quiesce.drill.completed" in world.event_types()


def test_a_failing_verify_hook_fails_the_drill_and_everything_is_still_deleted(
    world: World,
) -> None:
    world.back_up()
    before = leftovers(DR_REGION)
    answer_hooks(
        world.wire,
        world.clients.ssm(DR_REGION),
        DR_REGION,
        lambda _instance, params: params["Member"] == ["app"],
    )

    drill = run_drill(world.policy, "orders", world.backends, region=DR_REGION)

    assert drill.verdict == "failed"
    assert drill.rto_seconds is None
    assert any("app" in e and "orders table is empty" in e for e in drill.errors), drill.errors
    assert drill.left == []
    assert leftovers(DR_REGION) == before
    assert "quiesce.drill.failed" in world.event_types()


def test_a_copy_still_pending_is_not_restored_and_the_refusal_says_so(world: World) -> None:
    def copying(parsed: dict[str, Any]) -> None:
        for item in parsed.get("Snapshots", []):
            item["State"], item["Progress"] = "pending", "3%"

    world.wire.after(world.dr, "DescribeSnapshots", copying)  # EBS is still copying
    point_id = world.back_up()
    before = leftovers(DR_REGION)

    with pytest.raises(
        QuiesceError, match=f"copy of recovery point {point_id} in {DR_REGION} is pending"
    ):
        restore_group(world.policy, world.backends, point_id, region=DR_REGION)
    with pytest.raises(
        QuiesceError, match=f"no restorable recovery point with a completed copy in {DR_REGION}"
    ):
        run_drill(world.policy, "orders", world.backends, region=DR_REGION)
    assert world.launches == []
    assert leftovers(DR_REGION) == before


class Died(Exception):
    """The process running the restore stops (a timeout, a signal)."""


def test_a_restore_that_dies_half_way_is_cleaned_up_by_its_label(world: World) -> None:
    point_id = world.back_up()
    before = leftovers(DR_REGION)
    launched = [0]

    def die_on_the_second_launch(**_: Any) -> None:
        launched[0] += 1
        if launched[0] == 2:
            raise Died("killed while launching the second copy")

    world.dr.meta.events.register("before-call.ec2.RunInstances", die_on_the_second_launch)
    label = "restore-interrupted"

    with pytest.raises(Died):
        restore_group(world.policy, world.backends, point_id, region=DR_REGION, label=label)
    made = leftovers(DR_REGION)
    assert len(made["instances"]) == 1  # the first copy runs
    assert len(made["images"]) == 2  # and both images exist
    tagged = world.dr.describe_instances(
        Filters=[{"Name": f"tag:{RESTORE_TAG}", "Values": [label]}]
    )["Reservations"]
    assert len(tagged) == 1

    deleted, left = cleanup_restore(world.backends, label, [DR_REGION])

    assert left == []
    assert set(made["instances"]) | set(made["images"]) <= set(deleted)
    assert leftovers(DR_REGION) == before
    assert leftovers(REGION)["instances"] == sorted(world.originals)  # never the originals
    point = world.backends.state.get_point(point_id)
    assert point is not None
    assert all(s.state is SnapshotState.COMPLETED for s in point.snapshots)  # untouched
