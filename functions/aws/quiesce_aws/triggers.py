"""AWS events → the core's normalized TriggerEvent: pure tables and functions.

Each supported event shape has one converter; `convert` picks it from a table keyed by the
event's source and detail-type. The envelopes are read through Powertools' event data classes
(`EventBridgeEvent`, `SNSEvent`, `CloudWatchAlarmEvent`); the field helpers are the core's
(quiesce.triggers.convert). Converters read only the fields they name: nothing else in a
payload can reach a run, and no payload can carry a hook, script or command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import (
    CloudWatchAlarmEvent,
    EventBridgeEvent,
    SNSEvent,
)

from quiesce.triggers.convert import (
    UnsupportedEvent,
    identifier,
    mapping,
    reading,
    require,
    text,
    timestamp,
)
from quiesce.triggers.cron import validate_cron
from quiesce.triggers.event import TriggerEvent


def _detail(event: EventBridgeEvent) -> Mapping[str, Any]:
    detail: object = event.detail
    if isinstance(detail, str):  # Scheduler sends "{}" as a string
        detail = json.loads(detail or "{}")
    return mapping(detail, "event detail")


# ------------------------------------------------------------------------------ converters


def scheduler(event: EventBridgeEvent) -> list[TriggerEvent]:
    """EventBridge Scheduler: the schedule's name (last part of its ARN) is the trigger's."""
    require(event, "id", "time", "resources")
    arn = text(event.resources[0]) if event.resources else ""
    parts = arn.split(":schedule/", 1)
    if len(parts) != 2 or "/" not in parts[1]:
        raise UnsupportedEvent(f"not a schedule ARN: {arn!r}")
    group, name = parts[1].split("/", 1)
    return [
        TriggerEvent(
            kind="schedule",
            source="aws.scheduler",
            id=identifier(text(event.get_id)),
            time=timestamp(event.time),
            trigger=name,
            attributes={"schedule_group": group, "schedule_arn": arn},
        )
    ]


def codedeploy(event: EventBridgeEvent) -> list[TriggerEvent]:
    require(event, "id", "time", "detail")
    detail = _detail(event)
    return [
        TriggerEvent(
            kind="deploy",
            source="aws.codedeploy",
            id=identifier(text(event.get_id)),
            time=timestamp(event.time),
            attributes={
                "provider": "codedeploy",
                "application": text(detail.get("application")),
                "deployment_group": text(detail.get("deploymentGroup")),
                "deployment_id": text(detail.get("deploymentId")),
                "state": text(detail.get("state")),
                "region": text(detail.get("region") or event.get("region")),
            },
        )
    ]


def codepipeline(event: EventBridgeEvent) -> list[TriggerEvent]:
    require(event, "id", "time", "detail")
    detail = _detail(event)
    attributes = {
        "provider": "codepipeline",
        "pipeline": text(detail.get("pipeline")),
        "execution_id": text(detail.get("execution-id")),
        "state": text(detail.get("state")),
        "region": text(event.get("region")),
    }
    if "stage" in detail:
        attributes["stage"] = text(detail["stage"])
    return [
        TriggerEvent(
            kind="deploy",
            source="aws.codepipeline",
            id=identifier(text(event.get_id)),
            time=timestamp(event.time),
            attributes=attributes,
        )
    ]


def cloudwatch_alarm(event: EventBridgeEvent) -> list[TriggerEvent]:
    """CloudWatch Alarm State Change, as EventBridge delivers it."""
    require(event, "id", "time", "detail")
    detail = _detail(event)
    state = mapping(detail.get("state") or {}, "the alarm's state")
    previous = mapping(detail.get("previousState") or {}, "the alarm's previous state")
    return [
        TriggerEvent(
            kind="alert",
            source="aws.cloudwatch",
            id=identifier(text(event.get_id)),
            time=timestamp(state.get("timestamp") or event.time),
            attributes={
                "provider": "cloudwatch",
                "alarm": text(detail.get("alarmName")),
                "state": text(state.get("value")),
                "previous_state": text(previous.get("value")),
                "region": text(event.get("region")),
            },
        )
    ]


def cloudwatch_alarm_action(event: CloudWatchAlarmEvent) -> list[TriggerEvent]:
    """An alarm that invokes the function directly (alarm action `lambda`): it has no event
    id, so the alarm's ARN and the time of its state change identify it."""
    require(event, "alarmArn", "alarmData")
    data = event.alarm_data
    state = mapping(data.get("state") or {}, "the alarm's state")
    previous = mapping(data.get("previousState") or {}, "the alarm's previous state")
    stamp = text(state.get("timestamp") or event.get("time"))
    return [
        TriggerEvent(
            kind="alert",
            source="aws.cloudwatch",
            id=identifier(f"{text(event.alarm_arn)}@{stamp}"),
            time=timestamp(stamp),
            attributes={
                "provider": "cloudwatch",
                "alarm": text(data.get("alarmName")),
                "state": text(state.get("value")),
                "previous_state": text(previous.get("value")),
                "region": text(event.get("region")),
            },
        )
    ]


def sns_alarms(event: SNSEvent) -> list[TriggerEvent]:
    """CloudWatch alarms delivered through an SNS topic (one event per record)."""
    out = []
    for record in event.records:
        if record.get("EventSource") != "aws:sns":
            raise UnsupportedEvent(f"not an SNS record: {record.get('EventSource')!r}")
        sns = record.sns
        try:
            message = json.loads(sns.message)
        except (TypeError, ValueError):
            raise UnsupportedEvent("the SNS message is not a CloudWatch alarm (not JSON)") from None
        if not isinstance(message, dict) or "AlarmName" not in message:
            raise UnsupportedEvent("the SNS message is not a CloudWatch alarm")
        out.append(
            TriggerEvent(
                kind="alert",
                source="aws.sns",
                id=identifier(text(sns.message_id)),
                time=timestamp(message.get("StateChangeTime") or sns.timestamp),
                attributes={
                    "provider": "cloudwatch",
                    "alarm": text(message["AlarmName"]),
                    "state": text(message.get("NewStateValue")),
                    "previous_state": text(message.get("OldStateValue")),
                    "topic": text(sns.get("TopicArn")),
                },
            )
        )
    return out


#: (source, detail-type) → converter, for events that come through EventBridge.
EVENTBRIDGE: dict[tuple[str, str], Callable[[EventBridgeEvent], list[TriggerEvent]]] = {
    ("aws.scheduler", "Scheduled Event"): scheduler,
    ("aws.codedeploy", "CodeDeploy Deployment State-change Notification"): codedeploy,
    ("aws.codepipeline", "CodePipeline Pipeline Execution State Change"): codepipeline,
    ("aws.codepipeline", "CodePipeline Stage Execution State Change"): codepipeline,
    ("aws.cloudwatch", "CloudWatch Alarm State Change"): cloudwatch_alarm,
}


def convert(event: object) -> list[TriggerEvent]:
    """Turns any supported Lambda payload into trigger events; UnsupportedEvent otherwise."""
    if not isinstance(event, Mapping):
        raise UnsupportedEvent("the payload is not a JSON object")
    raw = dict(event)
    if "Records" in raw:
        with reading("SNS event"):
            return sns_alarms(SNSEvent(raw))
    if "alarmData" in raw:
        with reading("CloudWatch alarm action"):
            return cloudwatch_alarm_action(CloudWatchAlarmEvent(raw))
    key = (text(raw.get("source")), text(raw.get("detail-type")))
    converter = EVENTBRIDGE.get(key)
    if converter is None:
        raise UnsupportedEvent(f"no converter for source {key[0]!r}, detail-type {key[1]!r}")
    with reading(f"{key[1]} event"):
        return converter(EventBridgeEvent(raw))


# ------------------------------------------------------------------------------ schedules


def to_eventbridge(expression: str) -> str:
    """A policy's five-field cron as `cron(...)` for EventBridge Scheduler: six fields, with
    `?` in day-of-month or day-of-week, and days of the week numbered 1-7 from Sunday."""
    minute, hour, dom, month, dow = validate_cron(expression).split()
    if dow != "*":
        dom = "?"
        dow = ",".join(_shift_dow(item) for item in dow.split(","))
    else:
        dow = "?"
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def _shift_dow(item: str) -> str:
    def shift(v: str) -> str:
        if v.isdigit():
            return str(int(v) % 7 + 1)
        return v.upper()

    body, _, step = item.partition("/")
    if body == "*":
        return item
    shifted = "-".join(shift(v) for v in body.split("-"))
    return f"{shifted}/{step}" if step else shifted
