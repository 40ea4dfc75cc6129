"""Google Cloud events → the core's normalized TriggerEvent: pure tables and functions.

Every Pub/Sub trigger reaches a function as the CloudEvent
`google.cloud.pubsub.topic.v1.messagePublished`. `convert` takes that CloudEvent as a mapping
(its attributes and `data`, i.e. the structured-mode JSON) and picks a converter from a table of
(name, recognizer, converter), first match wins:

    scheduler       Cloud Scheduler job publishing `{"trigger": "<name>"}` (or the attribute
                    `trigger`)                                        → schedule
    cloud-deploy    Cloud Deploy notifications: attribute Action plus the rollout's attributes
                    (clouddeploy-operations carry ResourceType, clouddeploy-approvals do not)
                                                                      → deploy (clouddeploy)
    cloud-build     Cloud Build notifications (attributes buildId, status; the Build JSON)
                                                                      → deploy (cloudbuild)
    monitoring      Cloud Monitoring incident (`{"incident": {...}, "version": "1.2"}`) from a
                    Pub/Sub notification channel                      → alert (cloud-monitoring)

`convert_webhook` takes the body of a Cloud Monitoring webhook notification channel: the same
incident JSON, without a Pub/Sub message around it.

The Pub/Sub messageId is the idempotency id: a redelivered message starts nothing new. A webhook
incident's id is its incident_id and state (one notification per state change). Converters read
only the fields they name: nothing else in a payload can reach a run, and no payload can carry a
hook, script or command.

Alerts carry `condition`: `firing` for an open incident, `resolved` for a closed one, `other`
for anything else; `state` stays Monitoring's own value. Cloud Deploy approvals fire on
`Required` and `Approved`; `Rejected` is refused (a rejected rollout deploys nothing).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from quiesce.record import utcnow
from quiesce.triggers.convert import UnsupportedEvent, identifier, reading, text, timestamp
from quiesce.triggers.event import TriggerEvent

Event = Mapping[str, Any]

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
#: The topics Cloud Deploy publishes to (fixed names).
CLOUDDEPLOY_TOPICS = frozenset(
    {"clouddeploy-operations", "clouddeploy-approvals", "clouddeploy-resources"}
)
#: Attributes only Cloud Deploy's rollout notifications carry (besides Action).
_CLOUDDEPLOY_KEYS = ("ResourceType", "Rollout", "RolloutId", "DeliveryPipelineId", "TargetId")
#: clouddeploy-approvals' Action values that fire triggers: an approval is needed (the rollout
#: waits; a backup now is done before anyone approves) or given (the deploy starts next).
APPROVAL_FIRES = frozenset({"Required", "Approved"})
#: Monitoring incident state → the core's alert condition.
INCIDENT_CONDITION = {"open": "firing", "closed": "resolved"}


class Message:
    """The Pub/Sub message inside a messagePublished CloudEvent."""

    def __init__(self, event: Event) -> None:
        data = event.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
            raise UnsupportedEvent("the CloudEvent carries no Pub/Sub message (data.message)")
        message: Mapping[str, Any] = data["message"]
        # Eventarc sets the CloudEvent id to the messageId; a message converted from a legacy
        # event may carry only the CloudEvent's.
        self.id = text(message.get("messageId") or message.get("message_id") or event.get("id"))
        if not self.id:
            raise UnsupportedEvent("the Pub/Sub message has no messageId")
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise UnsupportedEvent("the Pub/Sub message's attributes are not an object")
        self.attributes: dict[str, str] = {str(k): text(v) for k, v in attributes.items()}
        self.publish_time = timestamp(
            message.get("publishTime") or message.get("publish_time") or event.get("time")
        )
        self.subscription = text(data.get("subscription"))
        self.topic = _topic(text(event.get("source")))
        raw = message.get("data") or ""
        try:
            self.data = base64.b64decode(raw, validate=True) if raw else b""
        except (binascii.Error, TypeError, ValueError):
            raise UnsupportedEvent("the Pub/Sub message's data is not base64") from None

    def json(self) -> Any:
        """The data as JSON, or None when it is empty or not JSON."""
        if not self.data:
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            return None


def _topic(source: str) -> str:
    """`//pubsub.googleapis.com/projects/p/topics/t` → `t`."""
    return source.rsplit("/topics/", 1)[1] if "/topics/" in source else ""


def _with_topic(message: Message, attributes: dict[str, str]) -> dict[str, str]:
    if message.topic:
        attributes["topic"] = message.topic
    return attributes


def _present(attributes: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if v}


# ------------------------------------------------------------------------------ recognizers


def _is_scheduler(message: Message) -> bool:
    body = message.json()
    return "trigger" in message.attributes or (isinstance(body, Mapping) and "trigger" in body)


def _is_clouddeploy(message: Message) -> bool:
    if "Action" not in message.attributes:
        return False
    return message.topic in CLOUDDEPLOY_TOPICS or any(
        key in message.attributes for key in _CLOUDDEPLOY_KEYS
    )


def _is_cloudbuild(message: Message) -> bool:
    return "buildId" in message.attributes


def _is_monitoring(message: Message) -> bool:
    body = message.json()
    return isinstance(body, Mapping) and isinstance(body.get("incident"), Mapping)


# ------------------------------------------------------------------------------ converters


def scheduler(message: Message) -> TriggerEvent:
    """Cloud Scheduler → the trigger named by the message (`{"trigger": "<name>"}`)."""
    body = message.json()
    name = message.attributes.get("trigger")
    if name is None and isinstance(body, Mapping):
        name = body.get("trigger")
    if not isinstance(name, str) or not name:
        raise UnsupportedEvent("the schedule message names no trigger (expected a string)")
    return TriggerEvent(
        kind="schedule",
        source="gcp.scheduler",
        id=message.id,
        time=message.publish_time,
        trigger=text(name),
        attributes=_with_topic(message, {}),
    )


def _rollout_parts(name: str) -> dict[str, str]:
    """`projects/P/locations/L/deliveryPipelines/D/releases/R/rollouts/O` → its ids by
    collection (`deliveryPipelines` → D, ...); {} for anything else."""
    parts = name.split("/")
    if len(parts) % 2 or parts[:1] != ["projects"]:
        return {}
    return dict(zip(parts[::2], parts[1::2], strict=True))


def _short(attributes: Mapping[str, str], key: str) -> str:
    """An attribute that is an id rather than a resource name, else empty."""
    value = attributes.get(key, "")
    return value if "/" not in value else ""


def clouddeploy(message: Message) -> TriggerEvent:
    """Cloud Deploy notifications, attributes only. clouddeploy-operations name the resource
    (ResourceType, Resource) and its ids; clouddeploy-approvals name the rollout (Rollout, its
    full name) and no ResourceType, so pipeline, release and rollout are read from that name
    when their own attributes are absent."""
    a = message.attributes
    action = a.get("Action", "")
    approval = message.topic == "clouddeploy-approvals" or (
        "ResourceType" not in a and action in {"Required", "Approved", "Rejected"}
    )
    if approval and action not in APPROVAL_FIRES:
        raise UnsupportedEvent(
            f"Cloud Deploy approval {action!r} fires no trigger: only Required and Approved "
            "do (a rejected rollout deploys nothing)"
        )
    named = _rollout_parts(a.get("Rollout", "") or a.get("Resource", ""))
    attributes = {
        "provider": "clouddeploy",
        "pipeline": a.get("DeliveryPipelineId", "") or named.get("deliveryPipelines", ""),
        "application": a.get("DeliveryPipelineId", "") or named.get("deliveryPipelines", ""),
        "target": a.get("TargetId", ""),
        "rollout": a.get("RolloutId", "") or named.get("rollouts", "") or _short(a, "Rollout"),
        "release": a.get("ReleaseId", "") or named.get("releases", ""),
        "state": action,
        "notification": "approval" if approval else "operation",
        "resource_type": a.get("ResourceType", "") or ("Rollout" if approval else ""),
        "resource": a.get("Resource", "") or a.get("Rollout", ""),
        "location": a.get("Location", "") or named.get("locations", ""),
    }
    return TriggerEvent(
        kind="deploy",
        source="gcp.clouddeploy",
        id=message.id,
        time=message.publish_time,
        attributes=_with_topic(message, _present(attributes)),
    )


def cloudbuild(message: Message) -> TriggerEvent:
    """Cloud Build notifications (topic cloud-builds): the Build resource as JSON."""
    build = message.json()
    if not isinstance(build, Mapping):
        raise UnsupportedEvent("the Cloud Build message carries no build (not a JSON object)")
    substitutions = build.get("substitutions") or {}
    if not isinstance(substitutions, Mapping):
        substitutions = {}
    trigger = text(substitutions.get("TRIGGER_NAME"))
    repo = text(substitutions.get("REPO_NAME"))
    attributes = {
        "provider": "cloudbuild",
        "application": repo or trigger,
        "pipeline": trigger,
        "trigger": trigger,
        "repo": repo,
        "branch": text(substitutions.get("BRANCH_NAME")),
        "build_id": text(build.get("id") or message.attributes.get("buildId")),
        "state": text(build.get("status") or message.attributes.get("status")),
        "location": text(substitutions.get("LOCATION")),
    }
    return TriggerEvent(
        kind="deploy",
        source="gcp.cloudbuild",
        id=message.id,
        time=message.publish_time,
        attributes=_with_topic(message, _present(attributes)),
    )


def incident_event(
    incident: Mapping[str, Any], *, event_id: str, received: datetime, channel: str
) -> TriggerEvent:
    """A Cloud Monitoring incident (notification schema 1.2) as an alert event. `received`
    stands in for a time the incident does not give."""
    policy = text(incident.get("policy_name"))
    if not policy:
        raise UnsupportedEvent("the incident names no alert policy (policy_name)")
    state = text(incident.get("state")).lower()
    stamp = incident.get("ended_at") if state == "closed" else incident.get("started_at")
    attributes = {
        "provider": "cloud-monitoring",
        "alarm": policy,
        "state": state,
        "condition": INCIDENT_CONDITION.get(state, "other"),
        "condition_name": text(incident.get("condition_name")),
        "severity": text(incident.get("severity")),
        "incident_id": text(incident.get("incident_id")),
        "resource": text(incident.get("resource_name")),
        "project": text(incident.get("scoping_project_id")),
        "channel": channel,
    }
    return TriggerEvent(
        kind="alert",
        source="gcp.monitoring",
        id=event_id,
        time=timestamp(stamp) if stamp else received,
        attributes=_present(attributes),
    )


def monitoring(message: Message) -> TriggerEvent:
    """Cloud Monitoring alert notification through a Pub/Sub notification channel."""
    event = incident_event(
        message.json()["incident"],
        event_id=message.id,
        received=message.publish_time,
        channel="pubsub",
    )
    attributes = _with_topic(message, dict(event.attributes))
    return event.model_copy(update={"attributes": attributes})


Recognizer = Callable[[Message], bool]
Converter = Callable[[Message], TriggerEvent]

#: (name, recognizer, converter): the first whose recognizer accepts the message converts it.
CONVERTERS: tuple[tuple[str, Recognizer, Converter], ...] = (
    ("scheduler", _is_scheduler, scheduler),
    ("cloud-deploy", _is_clouddeploy, clouddeploy),
    ("cloud-build", _is_cloudbuild, cloudbuild),
    ("monitoring", _is_monitoring, monitoring),
)


def convert(event: object) -> list[TriggerEvent]:
    """Turns a messagePublished CloudEvent (as a mapping) into trigger events;
    UnsupportedEvent, with the reason, otherwise."""
    if not isinstance(event, Mapping):
        raise UnsupportedEvent("the payload is not a JSON object")
    kind = text(event.get("type"))
    if kind != PUBSUB_PUBLISHED:
        raise UnsupportedEvent(f"expected a {PUBSUB_PUBLISHED} CloudEvent, got type {kind!r}")
    message = Message(event)
    for name, recognizes, converter in CONVERTERS:
        if recognizes(message):
            with reading(f"{name} message"):
                return [converter(message)]
    raise UnsupportedEvent(
        "the Pub/Sub message is neither a schedule, a Cloud Deploy or Cloud Build notification "
        f"nor a Cloud Monitoring incident (message {message.id})"
    )


def convert_webhook(body: object, *, now: Callable[[], datetime] = utcnow) -> list[TriggerEvent]:
    """The body of a Cloud Monitoring webhook notification (JSON text or bytes, or the parsed
    object) → one alert event; UnsupportedEvent, with the reason, otherwise."""
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except ValueError:
            raise UnsupportedEvent("the body is not JSON") from None
    if not isinstance(body, Mapping):
        raise UnsupportedEvent("the body is not a JSON object")
    incident = body.get("incident")
    if not isinstance(incident, Mapping):
        raise UnsupportedEvent("the body is not a Cloud Monitoring incident (no `incident` object)")
    incident_id = text(incident.get("incident_id"))
    if not incident_id:
        raise UnsupportedEvent("the incident has no incident_id")
    state = text(incident.get("state")).lower() or "unknown"
    with reading("Cloud Monitoring incident"):
        return [
            incident_event(
                incident,
                event_id=identifier(f"{incident_id}:{state}"),
                received=now(),
                channel="webhook",
            )
        ]
