"""The documented GCP payloads (tests/gcp/payloads, sources in SOURCES.md) and the Pub/Sub
`messagePublished` CloudEvent around them, built from the CloudEvent and MessagePublishedData
samples of functions-framework and google-cloudevents."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).resolve().parent / "payloads"
PROJECT = "quiesce-prod-4711"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def message_published(
    topic: str,
    *,
    data: Any = None,
    attributes: dict[str, str] | None = None,
    message_id: str = "12960542283310994",
    publish_time: str = "2026-11-29T09:31:12.037Z",
) -> dict[str, Any]:
    """The CloudEvent Eventarc delivers for one message on `topic`: the service's `data`
    (JSON-encoded unless bytes, then base64) and `attributes` in the documented envelope."""
    event: dict[str, Any] = copy.deepcopy(payload("pubsub_cloudevent.json"))
    envelope: dict[str, Any] = copy.deepcopy(payload("message_published_data.json"))
    message = envelope["message"]
    raw = data if isinstance(data, bytes) else b"" if data is None else json.dumps(data).encode()
    message["data"] = base64.b64encode(raw).decode()
    if attributes:
        message["attributes"] = dict(attributes)
    for key in ("messageId", "message_id"):
        message[key] = message_id
    for key in ("publishTime", "publish_time"):
        message[key] = publish_time
    envelope["subscription"] = f"projects/{PROJECT}/subscriptions/eventarc-{topic}-sub"
    event.update(
        source=f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}",
        id=message_id,
        time=publish_time,
        data=envelope,
    )
    return event


def incident(state: str, *, message_id: str = "12960542283310994") -> dict[str, Any]:
    """Monitoring's schema 1.2 incident (`open` or `closed`) on the alerts topic."""
    return message_published(
        "quiesce-alerts",
        data=payload(f"monitoring_incident_1_2_{state}.json"),
        message_id=message_id,
    )


def clouddeploy(name: str, *, message_id: str = "12960539230081117") -> dict[str, Any]:
    """A Cloud Deploy notification (attributes, no data) on its fixed topic."""
    topic = "clouddeploy-approvals" if "approvals" in name else "clouddeploy-operations"
    return message_published(
        topic, attributes=payload(f"clouddeploy_{name}.json"), message_id=message_id
    )
