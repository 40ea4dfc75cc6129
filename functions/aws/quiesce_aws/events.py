"""Quiesce's CloudEvents on an EventBridge bus.

Each CloudEvent becomes one PutEvents entry: Source "quiesce" (so one rule can match every
Quiesce event; the CloudEvent's own source is in the detail), DetailType the CloudEvent type,
Detail the whole CloudEvent as JSON, Time the event's time. Entries go out in batches of at most
10 and under 256 KB per request. Entries that fail with a transient error (throttled, internal)
are sent again with backoff a couple of times; the ids of those that still failed are returned,
and the engine keeps them in its outbox for the next attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.batching import batches as split
from quiesce.errors import ProviderError
from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher
from quiesce_aws.clients import ClientFactory
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import EVENTS_THROTTLING, Backoff, error_message

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "quiesce"
DEFAULT_BUS = "default"
#: PutEvents limits: entries per call, and bytes per entry and per request.
MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
#: EventBridge counts 14 bytes for an entry's Time.
TIME_BYTES = 14


def entry_size(entry: PutEventsRequestEntryTypeDef) -> int:
    """An entry's size as EventBridge computes it (UTF-8 bytes of its fields)."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode("utf-8"))
    for resource in entry.get("Resources", []):
        size += len(resource.encode("utf-8"))
    return size


def batches(
    entries: Sequence[tuple[str, PutEventsRequestEntryTypeDef]],
) -> list[list[tuple[str, PutEventsRequestEntryTypeDef]]]:
    """Entries (with their event ids) in requests of <= 10 entries and <= 256 KB."""
    return split(
        entries,
        lambda item: entry_size(item[1]),
        max_items=MAX_ENTRIES,
        max_bytes=MAX_REQUEST_BYTES,
    )


class EventBridgePublisher(EventPublisher):
    """The EventPublisher port over EventBridge PutEvents."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "publish": [Permission("events:PutEvents", "arn:aws:events:*:*:event-bus/*")],
    }

    def __init__(
        self,
        clients: ClientFactory,
        region: str,
        *,
        bus: str = DEFAULT_BUS,
        source: str | None = DEFAULT_SOURCE,
        resend_attempts: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        """`source` None: each entry's Source is the CloudEvent's own source."""
        self.clients = clients
        self.region = region
        self.bus = bus
        self.source = source
        self.resend_attempts = resend_attempts
        self.backoff = backoff or Backoff(attempts=4, base=0.2, cap=2.0)

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        failed: list[str] = []
        entries = []
        for event in events:
            entry = self.entry(event)
            if entry_size(entry) > MAX_REQUEST_BYTES:
                log.error(
                    "event %s (%s) is over 256 KB: it cannot be published", event.id, event.type
                )
                failed.append(event.id)
                continue
            entries.append((event.id, entry))
        for batch in batches(entries):
            failed.extend(self._put(batch))
        return failed

    def entry(self, event: CloudEvent) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": self.source or event.source,
            "DetailType": event.type,
            "Detail": event.to_json(),
            "Time": event.time,
            "EventBusName": self.bus,
        }

    def _put(self, batch: list[tuple[str, PutEventsRequestEntryTypeDef]]) -> list[str]:
        """Sends one batch; resends the entries that failed transiently; returns the failed ids."""
        client = self.clients.events(self.region)
        todo = batch
        failed: list[str] = []
        for attempt in range(self.resend_attempts):
            try:
                response = self.backoff.call(
                    lambda todo=todo: client.put_events(Entries=[e for _, e in todo]),  # type: ignore[misc]
                    retry_on=EVENTS_THROTTLING,
                    what=f"PutEvents to {self.bus}",
                )
            except (ClientError, BotoCoreError, ProviderError) as exc:
                log.warning("PutEvents of %d event(s) failed: %s", len(todo), error_message(exc))
                return failed + [event_id for event_id, _ in todo]
            if not response.get("FailedEntryCount"):
                return failed
            again: list[tuple[str, PutEventsRequestEntryTypeDef]] = []
            for (event_id, entry), result in zip(todo, response.get("Entries", []), strict=False):
                code = result.get("ErrorCode")
                if not code:
                    continue
                if code in EVENTS_THROTTLING:
                    again.append((event_id, entry))
                    continue
                log.warning(
                    "event %s was not accepted: %s %s", event_id, code, result.get("ErrorMessage")
                )
                failed.append(event_id)
            if not again:
                return failed
            todo = again
            if attempt + 1 < self.resend_attempts:
                self.backoff.sleep(self.backoff.delay(attempt))
        log.warning("%d event(s) still failed after %d attempts", len(todo), self.resend_attempts)
        return failed + [event_id for event_id, _ in todo]
