"""AWS events → the core's normalized TriggerEvent: pure tables and functions.

Each supported event shape has one converter; `convert` picks it from a table keyed by the
event's source and detail-type. Converters read only the fields they name: nothing else in a
payload can reach a run, and no payload can carry a hook, script or command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from quiesce.errors import QuiesceError
from quiesce.triggers.event import TriggerEvent

Event = Mapping[str, Any]


class UnsupportedEvent(QuiesceError):
    """The payload is not an event Quiesce knows how to turn into a trigger."""


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise UnsupportedEvent(f"expected a timestamp, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnsupportedEvent(f"not a timestamp: {value!r}") from None


def _str(value: object) -> str:
    return "" if value is None else str(value)[:256]


def _require(event: Event, *keys: str) -> None:
    missing = [k for k in keys if k not in event]
    if missing:
        raise UnsupportedEvent(f"event lacks {', '.join(missing)}")


def _detail(event: Event) -> Mapping[str, Any]:
    detail = event.get("detail")
    if isinstance(detail, str):  # Scheduler sends "{}" as a string
        detail = json.loads(detail or "{}")
    if not isinstance(detail, Mapping):
        raise UnsupportedEvent("event detail is not an object")
    return detail


# ------------------------------------------------------------------------------ converters


def scheduler(event: Event) -> list[TriggerEvent]:
    """EventBridge Scheduler: the schedule's name (last part of its ARN) is the trigger's."""
    _require(event, "id", "time", "resources")
    arn = _str(event["resources"][0]) if event["resources"] else ""
    parts = arn.split(":schedule/", 1)
    if len(parts) != 2 or "/" not in parts[1]:
        raise UnsupportedEvent(f"not a schedule ARN: {arn!r}")
    group, name = parts[1].split("/", 1)
    return [
        TriggerEvent(
            kind="schedule",
            source="aws.scheduler",
            id=_str(event["id"]),
            time=_time(event["time"]),
            trigger=name,
            attributes={"schedule_group": group, "schedule_arn": arn},
        )
    ]


def codedeploy(event: Event) -> list[TriggerEvent]:
    _require(event, "id", "time", "detail")
    detail = _detail(event)
    return [
        TriggerEvent(
            kind="deploy",
            source="aws.codedeploy",
            id=_str(event["id"]),
            time=_time(event["time"]),
            attributes={
                "provider": "codedeploy",
                "application": _str(detail.get("application")),
                "deployment_group": _str(detail.get("deploymentGroup")),
                "deployment_id": _str(detail.get("deploymentId")),
                "state": _str(detail.get("state")),
                "region": _str(detail.get("region") or event.get("region")),
            },
        )
    ]


def codepipeline(event: Event) -> list[TriggerEvent]:
    _require(event, "id", "time", "detail")
    detail = _detail(event)
    attributes = {
        "provider": "codepipeline",
        "pipeline": _str(detail.get("pipeline")),
        "execution_id": _str(detail.get("execution-id")),
        "state": _str(detail.get("state")),
        "region": _str(event.get("region")),
    }
    if "stage" in detail:
        attributes["stage"] = _str(detail["stage"])
    return [
        TriggerEvent(
            kind="deploy",
            source="aws.codepipeline",
            id=_str(event["id"]),
            time=_time(event["time"]),
            attributes=attributes,
        )
    ]


def cloudwatch_alarm(event: Event) -> list[TriggerEvent]:
    """CloudWatch Alarm State Change, as EventBridge delivers it."""
    _require(event, "id", "time", "detail")
    detail = _detail(event)
    state = detail.get("state") or {}
    previous = detail.get("previousState") or {}
    return [
        TriggerEvent(
            kind="alert",
            source="aws.cloudwatch",
            id=_str(event["id"]),
            time=_time(state.get("timestamp") or event["time"]),
            attributes={
                "provider": "cloudwatch",
                "alarm": _str(detail.get("alarmName")),
                "state": _str(state.get("value")),
                "previous_state": _str(previous.get("value")),
                "region": _str(event.get("region")),
            },
        )
    ]


def cloudwatch_alarm_action(event: Event) -> list[TriggerEvent]:
    """An alarm that invokes the function directly (alarm action `lambda`): it has no event
    id, so the alarm's ARN and the time of its state change identify it."""
    _require(event, "alarmArn", "alarmData")
    data = event["alarmData"]
    state = data.get("state") or {}
    previous = data.get("previousState") or {}
    stamp = _str(state.get("timestamp") or event.get("time"))
    return [
        TriggerEvent(
            kind="alert",
            source="aws.cloudwatch",
            id=f"{_str(event['alarmArn'])}@{stamp}",
            time=_time(stamp),
            attributes={
                "provider": "cloudwatch",
                "alarm": _str(data.get("alarmName")),
                "state": _str(state.get("value")),
                "previous_state": _str(previous.get("value")),
                "region": _str(event.get("region")),
            },
        )
    ]


def sns_alarms(event: Event) -> list[TriggerEvent]:
    """CloudWatch alarms delivered through an SNS topic (one event per record)."""
    out = []
    for record in event["Records"]:
        if record.get("EventSource") != "aws:sns":
            raise UnsupportedEvent(f"not an SNS record: {record.get('EventSource')!r}")
        sns = record["Sns"]
        try:
            message = json.loads(sns["Message"])
        except (TypeError, ValueError):
            raise UnsupportedEvent("the SNS message is not a CloudWatch alarm (not JSON)") from None
        if not isinstance(message, dict) or "AlarmName" not in message:
            raise UnsupportedEvent("the SNS message is not a CloudWatch alarm")
        out.append(
            TriggerEvent(
                kind="alert",
                source="aws.sns",
                id=_str(sns["MessageId"]),
                time=_time(message.get("StateChangeTime") or sns["Timestamp"]),
                attributes={
                    "provider": "cloudwatch",
                    "alarm": _str(message["AlarmName"]),
                    "state": _str(message.get("NewStateValue")),
                    "previous_state": _str(message.get("OldStateValue")),
                    "topic": _str(sns.get("TopicArn")),
                },
            )
        )
    return out


#: (source, detail-type) → converter, for events that come through EventBridge.
EVENTBRIDGE: dict[tuple[str, str], Callable[[Event], list[TriggerEvent]]] = {
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
    if "Records" in event:
        return sns_alarms(event)
    if "alarmData" in event:
        return cloudwatch_alarm_action(event)
    key = (_str(event.get("source")), _str(event.get("detail-type")))
    converter = EVENTBRIDGE.get(key)
    if converter is None:
        raise UnsupportedEvent(f"no converter for source {key[0]!r}, detail-type {key[1]!r}")
    try:
        return converter(event)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UnsupportedEvent(f"malformed {key[1]} event: {exc!r}") from None
