"""The Lambda entry points, driven by AWS's documented event payloads (tests/aws/payloads)
against moto: a schedule backs up a two-instance group, a duplicate delivery runs nothing, an
alert inside its cooldown runs nothing, an alarm's recovery or suppressed actions start nothing,
a stage event fires only the stage's trigger, and events of the wrong kind or shape are refused
with the reason (answered, never raised)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce_aws import handler
from quiesce_aws.clients import SessionClients
from quiesce_aws.provider import aws_backends
from quiesce_aws.state import table_definition

from .conftest import REGION, Fleet, Wire, hooked_vm, on_send_command, runner_answers

PAYLOADS = Path(__file__).resolve().parent / "payloads"
TABLE = "quiesce-catalog"
BUS = "quiesce-bus"


def golden(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return payload


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
    "triggers": [
        # the documented schedule's name (arn:...:schedule/default/aaaaa)
        {"name": "aaaaa", "group": "orders", "schedule": "0 4 * * *"},
        {"name": "deployed", "group": "orders", "on": "deploy", "match": {"state": "SUCCESS"}},
        {"name": "release", "group": "orders", "on": "deploy", "match": {"pipeline": "myPipeline"}},
        {
            "name": "prod-stage",
            "group": "orders",
            "on": "deploy",
            "match": {"pipeline": "myPipeline", "stage": "Prod"},
        },
        {
            "name": "cpu-alarm",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "ServerCpuTooHigh"},
            "cooldown_minutes": 60,
        },
        {
            "name": "lambda-alarm",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "Test alert"},
        },
        {"name": "sns-alarm", "group": "orders", "on": "alert", "match": {"alarm": "EXAMPLE"}},
        {
            "name": "composite",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "ServiceAggregatedAlarm"},
        },
    ],
}


class Context:
    """What Lambda passes as the context (the fields powertools reads)."""

    function_name = "quiesce-schedule"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:quiesce-schedule"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def world(
    clients: SessionClients,
    fleet: Fleet,
    wire: Wire,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    instances = [fleet.launch(1, tags={"role": role})[0] for role in ("db", "app")]
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    events = clients.events(REGION)
    events.create_event_bus(Name=BUS)
    sqs = clients.session.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="quiesce-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["quiesce"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("QUIESCE_POLICY", str(policy_file))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Quiesce")
    handler.policy.cache_clear()
    env = {"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": BUS, "QUIESCE_REGION": REGION}
    built = aws_backends(handler.policy(), clients=clients, env=env)
    monkeypatch.setattr(handler, "backends", lambda: built)
    ssm, ec2 = clients.ssm(REGION), clients.ec2(REGION)
    yield {
        "instances": instances,
        "fleet": fleet,
        "ssm": ssm,
        "ec2": ec2,
        "sqs": sqs,
        "queue": queue,
        "sends": wire.sent(ssm, "SendCommand"),
        "creates": wire.sent(ec2, "CreateSnapshots"),
        "log": wire.log,
        "state": built.state,
    }
    handler.policy.cache_clear()


def phases(world: dict[str, Any]) -> list[str]:
    return [
        params["Parameters"]["Phase"][0] if op == "SendCommand" else "snapshot"
        for op, params in world["log"]
    ]


def queued_types(world: dict[str, Any]) -> list[str]:
    types: list[str] = []
    while (
        batch := world["sqs"]
        .receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10)
        .get("Messages", [])
    ):
        types += [json.loads(m["Body"])["detail-type"] for m in batch]
    return types


def test_a_scheduler_event_backs_up_the_group_through_the_schedule_function(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"])

    response = handler.schedule_handler(golden("eventbridge_scheduler.json"), Context())

    (outcome,) = response["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("aaaaa", "ran")
    result = outcome["result"]
    assert (result["status"], result["consistency"]) == ("succeeded", "application")
    assert phases(world) == ["pre", "pre", "snapshot", "snapshot", "post", "post"]
    for phase in ("pre", "post"):
        sent = [s for s in world["sends"] if s["Parameters"]["Phase"] == [phase]]
        assert sorted(i for s in sent for i in s["InstanceIds"]) == sorted(world["instances"])
    snapshots = world["ec2"].describe_snapshots(
        OwnerIds=["self"],
        Filters=[{"Name": "tag:quiesce:recovery-point", "Values": [result["recovery_point"]]}],
    )["Snapshots"]
    volumes = [v for i in world["instances"] for v in world["fleet"].volumes(i)]
    assert sorted(s["VolumeId"] for s in snapshots) == sorted(volumes)
    assert {t["Value"] for s in snapshots for t in s["Tags"] if t["Key"] == "quiesce:run-id"} == {
        result["run_id"]
    }
    types = queued_types(world)
    assert types[0] == "quiesce.run.started"
    assert types[-1] == "quiesce.run.completed"
    started = world["state"].get_run(result["run_id"])
    assert started is not None
    assert started.trigger_id == "aws.scheduler:d167b752-343a-4b28-afd6-d4de056319e8:aaaaa"


def test_a_duplicate_delivery_of_the_same_event_starts_no_second_run(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"])
    first = handler.schedule_handler(golden("eventbridge_scheduler.json"), Context())
    sends = len(world["sends"])
    again = handler.schedule_handler(golden("eventbridge_scheduler.json"), Context())
    (outcome,) = again["outcomes"]
    assert outcome["action"] == "duplicate"
    assert outcome["result"]["run_id"] == first["outcomes"][0]["result"]["run_id"]
    assert len(world["sends"]) == sends, "no command was sent again"


def test_an_alert_inside_its_cooldown_starts_no_run(world: dict[str, Any], wire: Wire) -> None:
    runner_answers(wire, world["ssm"])
    alarm = golden("cloudwatch_alarm_state_change.json")
    assert handler.alert_handler(alarm, Context())["outcomes"][0]["action"] == "ran"
    sends = len(world["sends"])
    alarm["id"] = "a-second-alarm-event"
    (held,) = handler.alert_handler(alarm, Context())["outcomes"]
    assert (held["action"], held["trigger"]) == ("cooldown", "cpu-alarm")
    assert len(world["sends"]) == sends


def test_an_alarm_delivered_through_sns_fires_the_alert_trigger(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"])
    (outcome,) = handler.alert_handler(golden("cloudwatch_alarm_sns.json"), Context())["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("sns-alarm", "ran")


def test_a_deployment_fires_the_deploy_trigger(world: dict[str, Any], wire: Wire) -> None:
    runner_answers(wire, world["ssm"])
    payload = golden("codedeploy_deployment_success.json")
    (outcome,) = handler.deploy_handler(payload, Context())["outcomes"]
    assert (outcome["trigger"], outcome["result"]["status"]) == ("deployed", "succeeded")


def test_a_timed_out_pre_hook_with_abort_takes_no_snapshot_and_thaws_both_instances(
    world: dict[str, Any], wire: Wire
) -> None:
    runner_answers(wire, world["ssm"], failing_phase_member=("pre", "app"))
    (outcome,) = handler.schedule_handler(golden("eventbridge_scheduler.json"), Context())[
        "outcomes"
    ]
    assert (outcome["result"]["status"], outcome["result"]["recovery_point"]) == ("failed", None)
    assert "snapshot" not in phases(world)
    assert phases(world).count("post") == 2


def test_an_event_of_another_kind_is_refused_by_a_function(
    world: dict[str, Any], wire: Wire
) -> None:
    response = handler.deploy_handler(golden("cloudwatch_alarm_state_change.json"), Context())
    assert (response["status"], response["outcomes"]) == ("refused", [])
    assert "an alert event (aws.cloudwatch) reached the deploy function" in response["reason"]
    assert world["sends"] == []


def test_a_payload_that_is_no_known_event_is_refused_with_the_reason(
    world: dict[str, Any],
) -> None:
    response = handler.schedule_handler({"command": "rm -rf /"}, Context())
    assert response["status"] == "refused"
    assert "no converter" in response["reason"]
    assert world["sends"] == []


def test_a_deployment_that_matches_no_trigger_is_ignored(world: dict[str, Any]) -> None:
    payload = golden("codepipeline_pipeline_started.json")
    payload["detail"]["pipeline"] = "another-pipeline"
    response = handler.deploy_handler(payload, Context())
    assert (response["status"], response["outcomes"]) == ("ignored", [])
    assert world["sends"] == []


def test_a_function_whose_time_cannot_hold_the_freeze_refuses_to_start(
    world: dict[str, Any],
) -> None:
    response = handler.schedule_handler(
        golden("eventbridge_scheduler.json"), Context(remaining_ms=20_000)
    )
    assert (response["status"], response["outcomes"]) == ("refused", [])
    assert "group 'orders' needs at least 90s" in response["reason"]
    assert "raise the function's timeout" in response["reason"]
    assert world["sends"] == []


def test_an_ssm_invocation_that_timed_out_falls_back_and_everyone_is_thawed(
    world: dict[str, Any], wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same group with on_quiesce_failure: fallback; the app instance's pre command times
    out in SSM (the runner never answered)."""
    fallback = json.loads(json.dumps(POLICY))
    fallback["groups"]["orders"]["on_quiesce_failure"] = "fallback"
    policy_file = Path(str(handler.os.environ["QUIESCE_POLICY"]))
    policy_file.write_text(yaml.safe_dump(fallback))
    handler.policy.cache_clear()
    runner_answers(wire, world["ssm"])

    def time_out_app_pre(command_id: str, invocation: dict[str, Any]) -> dict[str, Any] | None:
        from moto.ssm.models import ssm_backends

        from .conftest import ACCOUNT

        params = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id).parameters
        if (params["Phase"][0], params["Member"][0]) == ("pre", "app"):
            return {
                "Status": "TimedOut",
                "StatusDetails": "Execution Timed Out",
                "StandardOutputContent": "",
            }
        return None

    on_send_command(wire, world["ssm"], time_out_app_pre)
    (outcome,) = handler.schedule_handler(golden("eventbridge_scheduler.json"), Context())[
        "outcomes"
    ]
    result = outcome["result"]
    assert (result["status"], result["consistency"]) == ("degraded", "crash")
    app = next(m for m in result["members"] if m["name"] == "app")
    assert app["pre"] == "timed_out"
    assert phases(world).count("post") == 2, "the timed-out member is thawed too"
    assert phases(world).count("snapshot") == 2


# ------------------------------------------------------------- alarms that recover or are held


@pytest.mark.parametrize(
    ("name", "trigger"),
    [
        ("cloudwatch_alarm_state_change_ok.json", "cpu-alarm"),
        ("cloudwatch_alarm_action_ok.json", "lambda-alarm"),
        ("cloudwatch_alarm_sns_ok.json", "sns-alarm"),
    ],
)
def test_an_alarm_that_recovers_starts_no_backup_and_leaves_the_cooldown_alone(
    world: dict[str, Any], wire: Wire, name: str, trigger: str
) -> None:
    """A trigger that names only the alarm fires while it fires: its OK (delivered by
    EventBridge, by the alarm's Lambda action or through SNS) is ignored, and the next real
    alarm still runs."""
    runner_answers(wire, world["ssm"])
    response = handler.alert_handler(golden(name), Context())
    assert (response["status"], response["outcomes"]) == ("ignored", [])
    assert world["sends"] == []

    firing = golden(name.replace("_ok.json", ".json"))
    (outcome,) = handler.alert_handler(firing, Context())["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == (trigger, "ran")


def test_a_trigger_that_asks_for_the_recovery_gets_it(
    world: dict[str, Any], wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    asks = json.loads(json.dumps(POLICY))
    asks["triggers"] = [
        {
            "name": "after-recovery",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "ServerCpuTooHigh", "condition": "resolved"},
        }
    ]
    Path(str(handler.os.environ["QUIESCE_POLICY"])).write_text(yaml.safe_dump(asks))
    handler.policy.cache_clear()
    runner_answers(wire, world["ssm"])
    alarm = handler.alert_handler(golden("cloudwatch_alarm_state_change.json"), Context())
    assert alarm["status"] == "ignored"
    recovery = handler.alert_handler(golden("cloudwatch_alarm_state_change_ok.json"), Context())
    (outcome,) = recovery["outcomes"]
    assert (outcome["trigger"], outcome["result"]["status"]) == ("after-recovery", "succeeded")


def test_a_composite_alarm_whose_actions_are_suppressed_starts_no_backup(
    world: dict[str, Any],
) -> None:
    payload = golden("cloudwatch_composite_alarm_suppressed.json")
    response = handler.alert_handler(payload, Context())
    assert (response["status"], response["outcomes"]) == ("ignored", [])
    assert world["sends"] == []


def test_the_action_a_composite_alarm_runs_after_its_wait_period_backs_up(
    world: dict[str, Any], wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS's composite alarm action sample: the previous state's actions were suppressed, this
    invocation is the alarm's action, so it fires."""
    runner_answers(wire, world["ssm"])
    payload = golden("cloudwatch_alarm_action_composite.json")
    payload["alarmData"]["alarmName"] = "ServiceAggregatedAlarm"
    (outcome,) = handler.alert_handler(payload, Context())["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("composite", "ran")


# ------------------------------------------------------------- CodePipeline: pipeline vs stage


@pytest.mark.parametrize(
    ("name", "trigger"),
    [
        ("codepipeline_pipeline_started.json", "release"),
        ("codepipeline_stage_started.json", "prod-stage"),
    ],
)
def test_a_pipeline_event_fires_the_pipeline_trigger_and_a_stage_event_the_stage_trigger(
    world: dict[str, Any], wire: Wire, name: str, trigger: str
) -> None:
    """One release, one backup: `release` names only the pipeline, so the Prod stage starting
    does not fire it again."""
    runner_answers(wire, world["ssm"])
    (outcome,) = handler.deploy_handler(golden(name), Context())["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == (trigger, "ran")


# ------------------------------------------------------------- malformed input: refused, answered


@pytest.mark.parametrize(
    ("function", "payload", "reason"),
    [
        (
            "deploy_handler",
            {**golden("codedeploy_deployment_success.json"), "detail": "{'state': 'SUCCESS'"},
            "the event's detail is a string that is not JSON",
        ),
        (
            "alert_handler",
            {**golden("cloudwatch_alarm_state_change.json"), "detail": "not json"},
            "the event's detail is a string that is not JSON",
        ),
        (
            "alert_handler",
            {
                "Records": [
                    {
                        **golden("cloudwatch_alarm_sns.json")["Records"][0],
                        "Sns": {
                            k: v
                            for k, v in golden("cloudwatch_alarm_sns.json")["Records"][0][
                                "Sns"
                            ].items()
                            if k != "MessageId"
                        },
                    }
                ]
            },
            "SNS record 1 lacks MessageId",
        ),
        ("alert_handler", {"Records": ["not a record"]}, "SNS record 1 is not an object"),
    ],
)
def test_a_malformed_payload_is_answered_refused_with_the_reason_not_raised(
    world: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    function: str,
    payload: dict[str, Any],
    reason: str,
) -> None:
    """Raising would make Lambda retry the same payload and then dead-letter it."""
    response = getattr(handler, function)(payload, Context())
    assert (response["status"], response["outcomes"]) == ("refused", [])
    assert reason in response["reason"]
    assert world["sends"] == []
    assert next((r.levelname, r.getMessage()) for r in caplog.records) == (
        "ERROR",
        f"event refused: {response['reason']}",
    )
