"""Helpers every cloud's event converters share: reading a field as text, a timestamp, an id or
an object, requiring fields, and turning a malformed payload into one clear refusal.

A converter reads only the fields it names: nothing else in a payload can reach a run, and no
payload can carry a hook, script or command. Whatever it cannot read raises `UnsupportedEvent`
with the reason, which the front door answers as `refused`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from quiesce.errors import QuiesceError

Event = Mapping[str, Any]

#: The longest text a trigger event keeps (an attribute, an id).
MAX_TEXT = 256
#: Fractional seconds beyond microseconds (some services write seven digits).
_FRACTION = re.compile(r"\.(\d{6})\d+")


class UnsupportedEvent(QuiesceError):
    """The payload is not an event Quiesce knows how to turn into a trigger."""


def text(value: object) -> str:
    """A field as text of at most 256 characters; a missing (None) field is empty."""
    return "" if value is None else str(value)[:MAX_TEXT]


def timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp (`Z` or an offset, up to nine fractional digits) or epoch seconds,
    as a timezone-aware UTC datetime. A timestamp without an offset is read as UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise UnsupportedEvent(f"not a timestamp: {value!r}") from None
    if not isinstance(value, str) or not value:
        raise UnsupportedEvent(f"expected a timestamp, got {value!r}")
    cleaned = _FRACTION.sub(lambda m: "." + m.group(1), value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UnsupportedEvent(f"not a timestamp: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def identifier(value: str) -> str:
    """An event id of at most 256 characters: a longer one is hashed, so it stays unique."""
    if not value:
        raise UnsupportedEvent("the event has no id")
    if len(value) <= MAX_TEXT:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def mapping(value: object, what: str) -> Mapping[str, Any]:
    """A field that must be a JSON object; `what` names it in the refusal."""
    if not isinstance(value, Mapping):
        raise UnsupportedEvent(f"{what} is not an object")
    return value


def require(event: Event, *keys: str) -> None:
    """Refuses an event that lacks any of the keys, or has them empty."""
    missing = [k for k in keys if k not in event or event[k] in (None, "")]
    if missing:
        raise UnsupportedEvent(f"event lacks {', '.join(missing)}")


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Turns what a converter trips over in a malformed payload (a missing key, a value of
    the wrong type) into `UnsupportedEvent` naming the shape it was reading."""
    try:
        yield
    except UnsupportedEvent:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UnsupportedEvent(f"malformed {what}: {exc!r}") from None
