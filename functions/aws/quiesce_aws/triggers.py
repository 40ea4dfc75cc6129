"""AWS events → the core's normalized TriggerEvent: pure tables and functions.

Each supported event shape has one converter; `convert` picks it from a table keyed by the
event's source and detail-type. The envelopes are read through Powertools' event data classes
(`EventBridgeEvent`, `SNSEvent`, `CloudWatchAlarmEvent`); the field helpers are the core's
(quiesce.triggers.convert). Converters read only the fields they name: nothing else in a
payload can reach a run, and no payload can carry a hook, script or command. A payload they
cannot read raises `UnsupportedEvent` with the reason, never anything else: the function
answers it `refused` instead of failing (which Lambda would retry).

Every alarm event carries the alarm's own state (`state`: ALARM, OK, INSUFFICIENT_DATA) and
the core's `condition` (`firing`, `resolved`, `other`); an alarm whose actions CloudWatch
suppresses (a composite alarm's `actionsSuppressedBy`) carries `suppressed: "true"`. CodePipeline
events about a stage or an action carry `stage` (and `action`); pipeline-level events do not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import (
        CloudWatchAlarmEvent,
        EventBridgeEvent,
        SNSEvent,
    )

#: CloudWatch alarm states as the core's alert conditions; any other state is `other`.
CONDITIONS = {"ALARM": "firing", "OK": "resolved"}


def _detail(event: EventBridgeEvent) -> Mapping[str, Any]:
    detail: object = event.detail
    if isinstance(detail, str):  # Scheduler sends "{}" as a string
        try:
            return mapping(json.loads(detail or "{}"), "the event's detail")
        except ValueError:
            raise UnsupportedEvent(
                f"the event's detail is a string that is not JSON: {detail[:60]!r}"
            ) from None
    return mapping(detail, "the event's detail")


def _alarm(state: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, str]:
    """The attributes every alarm event has: its state, the condition it means, the previous
    state, and `suppressed` when CloudWatch holds the new state's actions back."""
    value = text(state.get("value"))
    attributes = {
        "state": value,
        "condition": CONDITIONS.get(value, "other"),
        "previous_state": text(previous.get("value")),
    }
    if state.get("actionsSuppressedBy") not in (None, ""):
        attributes["suppressed"] = "true"
    return attributes


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
    """A pipeline, stage or action execution's state change: only stage- and action-level
    events name a `stage` (and action-level ones an `action`)."""
    require(event, "id", "time", "detail")
    detail = _detail(event)
    attributes = {
        "provider": "codepipeline",
        "pipeline": text(detail.get("pipeline")),
        "execution_id": text(detail.get("execution-id")),
        "state": text(detail.get("state")),
        "region": text(event.get("region")),
    }
    for key in ("stage", "action"):
        if key in detail:
            attributes[key] = text(detail[key])
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
                **_alarm(state, previous),
                "region": text(event.get("region")),
            },
        )
    ]


def cloudwatch_alarm_action(event: CloudWatchAlarmEvent) -> list[TriggerEvent]:
    """An alarm that invokes the function directly (alarm action `lambda`): it has no event
    id, so the alarm's ARN and the time of its state change identify it. A composite alarm's
    `previousState.actionsSuppressedBy` says the previous state's actions were held back; this
    invocation is the action running, so only the new state's suppression counts."""
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
                **_alarm(state, previous),
                "region": text(event.get("region")),
            },
        )
    ]


def sns_alarms(event: SNSEvent) -> list[TriggerEvent]:
    """CloudWatch alarms delivered through an SNS topic (one event per record)."""
    out = []
    for number, record in enumerate(event.records, 1):
        raw = mapping(record.raw_event, f"SNS record {number}")
        if raw.get("EventSource") != "aws:sns":
            raise UnsupportedEvent(f"not an SNS record: {text(raw.get('EventSource'))!r}")
        body = mapping(raw.get("Sns"), f"the Sns field of SNS record {number}")
        missing = [key for key in ("MessageId", "Message") if body.get(key) in (None, "")]
        if missing:
            raise UnsupportedEvent(f"SNS record {number} lacks {', '.join(missing)}")
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
                    **_alarm(
                        {"value": message.get("NewStateValue")},
                        {"value": message.get("OldStateValue")},
                    ),
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
    ("aws.codepipeline", "CodePipeline Action Execution State Change"): codepipeline,
    ("aws.cloudwatch", "CloudWatch Alarm State Change"): cloudwatch_alarm,
}


def convert(event: object) -> list[TriggerEvent]:
    """Turns any supported Lambda payload into trigger events; UnsupportedEvent otherwise."""
    if not isinstance(event, Mapping):
        raise UnsupportedEvent("the payload is not a JSON object")
    # Imported here, not with the module: the package imports all of powertools' ~40 event
    # classes (about 50 ms to compile on Lambda, whose code folder holds no bytecode), which
    # only an event to convert needs.
    from aws_lambda_powertools.utilities.data_classes import (
        CloudWatchAlarmEvent,
        EventBridgeEvent,
        SNSEvent,
    )

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
