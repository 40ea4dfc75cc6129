"""API calls of one AWS group run, counted on moto, against the lower bound.

The AWS backends the Lambda functions run with (`quiesce_aws.provider.aws_backends`) back up a
group of N EC2 instances (one member selected by tag; a root and a data volume each) in moto,
in-process, through `run_group` with a trigger id, as an entry point does. The group is backed
up once first (not counted), then again with new backends (a new process: no cache carried
over), and that second run is counted: the steady state of a group backed up on a schedule.

Every call the backends' boto3 clients make is counted by a botocore event hook on each client
(`before-parameter-build`: once per call the adapter makes, so an adapter's retry counts again;
botocore's own retries are off). What moto cannot say is said in the same event chain, never
by replacing an adapter's method: each SSM invocation carries the guest runner's JSON result as
soon as it is sent (moto runs no document), and ListCommandInvocations, which moto does not
implement, is answered from moto's invocations 50 per page, as SSM does. moto's snapshots are
`completed` at once, so no call waits on a clock.

Lower bound of one run of N instances, one member, in one region (S snapshots):

    per instance  EC2       CreateSnapshots 1 (all its volumes at one point in time)
    per member    EC2       DescribeInstances 1 (its selection)
                  SSM       SendCommand 1 per phase (pre, post) per 50 instances, and 1
                            ListCommandInvocations per command to read its answers (1 round)
    per run       EC2       DescribeSnapshots 1 for the orphan sweep + 1 per 100 snapshots for
                            durability (1 round)
                  Events    PutEvents 1 per 10 events (3 per instance + 2 per run)
                  DynamoDB  PutItem: trigger claim 1, group lock 1, 1 per run-record write the
                            engine makes (each a phase docs/engine.md's fault matrix recovers
                            from), 2 for the recovery point and its run, 1 per outbox item (one
                            per save that carries events, per 256 KiB of them);
                            DeleteItem: the lock 1; GetItem: settling the recovery point 1, and
                            1 per earlier recovery point the orphan sweep finds; Query: abandoned
                            runs 1 + 1 per outbox flush (one at the start, one at the finish);
                            BatchGetItem 1 per 100 runs listed; BatchWriteItem 1 per 25
                            published outbox items

Usage (through bench/api_calls.py, or alone): python bench/calls_aws.py [--sizes 1,10,100]
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from calls_common import HOOKS, calls_row, group_policy
from catalog_work import bound_inputs, count_catalog_work

#: Without them moto loads ~1,300 public AMIs and boto3 looks for real credentials.
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}
REGION = "eu-central-1"
ACCOUNT = "123456789012"
TABLE = "quiesce-catalog"
BUS = "quiesce-bus"
SERVICES = {"dynamodb": "DynamoDB", "ec2": "EC2", "ssm": "SSM", "eventbridge": "Events"}


@contextmanager
def _environment() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*_ENV, "AWS_PROFILE", "AWS_REGION")}
    os.environ.update(_ENV)
    for name in ("AWS_PROFILE", "AWS_REGION"):
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CountingClients:
    """The adapters' ClientFactory (SessionClients) with a counter on every client it builds
    (botocore's `before-parameter-build` event: once per API call the adapter makes, whoever
    answers it)."""

    def __init__(self, session: Any) -> None:
        from quiesce_aws.clients import SessionClients

        self.inner = SessionClients(session)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._hooked: set[int] = set()
        self.on_client: list[Any] = []

    def _count(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_id.hyphenize()
        with self._lock:
            self.calls[f"{SERVICES.get(service, service)}.{model.name}"] += 1

    def _hook(self, client: Any) -> Any:
        with self._lock:
            if id(client) in self._hooked:
                return client
            self._hooked.add(id(client))
        client.meta.events.register("before-parameter-build", self._count)
        for hook in self.on_client:
            hook(client)
        return client

    def ec2(self, region: str) -> Any:
        return self._hook(self.inner.ec2(region))

    def ssm(self, region: str) -> Any:
        return self._hook(self.inner.ssm(region))

    def events(self, region: str) -> Any:
        return self._hook(self.inner.events(region))

    def dynamodb(self, region: str) -> Any:
        return self._hook(self.inner.dynamodb(region))


def _policy(size: int) -> Any:
    return group_policy(
        {
            "name": "app",
            "provider": "aws",
            "region": REGION,
            "select": {"tags": {"role": "app"}},
            "hooks": HOOKS,
        }
    )


def _runner_answer() -> str:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "status": "succeeded",
            "code": "Succeeded",
            "message": "ok",
            "exit_code": 0,
            "attempts": 1,
            "by": "orchestrator",
            "started_at": now,
            "ended_at": now,
        }
    )


def _answer_like_ssm(client: Any) -> None:
    """What moto's SSM cannot say, said in botocore's own event chain of the client:

    - after each SendCommand, moto's invocations of the command (only of the instances it was
      sent to: moto adds every instance of the region) carry the runner's result, as the
      instance would have printed it (an after-call hook: it changes no request);
    - ListCommandInvocations, which moto does not implement, is answered from moto's
      invocations the way SSM answers it (50 per page, the plugin's output), after it is
      counted like any call.
    """
    if client.meta.service_model.service_id.hyphenize() != "ssm":
        return
    from botocore.awsrequest import AWSResponse, HTTPHeaders
    from moto.ssm.models import ssm_backends

    sent: dict[str, list[str]] = {}

    def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = dict(params)

    def answered(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Command" not in parsed:
            return
        command_id = parsed["Command"]["CommandId"]
        ids = list(context["bench_params"]["InstanceIds"])
        sent[command_id] = ids
        command = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id)
        for invocation in command.invocations:
            if invocation["InstanceId"] in ids:
                invocation["StandardOutputContent"] = _runner_answer() + "\n"

    def list_invocations(context: dict[str, Any], **_: Any) -> Any:
        params = context["bench_params"]
        command_id = params["CommandId"]
        command = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id)
        mine = [i for i in command.invocations if i["InstanceId"] in sent.get(command_id, [])]
        start = int(params.get("NextToken") or 0)
        page = mine[start : start + int(params.get("MaxResults") or 50)]
        items = [
            {
                "CommandId": command_id,
                "InstanceId": i["InstanceId"],
                "Status": i["Status"],
                "StatusDetails": i["StatusDetails"],
                "CommandPlugins": [
                    {
                        "Name": "runHook",
                        "Status": i["Status"],
                        "ResponseCode": i["ResponseCode"],
                        "Output": i["StandardOutputContent"][:2500],
                    }
                ],
            }
            for i in page
        ]
        parsed: dict[str, Any] = {
            "CommandInvocations": items,
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}},
        }
        if start + len(page) < len(mine):
            parsed["NextToken"] = str(start + len(page))
        return AWSResponse("https://ssm.invalid", 200, HTTPHeaders(), None), parsed

    for operation in ("SendCommand", "ListCommandInvocations"):
        client.meta.events.register(f"before-parameter-build.ssm.{operation}", keep_params)
    client.meta.events.register("after-call.ssm.SendCommand", answered)
    client.meta.events.register("before-call.ssm.ListCommandInvocations", list_invocations)


def _launch(session: Any, size: int) -> None:
    from moto.ec2.models import ec2_backends  # noqa: F401  (moto's EC2 is loaded)

    ec2 = session.client("ec2", region_name=REGION)
    ami = ec2.register_image(Name="linux", RootDeviceName="/dev/sda1")["ImageId"]
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=ami,
            MinCount=size,
            MaxCount=size,
            Placement={"AvailabilityZone": f"{REGION}a"},
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "app"}]}
            ],
        )["Instances"]
    ]
    for instance_id in ids:
        volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)
        ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance_id, Device="/dev/sdf")


def lower_bound(
    size: int,
    *,
    events: int,
    saves: int,
    points: int,
    outbox_items: int,
    flushes: int,
    snapshots: int,
    earlier_runs: int,
    earlier_points: int,
) -> dict[str, int]:
    """The lower bound by operation (see the module docstring), from what the run had to do:
    `saves` writes of its record, `points` recovery points (each with its record),
    `outbox_items` outbox items (one per save that carried events, per 256 KiB of them),
    `flushes` outbox flushes, `snapshots` EBS snapshots; the catalog held `earlier_runs` runs
    and `earlier_points` recovery points before."""
    members = [size]  # one member of `size` instances
    commands = sum(math.ceil(n / 50) for n in members)
    return {
        "DynamoDB.PutItem": 1 + 1 + saves + 2 * points + outbox_items,
        "DynamoDB.DeleteItem": 1,
        "DynamoDB.GetItem": 1 + earlier_points,
        "DynamoDB.Query": 1 + flushes,
        "DynamoDB.BatchGetItem": math.ceil(earlier_runs / 100),
        "DynamoDB.BatchWriteItem": math.ceil(outbox_items / 25),
        "EC2.DescribeInstances": len(members),
        "EC2.CreateSnapshots": size,
        "EC2.DescribeSnapshots": 1 + math.ceil(snapshots / 100),
        "SSM.SendCommand": 2 * commands,
        "SSM.ListCommandInvocations": 2 * commands,
        "Events.PutEvents": math.ceil(events / 10),
    }


LOWER_BOUND_NOTE = (
    "per instance: CreateSnapshots 1; per member and phase: SendCommand and one "
    "ListCommandInvocations per 50 instances, DescribeInstances 1 per member; per run: "
    "DescribeSnapshots 1 (orphan sweep) + 1 per 100 snapshots (durability), PutEvents 1 per "
    "10 events; DynamoDB: claim 1, lock 1 + unlock 1, 1 PutItem per run-record write the "
    "engine's crash safety needs, 2 for the recovery point and its run, 1 outbox PutItem per "
    "save carrying events (per 256 KiB), 1 Query per outbox flush + 1 for abandoned runs, 1 "
    "BatchWriteItem per 25 published outbox items, 1 GetItem to settle the recovery point, "
    "1 BatchGetItem per 100 runs listed, 1 GetItem per earlier point the orphan sweep finds"
)


def measure(size: int) -> dict[str, Any]:
    """Backs up a group of `size` instances once on moto; calls by operation and the bound."""
    with _environment():
        import boto3
        from moto import mock_aws

        from quiesce.engine import run_group
        from quiesce.record import RunStatus
        from quiesce_aws.provider import aws_backends
        from quiesce_aws.state import table_definition

        with mock_aws():
            session = boto3.session.Session(region_name=REGION)
            _launch(session, size)
            session.client("dynamodb", region_name=REGION).create_table(**table_definition(TABLE))
            session.client("events", region_name=REGION).create_event_bus(Name=BUS)
            policy = _policy(size)
            env = {"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": BUS, "QUIESCE_REGION": REGION}

            def run(trigger: str) -> tuple[Any, CountingClients, Counter[str]]:
                """One run with backends of its own (a new process's, no cache shared)."""
                clients = CountingClients(session)
                clients.on_client.append(_answer_like_ssm)
                backends = aws_backends(policy, session, clients=clients, env=env)  # type: ignore[arg-type]
                did = count_catalog_work(backends.state)
                record = run_group(policy, "orders", backends, trigger_id=trigger)
                if record.status is not RunStatus.SUCCEEDED:
                    raise RuntimeError(f"the bench run did not succeed: {record.errors}")
                return record, clients, did

            run(f"bench-{size}-first")  # the group's first backup, not counted
            record, clients, did = run(f"bench-{size}")
            calls = dict(sorted(clients.calls.items()))
            snapshots = sum(len(mc.snapshots) for _, mc in record.machines())
    bound = lower_bound(
        size, **bound_inputs(did), snapshots=snapshots, earlier_runs=1, earlier_points=1
    )
    return calls_row("aws", size, calls, bound, LOWER_BOUND_NOTE, per_vm=False)


if __name__ == "__main__":
    from api_calls import main

    raise SystemExit(main(["--clouds", "aws", *sys.argv[1:]]))
