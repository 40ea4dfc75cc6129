"""The engine on AWS: `run_group` of a two-instance group with backends from `aws_backends`,
everything against moto — EC2 inventory, SSM hooks, EBS snapshots, the DynamoDB catalog and
the EventBridge bus (read back through a rule into SQS).

moto runs no SSM document, so each instance's answer (the guest runner's JSON result, with the
time it ran) is written into moto's invocation right after SendCommand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from quiesce.engine import run_group
from quiesce.policy.model import Policy
from quiesce.record import Consistency, RunStatus, utcnow
from quiesce_aws.clients import SessionClients
from quiesce_aws.provider import aws_backends
from quiesce_aws.state import table_definition

from .conftest import REGION, Fleet, Wire, hooked_vm, runner_answers

TABLE = "quiesce-catalog"
BUS = "quiesce-bus"


def policy() -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 30,
                    "durability_timeout_seconds": 60,
                    "members": [hooked_vm("db"), hooked_vm("app")],
                }
            },
        }
    )


@pytest.fixture
def world(clients: SessionClients, fleet: Fleet, wire: Wire) -> dict[str, Any]:
    db = fleet.launch(1, tags={"role": "db"}, data_volumes=1)[0]
    app = fleet.launch(1, tags={"role": "app"}, data_volumes=1)[0]
    fleet.launch(1, tags={"role": "web"})  # in the region, not in the group
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    events = clients.events(REGION)
    events.create_event_bus(Name=BUS)
    sqs = clients.session.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="quiesce-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["quiesce"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    ssm, ec2 = clients.ssm(REGION), clients.ec2(REGION)
    backends = aws_backends(
        policy(),
        clients=clients,
        env={"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": BUS, "QUIESCE_REGION": REGION},
    )
    return {
        "db": db,
        "app": app,
        "fleet": fleet,
        "ec2": ec2,
        "ssm": ssm,
        "sqs": sqs,
        "queue": queue,
        "backends": backends,
        "sends": wire.sent(ssm, "SendCommand"),
        "creates": wire.sent(ec2, "CreateSnapshots"),
        "log": wire.log,
    }


def received_types(world: dict[str, Any]) -> list[str]:
    types: list[str] = []
    while True:
        messages = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10)
        batch = messages.get("Messages", [])
        if not batch:
            return types
        types += [json.loads(m["Body"])["detail-type"] for m in batch]


def test_an_application_consistent_run_of_a_two_instance_group_on_aws(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"])
    instances = {world["db"], world["app"]}

    record = run_group(policy(), "orders", world["backends"])

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.consistency is Consistency.APPLICATION

    # pre to exactly the two instances, all before any snapshot; post to both after them
    order = [
        (op, params["Parameters"]["Phase"][0] if op == "SendCommand" else "snapshot")
        for op, params in world["log"]
    ]
    assert [phase for _, phase in order] == ["pre", "pre", "snapshot", "snapshot", "post", "post"]
    pre = [s for s in world["sends"] if s["Parameters"]["Phase"] == ["pre"]]
    post = [s for s in world["sends"] if s["Parameters"]["Phase"] == ["post"]]
    assert sorted(i for s in pre for i in s["InstanceIds"]) == sorted(instances)
    assert sorted(i for s in post for i in s["InstanceIds"]) == sorted(instances)
    assert {c["InstanceSpecification"]["InstanceId"] for c in world["creates"]} == instances

    # tagged snapshots of every volume of both instances
    snapshots = world["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:quiesce:run-id", "Values": [record.run_id]}]
    )["Snapshots"]
    volumes = world["fleet"].volumes(world["db"]) + world["fleet"].volumes(world["app"])
    assert sorted(s["VolumeId"] for s in snapshots) == sorted(volumes)
    for snapshot in snapshots:
        tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
        assert tags["quiesce:managed"] == "true"
        assert tags["quiesce:policy"] == "shop"
        assert tags["quiesce:group"] == "orders"
        assert tags["quiesce:recovery-point"] == record.recovery_point
        assert tags["quiesce:consistency"] == "application"
        assert tags["quiesce:member"] in {"db", "app"}

    # the recovery point and the run in DynamoDB
    state = world["backends"].state
    assert record.recovery_point is not None
    recovered = state.get_point(record.recovery_point)
    assert recovered is not None
    assert sorted(s.volume for s in recovered.snapshots) == sorted(volumes)
    assert all(s.state.value == "completed" for s in recovered.snapshots)
    stored = state.get_run(record.run_id)
    assert stored is not None
    assert stored.status is RunStatus.SUCCEEDED
    assert state.acquire_lock("shop/orders", "another-run", utcnow()) is None  # released

    # the events reached EventBridge (and a rule's queue); the outbox is empty
    assert state.outbox_pending() == []
    types = received_types(world)
    assert types[0] == "quiesce.run.started"
    assert types.count("quiesce.member.quiesced") == 2
    assert types.count("quiesce.member.snapshot_taken") == 2
    assert types.count("quiesce.member.thawed") == 2
    assert types[-1] == "quiesce.run.completed"


def test_a_failed_pre_hook_falls_back_to_crash_consistent_snapshots_and_still_thaws(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"], failing_phase_member=("pre", "db"))

    record = run_group(policy(), "orders", world["backends"])

    assert record.status is RunStatus.DEGRADED
    assert record.consistency is Consistency.CRASH
    post = [s for s in world["sends"] if s["Parameters"]["Phase"] == ["post"]]
    assert sorted(i for s in post for i in s["InstanceIds"]) == sorted([world["db"], world["app"]])
    snapshots = world["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:quiesce:run-id", "Values": [record.run_id]}]
    )["Snapshots"]
    assert len(snapshots) == 4
    assert {
        t["Value"] for s in snapshots for t in s["Tags"] if t["Key"] == "quiesce:consistency"
    } == {"crash"}
