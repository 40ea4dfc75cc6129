"""Quiesce's CloudEvents on an Event Grid topic (CloudEvents 1.0 schema).

Each Quiesce CloudEvent becomes an azure.core.messaging.CloudEvent (same id, source, type,
subject, time, data; the quiescerunid/quiescegroup extension attributes kept) and goes to the
topic with EventGridPublisherClient, authenticated by the topic's access key
(AzureKeyCredential) or a TokenCredential (managed identity: "EventGrid Data Sender").
Events go out in batches of at most `MAX_BATCH_EVENTS` and under 1 MB per request (Event Grid
refuses a request over 1 MB). A batch Event Grid refuses as throttled/busy is retried with
backoff; the ids of every event of a batch that still failed are returned (and kept in
`self.failed`), and the engine keeps them in its outbox for the next attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent as AzureCloudEvent
from azure.eventgrid import EventGridPublisherClient

from quiesce.batching import batches as split
from quiesce.errors import ProviderError
from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, error_message

log = logging.getLogger(__name__)

#: Event Grid: a request (a batch) must stay under 1 MB; leave room for the JSON array.
MAX_REQUEST_BYTES = 1024 * 1024 - 4096
MAX_BATCH_EVENTS = 500


def to_azure(event: CloudEvent) -> AzureCloudEvent[Any]:
    extensions: dict[str, Any] = {}
    if event.quiescerunid is not None:
        extensions["quiescerunid"] = event.quiescerunid
    if event.quiescegroup is not None:
        extensions["quiescegroup"] = event.quiescegroup
    return AzureCloudEvent(
        source=event.source,
        type=event.type,
        id=event.id,
        time=event.time,
        subject=event.subject,
        dataschema=event.dataschema,
        datacontenttype=event.datacontenttype,
        data=event.data,
        extensions=extensions or None,
    )


def event_size(event: CloudEvent) -> int:
    """The event's size on the wire (its structured JSON, UTF-8)."""
    return len(event.to_json().encode("utf-8")) + 1


def batches(events: Sequence[CloudEvent]) -> list[list[CloudEvent]]:
    """Events in requests of <= MAX_BATCH_EVENTS events and <= MAX_REQUEST_BYTES."""
    return split(events, event_size, max_items=MAX_BATCH_EVENTS, max_bytes=MAX_REQUEST_BYTES)


def make_client(
    endpoint: str, credential: AzureKeyCredential | TokenCredential, **kwargs: Any
) -> Any:
    """A publisher client for a basic Event Grid topic with the SDK's own retries off.

    The public EventGridPublisherClient drops its keyword arguments for basic topics (it wraps
    the legacy client without them), so the SDK would retry a failed batch itself, with its own
    waits, before this adapter sees it. The legacy client is the one it wraps; it takes
    `retry_total`. Where it is not importable, the public client is used (then the SDK retries).
    """
    try:
        from azure.eventgrid._legacy import EventGridPublisherClient as BasicClient
    except ImportError:  # pragma: no cover - a future azure-eventgrid
        return EventGridPublisherClient(endpoint, credential)
    return BasicClient(endpoint, credential, retry_total=0, **kwargs)


class EventGridPublisher(EventPublisher):
    """The EventPublisher port over an Event Grid topic (CloudEvents 1.0 input schema)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "publish": [Permission("Microsoft.EventGrid/events/send/action", "resource")],
    }

    def __init__(
        self,
        endpoint: str,
        credential: AzureKeyCredential | TokenCredential,
        *,
        client: Any = None,
        backoff: Backoff | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = client or make_client(endpoint, credential, **(client_kwargs or {}))
        self.backoff = backoff or Backoff(attempts=4, base=0.2, cap=2.0)
        #: Ids of events that could not be published, newest call last (for the outbox).
        self.failed: list[str] = []

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        failed: list[str] = []
        sendable: list[CloudEvent] = []
        for event in events:
            if event_size(event) > MAX_REQUEST_BYTES:
                log.error(
                    "event %s (%s) is over 1 MB: it cannot be published", event.id, event.type
                )
                failed.append(event.id)
            else:
                sendable.append(event)
        for batch in batches(sendable):
            failed.extend(self._send(batch))
        self.failed.extend(failed)
        return failed

    def _send(self, batch: list[CloudEvent]) -> list[str]:
        payload = [to_azure(e) for e in batch]
        try:
            self.backoff.call(
                lambda: self.client.send(payload), what=f"send {len(batch)} event(s) to Event Grid"
            )
        except (AzureError, ProviderError) as exc:
            log.warning("Event Grid refused a batch of %d: %s", len(batch), error_message(exc))
            return [e.id for e in batch]
        return []
