"""A delivery that fails after its trigger was claimed is delivered again, and the redelivery
backs the group up exactly once (docs/triggers.md, "Claims belong to runs").

AWS's documented alarm state change goes through the real alert function on moto. On the first
delivery DynamoDB answers the group lock's write with ProvisionedThroughputExceededException
for longer than the state store retries (a botocore hook on the store's own client; nothing of
the adapter is replaced): the function raises, as it must for EventBridge to deliver the event
again, and nothing was frozen. The second delivery of the same event takes the trigger over and
runs; a third runs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce.errors import ProviderError
from quiesce_aws import handler
from quiesce_aws.clients import SessionClients
from quiesce_aws.provider import aws_backends
from quiesce_aws.state import DynamoDbStateStore, table_definition

from .conftest import REGION, Fleet, Sleeps, Wire, hooked_vm, quick_backoff, runner_answers
from .test_handlers import Context

PAYLOADS = Path(__file__).resolve().parent / "payloads"
TABLE = "quiesce-catalog"
BUS = "quiesce-bus"
THROTTLED = "ProvisionedThroughputExceededException"

POLICY = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "consistency": "application",
            "on_quiesce_failure": "abort",
            "max_freeze_seconds": 30,
            "durability_timeout_seconds": 60,
            "members": [hooked_vm(name, hooks_dir="/etc/quiesce") for name in ("db", "app")],
        }
    },
    # names only the alarm: fires while it fires, with the default cooldown of alert triggers
    "triggers": [
        {"name": "cpu-alarm", "group": "orders", "on": "alert", "match": {"alarm": "ServerCpu*"}}
    ],
}


@pytest.fixture
def world(
    clients: SessionClients,
    fleet: Fleet,
    wire: Wire,
    sleeps: Sleeps,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    instances = [fleet.launch(1, tags={"role": role})[0] for role in ("db", "app")]
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    clients.events(REGION).create_event_bus(Name=BUS)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("QUIESCE_POLICY", str(policy_file))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Quiesce")
    handler.policy.cache_clear()
    env = {"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": BUS, "QUIESCE_REGION": REGION}
    built = aws_backends(handler.policy(), clients=clients, env=env)
    assert isinstance(built.state, DynamoDbStateStore)
    built.state.backoff = quick_backoff(sleeps, attempts=3)  # its retries, without the waits
    monkeypatch.setattr(handler, "backends", lambda: built)
    ssm, ec2 = clients.ssm(REGION), clients.ec2(REGION)
    runner_answers(wire, ssm)
    yield {
        "instances": instances,
        "state": built.state,
        "dynamodb": clients.dynamodb(REGION),
        "ec2": ec2,
        "pres": wire.sent(ssm, "SendCommand"),
        "creates": wire.sent(ec2, "CreateSnapshots"),
    }
    handler.policy.cache_clear()


def alarm() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (PAYLOADS / "cloudwatch_alarm_state_change.json").read_text()
    )
    return payload


def is_lock_write(params: dict[str, Any]) -> bool:
    return str(params.get("Item", {}).get("pk", {}).get("S", "")).startswith("LOCK#")


def phases(sent: list[dict[str, Any]]) -> list[str]:
    return [s["Parameters"]["Phase"][0] for s in sent]


def test_a_redelivery_after_a_throttled_lock_write_backs_up_the_group_once(
    world: dict[str, Any], wire: Wire, sleeps: Sleeps
) -> None:
    left = wire.fail(world["dynamodb"], "PutItem", THROTTLED, times=3, when=is_lock_write)

    with pytest.raises(ProviderError, match=THROTTLED):
        handler.alert_handler(alarm(), Context())  # raised: EventBridge delivers it again

    assert left == [0], "every attempt at the lock met the throttling"
    assert len(sleeps.waits) == 2, "the store retried before it gave up"
    assert world["pres"] == [], "nothing was frozen"
    assert world["creates"] == [], "nothing was snapshotted"
    state = world["state"]
    (failed,) = state.list_runs("shop")
    assert (failed.status, failed.began_quiesce) == ("failed", False)
    assert "the run could not start" in failed.errors[0]
    trigger_id = "aws.cloudwatch:c4c1c1c9-6542-e61b-6ef0-8c4d36933a92:cpu-alarm"
    assert failed.trigger_id == trigger_id

    again = handler.alert_handler(alarm(), Context())  # the redelivery: same event, same id

    (outcome,) = again["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("cpu-alarm", "ran")
    assert outcome["result"]["status"] == "succeeded"
    runs = {run.run_id: run for run in state.list_runs("shop")}
    assert sorted(run.status for run in runs.values()) == ["failed", "succeeded"]
    ran = runs[outcome["result"]["run_id"]]
    assert (ran.replaces, ran.trigger_id) == (failed.run_id, trigger_id)
    (point,) = state.list_points("shop")
    assert point.run_id == ran.run_id
    assert phases(world["pres"]) == ["pre", "pre", "post", "post"]
    assert len(world["creates"]) == 2  # one CreateSnapshots per instance, once
    snapshots = world["ec2"].describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert {t["Value"] for s in snapshots for t in s["Tags"] if t["Key"] == "quiesce:run-id"} == {
        ran.run_id
    }

    third = handler.alert_handler(alarm(), Context())  # yet another delivery runs nothing

    (held,) = third["outcomes"]
    assert held["action"] != "ran"
    assert len(state.list_runs("shop")) == 2
    assert len(world["creates"]) == 2
    assert len(world["pres"]) == 4


def test_a_failed_start_does_not_spend_the_alert_cooldown(
    world: dict[str, Any], wire: Wire
) -> None:
    """The first delivery never began its quiesce, so a later alarm of the same group (another
    event) is not held back by the default cooldown either."""
    wire.fail(world["dynamodb"], "PutItem", THROTTLED, times=3, when=is_lock_write)
    with pytest.raises(ProviderError):
        handler.alert_handler(alarm(), Context())

    later = alarm()
    later["id"] = "another-alarm-state-change"
    (outcome,) = handler.alert_handler(later, Context())["outcomes"]
    assert (outcome["action"], outcome["result"]["status"]) == ("ran", "succeeded")
