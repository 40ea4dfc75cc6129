"""Google Cloud events → the core's normalized TriggerEvent: pure tables and functions.

Every trigger reaches a function as a Pub/Sub message, which functions-framework delivers as
the CloudEvent `google.cloud.pubsub.topic.v1.messagePublished`. `convert` takes that CloudEvent
as a mapping (its attributes and `data`, i.e. the structured-mode JSON) and picks a converter
from a table of (name, recognizer, converter), first match wins:

    scheduler       Cloud Scheduler job publishing `{"trigger": "<name>"}` (or the attribute
                    `trigger`)                                        → schedule
    cloud-deploy    Cloud Deploy notifications (attributes Action, ResourceType, ...)
                                                                      → deploy (clouddeploy)
    cloud-build     Cloud Build notifications (attributes buildId, status; the Build JSON)
                                                                      → deploy (cloudbuild)
    monitoring      Cloud Monitoring alert notification (`{"incident": {...}, "version"}`)
                                                                      → alert (cloud-monitoring)

The Pub/Sub messageId is the idempotency id: a redelivered message starts nothing new.
Converters read only the fields they name: nothing else in a payload can reach a run, and no
payload can carry a hook, script or command.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from quiesce.triggers.convert import UnsupportedEvent, reading, text, timestamp
from quiesce.triggers.event import TriggerEvent

Event = Mapping[str, Any]

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class Message:
    """The Pub/Sub message inside a messagePublished CloudEvent."""

    def __init__(self, event: Event) -> None:
        data = event.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
            raise UnsupportedEvent("the CloudEvent carries no Pub/Sub message (data.message)")
        message: Mapping[str, Any] = data["message"]
        self.id = text(message.get("messageId") or message.get("message_id"))
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


# ------------------------------------------------------------------------------ recognizers


def _is_scheduler(message: Message) -> bool:
    body = message.json()
    return "trigger" in message.attributes or (isinstance(body, Mapping) and "trigger" in body)


def _is_clouddeploy(message: Message) -> bool:
    return "Action" in message.attributes and "ResourceType" in message.attributes


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


def clouddeploy(message: Message) -> TriggerEvent:
    """Cloud Deploy notifications (clouddeploy-operations / -approvals): attributes only."""
    a = message.attributes
    attributes = {
        "provider": "clouddeploy",
        "pipeline": a.get("DeliveryPipelineId", ""),
        "application": a.get("DeliveryPipelineId", ""),
        "target": a.get("TargetId", ""),
        "rollout": a.get("Rollout", "") or a.get("RolloutId", ""),
        "release": a.get("ReleaseId", ""),
        "state": a.get("Action", ""),
        "resource_type": a.get("ResourceType", ""),
        "resource": a.get("Resource", ""),
        "location": a.get("Location", ""),
    }
    return TriggerEvent(
        kind="deploy",
        source="gcp.clouddeploy",
        id=message.id,
        time=message.publish_time,
        attributes=_with_topic(message, {k: v for k, v in attributes.items() if v}),
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
        attributes=_with_topic(message, {k: v for k, v in attributes.items() if v}),
    )


def monitoring(message: Message) -> TriggerEvent:
    """Cloud Monitoring alert notification through a Pub/Sub notification channel."""
    incident = message.json()["incident"]
    policy = text(incident.get("policy_name"))
    if not policy:
        raise UnsupportedEvent("the incident names no alert policy (policy_name)")
    state = text(incident.get("state")).lower()
    stamp = incident.get("ended_at") if state == "closed" else incident.get("started_at")
    attributes = {
        "provider": "cloud-monitoring",
        "alarm": policy,
        "state": state,
        "severity": text(incident.get("severity")),
        "condition": text(incident.get("condition_name")),
        "incident_id": text(incident.get("incident_id")),
        "resource": text(incident.get("resource_name")),
        "project": text(incident.get("scoping_project_id")),
    }
    return TriggerEvent(
        kind="alert",
        source="gcp.monitoring",
        id=message.id,
        time=timestamp(stamp) if stamp else message.publish_time,
        attributes=_with_topic(message, {k: v for k, v in attributes.items() if v}),
    )


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
