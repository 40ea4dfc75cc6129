"""Quiesce's CloudEvents on a Pub/Sub topic, in the CloudEvents Pub/Sub protocol binding.

Binary content mode: each CloudEvent becomes one message whose data is the event's `data` as
JSON and whose attributes are the context attributes prefixed `ce-` (ce-specversion, ce-type,
ce-source, ce-id, ce-time, ce-subject, ce-dataschema and the extensions ce-quiescerunid,
ce-quiescegroup) plus `content-type`. Messages go out in batches of at most 1,000 messages and
10 MB (Pub/Sub's publish limits), each batch in exactly one Publish request: the generated
client's `publish`, which the library's client extends with a batcher. That batcher sends what
it has gathered when its latency timer fires, so a batch that took longer than that to hand
over (300 events on a busy machine) went out in two requests. A request that fails fails its
whole batch; the ids of events whose publish failed are returned, and the engine keeps them in
its outbox.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from google.cloud.pubsub_v1 import PublisherClient  # type: ignore[import-untyped]
from google.cloud.pubsub_v1.types import (  # type: ignore[import-untyped]
    PublishRequest,
    PubsubMessage,
)
from google.pubsub_v1.services.publisher.client import (
    PublisherClient as GeneratedPublisherClient,
)

from quiesce.batching import batches as split
from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher
from quiesce_gcp.permissions import TOPIC, Permission

log = logging.getLogger(__name__)

MAX_MESSAGES = 1000
MAX_BYTES = 10 * 1000 * 1000
#: Per-message overhead Pub/Sub's request carries besides data and attributes (a safe bound).
MESSAGE_OVERHEAD = 64
PUBLISH_TIMEOUT_SECONDS = 60.0


def to_message(event: CloudEvent) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) of one event in binary content mode."""
    attributes = {
        "ce-specversion": event.specversion,
        "ce-type": event.type,
        "ce-source": event.source,
        "ce-id": event.id,
        "ce-time": event.time.isoformat().replace("+00:00", "Z"),
        "content-type": event.datacontenttype,
    }
    optional = {
        "ce-subject": event.subject,
        "ce-dataschema": event.dataschema,
        "ce-quiescerunid": event.quiescerunid,
        "ce-quiescegroup": event.quiescegroup,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    data = json.dumps(event.data, separators=(",", ":"), default=str).encode("utf-8")
    return data, attributes


def from_message(data: bytes, attributes: dict[str, str]) -> CloudEvent:
    """The CloudEvent of a binary-mode message (what a subscriber would rebuild)."""
    fields: dict[str, Any] = {k[3:]: v for k, v in attributes.items() if k.startswith("ce-")}
    fields["data"] = json.loads(data)
    return CloudEvent.model_validate(fields)


def message_size(data: bytes, attributes: dict[str, str]) -> int:
    return (
        len(data)
        + sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
        + MESSAGE_OVERHEAD
    )


def batches(
    messages: Sequence[tuple[str, bytes, dict[str, str]]],
    *,
    max_messages: int = MAX_MESSAGES,
    max_bytes: int = MAX_BYTES,
) -> list[list[tuple[str, bytes, dict[str, str]]]]:
    """Messages (with their event ids) in batches of <= max_messages and <= max_bytes."""
    return split(
        messages,
        lambda item: message_size(item[1], item[2]),
        max_items=max_messages,
        max_bytes=max_bytes,
    )


class PubSubPublisher(EventPublisher):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "publish": [Permission("pubsub.topics.publish", TOPIC)],
    }

    def __init__(
        self,
        topic: str,
        *,
        client: PublisherClient | None = None,
        timeout: float = PUBLISH_TIMEOUT_SECONDS,
    ) -> None:
        """`topic` is the full path, projects/P/topics/T."""
        self.topic = topic
        self.client = client or PublisherClient()
        self.timeout = timeout

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        messages = [(e.id, *to_message(e)) for e in events]
        failed: list[str] = []
        for batch in batches(messages):
            request = PublishRequest(
                topic=self.topic,
                messages=[PubsubMessage(data=data, attributes=attrs) for _, data, attrs in batch],
            )
            try:
                # One RPC: the generated method, not the subclass's batching `publish`.
                GeneratedPublisherClient.publish(self.client, request=request, timeout=self.timeout)
            except Exception as exc:
                log.warning("publish of %d event(s) to %s failed: %s", len(batch), self.topic, exc)
                failed += [event_id for event_id, _, _ in batch]
        return failed
