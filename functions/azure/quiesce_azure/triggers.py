"""Azure events → the core's normalized TriggerEvent: pure tables and functions.

Three shapes are understood:

* Timer trigger payloads (`{"Schedule": …, "ScheduleStatus": …, "IsPastDue": …}`), through
  `timer_event`: a timer has no event id, so the trigger's name and the minute it fired
  identify it (a timer fires at most once a minute; a repeated firing in the same minute is a
  duplicate). The trigger's name comes from the function that was registered for it.
* Event Grid Resource Manager events about deployments (`Microsoft.Resources/deployments`), in
  the Event Grid schema (`eventType`, `eventTime`, `topic`) or the CloudEvents 1.0 schema
  (`type`, `time`, `source`, `specversion`), through `convert`: keyed by the event type.
* Azure Monitor alerts in the common alert schema (`schemaId: azureMonitorCommonAlertSchema`),
  through `convert`: the alert id and its monitor condition identify one notification (an
  alert sends Fired and later Resolved under one alert id). `condition` says what the
  notification means for a trigger: `firing` (Fired), `resolved` (Resolved) or `other`.

`event_grid_event` is `convert` for the Event Grid trigger: it names the cause when an event
has no type at all (an event in the CloudEvents 1.0 schema that an azure-functions older
than 1.25 decoded as an Event Grid event drops `type`).

Converters read only the fields they name: nothing else in a payload can reach a run, and no
payload can carry a hook, script or command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

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

Event = Mapping[str, Any]

ALERT_SCHEMA = "azureMonitorCommonAlertSchema"
#: Azure Monitor's monitorCondition → the alert's `condition` (anything else: `other`).
CONDITIONS = {"Fired": "firing", "Resolved": "resolved"}
DEPLOYMENTS = "Microsoft.Resources/deployments"
_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Resources/deployments/(?P<name>[^/]+)",
    re.IGNORECASE,
)


# ------------------------------------------------------------------------------ timer


def to_ncrontab(expression: str) -> str:
    """A policy's five-field cron as Azure Functions' six-field NCRONTAB (seconds first)."""
    return "0 " + validate_cron(expression)


def timer_event(payload: Event, *, trigger: str, now: datetime) -> TriggerEvent:
    """A timer function's firing → the schedule trigger it was registered for.

    `payload` is the timer's JSON (`IsPastDue`, `ScheduleStatus`); `now` is when it fired.
    """
    if not isinstance(payload, Mapping):
        raise UnsupportedEvent("the timer payload is not a JSON object")
    if not trigger:
        raise UnsupportedEvent("a timer event needs the name of its schedule trigger")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    status = payload.get("ScheduleStatus") or {}
    attributes = {"schedule": trigger, "past_due": str(bool(payload.get("IsPastDue"))).lower()}
    if isinstance(status, Mapping) and status.get("Last"):
        attributes["last"] = text(status["Last"])
    return TriggerEvent(
        kind="schedule",
        source="azure.timer",
        id=f"{trigger}@{minute.strftime('%Y-%m-%dT%H:%MZ')}",
        time=minute,
        trigger=trigger,
        attributes=attributes,
    )


# ------------------------------------------------------------------------------ Event Grid


def _envelope(event: Event) -> tuple[str, str, datetime, str, Mapping[str, Any]]:
    """(id, type, time, subject, data) of an Event Grid event in either schema."""
    if "specversion" in event:  # CloudEvents 1.0
        require(event, "id", "type", "time", "data")
        return (
            text(event["id"]),
            text(event["type"]),
            timestamp(event["time"]),
            text(event.get("subject")),
            mapping(event["data"], "the event's data"),
        )
    require(event, "id", "eventType", "eventTime", "data")
    return (
        text(event["id"]),
        text(event["eventType"]),
        timestamp(event["eventTime"]),
        text(event.get("subject")),
        mapping(event["data"], "the event's data"),
    )


def arm_deployment(event: Event) -> list[TriggerEvent]:
    """A Resource Manager event about a deployment (`Microsoft.Resources/deployments/<name>`)."""
    event_id, event_type, when, subject, data = _envelope(event)
    resource = text(data.get("resourceUri") or subject)
    match = _RESOURCE_ID.match(resource)
    if match is None:
        raise UnsupportedEvent(f"not an event about a {DEPLOYMENTS} resource: {resource!r}")
    return [
        TriggerEvent(
            kind="deploy",
            source="azure.resources",
            id=identifier(event_id),
            time=when,
            attributes={
                "provider": "arm",
                "deployment": text(match["name"]),
                "resource_group": text(match["rg"]),
                "subscription": text(data.get("subscriptionId") or match["sub"]),
                "state": text(data.get("status")),
                "operation": text(data.get("operationName")),
                "event_type": event_type,
            },
        )
    ]


#: Event Grid event type → converter.
EVENT_GRID: dict[str, Callable[[Event], list[TriggerEvent]]] = {
    "Microsoft.Resources.ResourceWriteSuccess": arm_deployment,
    "Microsoft.Resources.ResourceWriteFailure": arm_deployment,
    "Microsoft.Resources.ResourceWriteCancel": arm_deployment,
    "Microsoft.Resources.ResourceActionSuccess": arm_deployment,
    "Microsoft.Resources.ResourceActionFailure": arm_deployment,
    "Microsoft.Resources.ResourceActionCancel": arm_deployment,
}


# ------------------------------------------------------------------------------ Azure Monitor


def common_alert(event: Event) -> list[TriggerEvent]:
    """An Azure Monitor alert in the common alert schema (action group webhook)."""
    data = mapping(event.get("data"), "the alert's data")
    essentials = mapping(data.get("essentials"), "the alert's essentials")
    require(essentials, "alertId", "alertRule", "monitorCondition")
    state = text(essentials["monitorCondition"])
    # resolvedDateTime is documented for metric alerts only: a resolved log alert has none.
    stamp = essentials.get("resolvedDateTime" if state == "Resolved" else "firedDateTime")
    targets = essentials.get("alertTargetIDs") or []
    return [
        TriggerEvent(
            kind="alert",
            source="azure.monitor",
            id=identifier(f"{essentials['alertId']}@{state}"),
            time=timestamp(stamp or essentials.get("firedDateTime")),
            attributes={
                "provider": "azure-monitor",
                "alarm": text(essentials["alertRule"]),
                "state": state,
                "condition": CONDITIONS.get(state, "other"),
                "severity": text(essentials.get("severity")),
                "signal_type": text(essentials.get("signalType")),
                "monitoring_service": text(essentials.get("monitoringService")),
                "target": text(targets[0]) if isinstance(targets, list) and targets else "",
            },
        )
    ]


def event_grid_event(payload: object) -> list[TriggerEvent]:
    """`convert` for one event of the Event Grid trigger, in either schema. An event with
    neither `eventType` nor `specversion` and `type` is refused with its likely cause."""
    if (
        isinstance(payload, Mapping)
        and not payload.get("eventType")
        and "specversion" not in payload
        and "data" in payload
    ):
        raise UnsupportedEvent(
            "the event has no type: an Event Grid subscription that delivers the CloudEvents "
            "1.0 schema needs azure-functions 1.25 or later in the worker (on Python 3.12 and "
            "earlier also the app setting PYTHON_ISOLATE_WORKER_DEPENDENCIES=1); or deliver "
            "the Event Grid schema"
        )
    return convert(payload)


def _type_of(event: Event) -> str:
    if event.get("schemaId") == ALERT_SCHEMA:
        return ALERT_SCHEMA
    return text(event.get("type") if "specversion" in event else event.get("eventType"))


def convert(payload: object) -> list[TriggerEvent]:
    """Turns an Event Grid event (either schema; a list of them, as webhooks deliver) or a
    common-schema alert into trigger events; UnsupportedEvent otherwise."""
    if isinstance(payload, list):
        return [converted for item in payload for converted in convert(item)]
    if not isinstance(payload, Mapping):
        raise UnsupportedEvent("the payload is not a JSON object")
    kind = _type_of(payload)
    converter = common_alert if kind == ALERT_SCHEMA else EVENT_GRID.get(kind)
    if converter is None:
        if "schemaId" in payload:
            raise UnsupportedEvent(
                f"alert schema {payload['schemaId']!r} is not supported: enable the common "
                f"alert schema ({ALERT_SCHEMA}) on the action group"
            )
        raise UnsupportedEvent(f"no converter for event type {kind!r}")
    with reading(f"{kind} event"):
        return converter(payload)
