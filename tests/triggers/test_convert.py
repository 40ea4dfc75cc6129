"""The field helpers every cloud's converters share: text, timestamps, ids, objects, required
fields and malformed payloads, each refused with a reason that names what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from quiesce.triggers.convert import (
    UnsupportedEvent,
    identifier,
    mapping,
    reading,
    require,
    text,
    timestamp,
)
from quiesce.triggers.event import TriggerEvent

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-29T12:00:00Z",
        "2026-11-29T12:00:00",  # no offset: read as UTC
        "2026-11-29T14:00:00+02:00",
        "2026-11-29T12:00:00.000+0000",
        "2026-11-29T12:00:00.0000000Z",  # seven fractional digits, as Azure writes them
        NOON.timestamp(),  # epoch seconds
        int(NOON.timestamp()),
    ],
)
def test_every_timestamp_becomes_the_same_aware_utc_datetime(value: object) -> None:
    converted = timestamp(value)
    assert converted == NOON
    assert converted.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "not a timestamp: 'yesterday'"),
        ("", "expected a timestamp, got ''"),
        (None, "expected a timestamp, got None"),
        (True, "expected a timestamp, got True"),
    ],
)
def test_what_is_no_timestamp_is_refused_naming_it(value: object, message: str) -> None:
    with pytest.raises(UnsupportedEvent, match=message):
        timestamp(value)


def test_text_is_at_most_256_characters_and_a_missing_field_is_empty() -> None:
    assert text(None) == ""
    assert text(42) == "42"
    assert text("x" * 300) == "x" * 256


def test_a_long_id_is_hashed_so_it_stays_unique_and_a_missing_one_is_refused() -> None:
    assert identifier("abc") == "abc"
    long_a, long_b = identifier("a" * 300), identifier("a" * 299 + "b")
    assert long_a.startswith("sha256:")
    assert len(long_a) <= 256
    assert long_a != long_b
    with pytest.raises(UnsupportedEvent, match="has no id"):
        identifier("")


def test_required_fields_must_be_present_and_not_empty() -> None:
    require({"id": "1", "time": "t"}, "id", "time")
    with pytest.raises(UnsupportedEvent, match="event lacks time, detail"):
        require({"id": "1", "time": "", "detail": None}, "id", "time", "detail")


def test_an_object_field_that_is_no_object_is_refused_naming_it() -> None:
    assert mapping({"a": 1}, "the data") == {"a": 1}
    with pytest.raises(UnsupportedEvent, match="the data is not an object"):
        mapping(["a"], "the data")


def test_what_a_converter_trips_over_is_refused_naming_the_shape() -> None:
    empty: dict[str, object] = {}
    shape = r"malformed SNS event: KeyError\('Sns'\)"
    with pytest.raises(UnsupportedEvent, match=shape), reading("SNS event"):
        _ = empty["Sns"]
    # a refusal a converter raises itself keeps its own reason
    with pytest.raises(UnsupportedEvent, match=r"^event lacks id$"), reading("SNS event"):
        require(empty, "id")


def test_a_trigger_event_keeps_its_time_in_utc_and_refuses_a_naive_one() -> None:
    east = datetime(2026, 11, 29, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = TriggerEvent(kind="deploy", source="test", id="1", time=east)
    assert (event.time, event.time.tzinfo) == (NOON, UTC)
    with pytest.raises(pydantic.ValidationError, match="time needs a time zone"):
        TriggerEvent(kind="deploy", source="test", id="1", time=datetime(2026, 11, 29, 12))
