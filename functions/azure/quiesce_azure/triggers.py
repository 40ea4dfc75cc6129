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
  alert sends Fired and later Resolved under one alert id).

Converters read only the fields they name: nothing else in a payload can reach a run, and no
payload can carry a hook, script or command.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from quiesce.errors import QuiesceError
from quiesce.triggers.event import TriggerEvent

Event = Mapping[str, Any]

ALERT_SCHEMA = "azureMonitorCommonAlertSchema"
DEPLOYMENTS = "Microsoft.Resources/deployments"
_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Resources/deployments/(?P<name>[^/]+)",
    re.IGNORECASE,
)
_FRACTION = re.compile(r"\.(\d{6})\d+")


class UnsupportedEvent(QuiesceError):
    """The payload is not an event Quiesce knows how to turn into a trigger."""


def _time(value: object) -> datetime:
    """ISO 8601 as Azure writes it (`Z`, and up to seven fractional digits)."""
    if not isinstance(value, str) or not value:
        raise UnsupportedEvent(f"expected a timestamp, got {value!r}")
    text = _FRACTION.sub(lambda m: "." + m.group(1), value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UnsupportedEvent(f"not a timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(value: object) -> str:
    return "" if value is None else str(value)[:256]


def _id(value: str) -> str:
    """An event id of at most 256 characters (longer ones are hashed, so they stay unique)."""
    if not value:
        raise UnsupportedEvent("the event has no id")
    if len(value) <= 256:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UnsupportedEvent(f"{what} is not an object")
    return value


def _require(event: Event, *keys: str) -> None:
    missing = [k for k in keys if k not in event or event[k] in (None, "")]
    if missing:
        raise UnsupportedEvent(f"event lacks {', '.join(missing)}")


# ------------------------------------------------------------------------------ timer


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
        attributes["last"] = _str(status["Last"])
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
        _require(event, "id", "type", "time", "data")
        return (
            _str(event["id"]),
            _str(event["type"]),
            _time(event["time"]),
            _str(event.get("subject")),
            _object(event["data"], "the event's data"),
        )
    _require(event, "id", "eventType", "eventTime", "data")
    return (
        _str(event["id"]),
        _str(event["eventType"]),
        _time(event["eventTime"]),
        _str(event.get("subject")),
        _object(event["data"], "the event's data"),
    )


def arm_deployment(event: Event) -> list[TriggerEvent]:
    """A Resource Manager event about a deployment (`Microsoft.Resources/deployments/<name>`)."""
    event_id, event_type, when, subject, data = _envelope(event)
    resource = _str(data.get("resourceUri") or subject)
    match = _RESOURCE_ID.match(resource)
    if match is None:
        raise UnsupportedEvent(f"not an event about a {DEPLOYMENTS} resource: {resource!r}")
    return [
        TriggerEvent(
            kind="deploy",
            source="azure.resources",
            id=_id(event_id),
            time=when,
            attributes={
                "provider": "arm",
                "deployment": _str(match["name"]),
                "resource_group": _str(match["rg"]),
                "subscription": _str(data.get("subscriptionId") or match["sub"]),
                "state": _str(data.get("status")),
                "operation": _str(data.get("operationName")),
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
    data = _object(event.get("data"), "the alert's data")
    essentials = _object(data.get("essentials"), "the alert's essentials")
    _require(essentials, "alertId", "alertRule", "monitorCondition")
    condition = _str(essentials["monitorCondition"])
    if condition not in ("Fired", "Resolved"):
        raise UnsupportedEvent(f"unknown monitorCondition {condition!r}")
    stamp = essentials.get("resolvedDateTime" if condition == "Resolved" else "firedDateTime")
    targets = essentials.get("alertTargetIDs") or []
    return [
        TriggerEvent(
            kind="alert",
            source="azure.monitor",
            id=_id(f"{essentials['alertId']}@{condition}"),
            time=_time(stamp or essentials.get("firedDateTime")),
            attributes={
                "provider": "azure-monitor",
                "alarm": _str(essentials["alertRule"]),
                "state": condition,
                "severity": _str(essentials.get("severity")),
                "signal_type": _str(essentials.get("signalType")),
                "monitoring_service": _str(essentials.get("monitoringService")),
                "target": _str(targets[0]) if isinstance(targets, list) and targets else "",
            },
        )
    ]


def _type_of(event: Event) -> str:
    if event.get("schemaId") == ALERT_SCHEMA:
        return ALERT_SCHEMA
    return _str(event.get("type") if "specversion" in event else event.get("eventType"))


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
    try:
        return converter(payload)
    except UnsupportedEvent:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UnsupportedEvent(f"malformed {kind} event: {exc}") from None
