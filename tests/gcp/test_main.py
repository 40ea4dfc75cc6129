"""The Cloud Functions entry points, driven through functions-framework's test client with the
golden Pub/Sub CloudEvents (tests/events/gcp) and the services' documented payloads
(tests/gcp/payloads) in binary and structured mode, against memory stores and a scripted
provider: a schedule backs up the group, a redelivered message runs once, an alert inside its
cooldown runs nothing, an alert fires while it fires and not when it recovers unless asked, a
Cloud Deploy approval fires, and events of the wrong kind or shape are refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from functions_framework import create_app

from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from tests.fakes import FakeHookRunner, FakeInventory, FakeSnapshotter, Log

from . import pubsub

MAIN = Path(__file__).resolve().parents[2] / "functions" / "gcp" / "quiesce_gcp" / "main.py"
EVENTS = Path(__file__).resolve().parents[1] / "events" / "gcp"


def golden(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return payload


def member(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "gcp",
        "project": "quiesce-prod-4711",
        "zone": "europe-west1-b",
        "select": {"instances": [f"orders-{name}-1"]},
        "hooks": {
            "pre": {"run": [f"/etc/quiesce/{name}-pause.sh"], "timeout_seconds": 5},
            "post": {"run": [f"/etc/quiesce/{name}-resume.sh"], "timeout_seconds": 5},
        },
    }


POLICY = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "consistency": "application",
            "on_quiesce_failure": "abort",
            "max_freeze_seconds": 30,
            "durability_timeout_seconds": 60,
            "members": [member("db"), member("app")],
        }
    },
    "triggers": [
        {"name": "nightly", "group": "orders", "schedule": "0 4 * * *"},
        {
            "name": "pre-deploy",
            "group": "orders",
            "on": "deploy",
            "match": {"provider": "clouddeploy", "state": "Start", "target": "prod"},
        },
        {
            "name": "disk-alarm",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "orders-db-*", "state": "open"},
            "cooldown_minutes": 60,
        },
        # for Monitoring's documented schema 1.2 incident (tests/gcp/payloads)
        {"name": "cpu-alarm", "group": "orders", "on": "alert", "match": {"alarm": "Monitor-*"}},
        {
            "name": "cpu-recovered",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "Monitor-*", "condition": "resolved"},
        },
        {
            "name": "prod-approval",
            "group": "orders",
            "on": "deploy",
            "match": {"provider": "clouddeploy", "notification": "approval", "target": "prod"},
        },
    ],
}


class World:
    def __init__(self, main: Any) -> None:
        self.main = main
        self.log = Log()
        self.hooks = FakeHookRunner(self.log)
        self.snapshots = FakeSnapshotter(self.log)
        self.state = MemoryStateStore()
        self.bus = MemoryEventBus()
        provider = Provider(FakeInventory(), self.hooks, self.snapshots)
        self.backends = Backends(
            providers={"gcp": provider, "local": provider}, state=self.state, bus=self.bus
        )
        self.clients: dict[str, Any] = {}

    def client(self, target: str) -> Any:
        if target not in self.clients:
            app = create_app(target, str(MAIN), "cloudevent")  # type: ignore[no-untyped-call]
            self.clients[target] = app.test_client()
            # create_app (re)loads main.py as the module `main`: patch that module.
            loaded = sys.modules["main"]
            loaded.backends = lambda: self.backends  # type: ignore[attr-defined]
            self.main = loaded
        return self.clients[target]

    def structured(self, target: str, event: dict[str, Any]) -> Any:
        return self.client(target).post(
            "/", json=event, headers={"Content-Type": "application/cloudevents+json"}
        )

    def binary(self, target: str, event: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        for key in ("specversion", "type", "source", "id", "time"):
            headers[f"ce-{key}"] = event[key]
        return self.client(target).post("/", json=event["data"], headers=headers)

    def runs(self) -> list[str]:
        return [r.run_id for r in self.state.list_runs("shop")]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("QUIESCE_POLICY", str(policy_file))
    monkeypatch.setenv("QUIESCE_FUNCTION_TIMEOUT_SECONDS", "540")
    yield World(None)
    sys.modules.pop("main", None)


def logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_a_scheduler_message_backs_up_the_group(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    response = world.structured("on_schedule", golden("scheduler.json"))

    assert response.status_code == 200
    (run_id,) = world.runs()
    record = world.state.get_run(run_id)
    assert record is not None
    assert record.status.value == "succeeded"
    assert record.trigger_id == "gcp.scheduler:12960537433651735:nightly"
    assert sorted(world.hooks.executed) == [
        ("app", "post"),
        ("app", "pre"),
        ("db", "post"),
        ("db", "pre"),
    ]
    assert len(world.snapshots.store) == 2
    assert world.bus.types()[0] == "quiesce.run.started"
    entries = logged(capsys)
    assert all({"severity", "message"} <= set(e) for e in entries)
    (fired,) = [e for e in entries if e["message"] == "trigger fired"]
    assert (fired["severity"], fired["trigger"], fired["outcome"]["action"]) == (
        "INFO",
        "nightly",
        "ran",
    )
    (answer,) = [e for e in entries if "answer" in e]
    assert (answer["answer"], answer["fired"]) == ("fired", 1)


def test_binary_mode_delivery_works_the_same(world: World) -> None:
    response = world.binary("on_schedule", golden("scheduler.json"))
    assert response.status_code == 200
    assert len(world.runs()) == 1


def test_a_duplicate_delivery_of_the_same_message_runs_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.structured("on_schedule", golden("scheduler.json"))
    executed = len(world.hooks.executed)
    capsys.readouterr()

    response = world.binary("on_schedule", golden("scheduler.json"))

    assert response.status_code == 200
    assert len(world.runs()) == 1
    assert len(world.hooks.executed) == executed, "no hook ran again"
    (fired,) = [e for e in logged(capsys) if "outcome" in e]
    assert fired["outcome"]["action"] == "duplicate"


def test_an_alert_inside_its_cooldown_runs_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    alert = golden("monitoring_incident_open.json")
    world.structured("on_alert", alert)
    assert len(world.runs()) == 1
    executed = len(world.hooks.executed)
    capsys.readouterr()

    again = json.loads(json.dumps(alert))
    for key in ("messageId", "message_id"):
        again["data"]["message"][key] = "a-second-incident-message"
    again["id"] = "a-second-incident-message"
    world.structured("on_alert", again)

    assert len(world.runs()) == 1
    assert len(world.hooks.executed) == executed
    (held,) = [e for e in logged(capsys) if "outcome" in e]
    assert (held["outcome"]["action"], held["outcome"]["trigger"]) == ("cooldown", "disk-alarm")


def test_a_closed_incident_fires_nothing(world: World) -> None:
    world.structured("on_alert", golden("monitoring_incident_closed.json"))
    assert world.runs() == []


def test_a_cloud_deploy_rollout_start_fires_the_deploy_trigger(world: World) -> None:
    assert world.structured("on_deploy", golden("cloud_deploy_operation.json")).status_code == 200
    (run_id,) = world.runs()
    record = world.state.get_run(run_id)
    assert record is not None
    assert record.trigger_id == "gcp.clouddeploy:12960539127718342:pre-deploy"


@pytest.mark.parametrize(
    ("target", "fixture"),
    [
        ("on_deploy", "scheduler.json"),
        ("on_schedule", "monitoring_incident_open.json"),
        ("on_alert", "cloud_deploy_operation.json"),
    ],
)
def test_an_event_of_another_kind_is_refused_and_runs_nothing(
    world: World, capsys: pytest.CaptureFixture[str], target: str, fixture: str
) -> None:
    response = world.structured(target, golden(fixture))

    assert response.status_code == 200  # acknowledged: a redelivery could not change it
    assert world.runs() == []
    assert world.hooks.executed == []
    entries = logged(capsys)
    (refusal,) = [e for e in entries if e["severity"] == "ERROR"]
    assert refusal["message"].startswith("event refused: a")
    assert "accepts only its own kind" in refusal["reason"]
    (answer,) = [e for e in entries if "answer" in e]
    assert answer["answer"] == "refused"


def test_a_malformed_event_is_refused_with_the_reason_and_runs_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    event = golden("scheduler.json")
    event["data"]["message"]["data"] = "not base64!"

    response = world.structured("on_schedule", event)

    assert response.status_code == 200
    assert world.runs() == []
    (refusal,) = [e for e in logged(capsys) if e["severity"] == "ERROR"]
    assert "not base64" in refusal["reason"]


def test_an_event_that_is_not_a_pubsub_message_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    event = golden("scheduler.json")
    event["type"] = "google.cloud.storage.object.v1.finalized"
    world.structured("on_schedule", event)
    assert world.runs() == []
    (refusal,) = [e for e in logged(capsys) if e["severity"] == "ERROR"]
    assert "messagePublished" in refusal["reason"]


def test_a_run_that_cannot_fit_the_function_timeout_is_refused(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_freeze_seconds 30 + the 60 s margin does not fit a 60 s function: nothing runs."""
    monkeypatch.setenv("QUIESCE_FUNCTION_TIMEOUT_SECONDS", "60")

    response = world.structured("on_schedule", golden("scheduler.json"))

    assert response.status_code == 200  # acknowledged: a redelivery would not fit either
    assert world.runs() == []
    assert world.hooks.executed == []
    entries = logged(capsys)
    (refusal,) = [e for e in entries if e["severity"] == "ERROR"]
    assert "group 'orders' needs at least 90s" in refusal["reason"]
    assert "QUIESCE_FUNCTION_TIMEOUT_SECONDS=60" in refusal["reason"]
    (answer,) = [e for e in entries if "answer" in e]
    assert answer["answer"] == "refused"


def test_without_a_configured_timeout_the_platform_default_is_assumed_and_named(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUIESCE_FUNCTION_TIMEOUT_SECONDS")
    world.structured("on_schedule", golden("scheduler.json"))
    assert world.runs() == []
    (refusal,) = [e for e in logged(capsys) if e["severity"] == "ERROR"]
    assert "QUIESCE_FUNCTION_TIMEOUT_SECONDS unset" in refusal["reason"]


def test_a_message_that_fires_no_trigger_is_ignored(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.structured("on_alert", golden("monitoring_incident_closed.json"))
    (answer,) = [e for e in logged(capsys) if "answer" in e]
    assert answer["answer"] == "ignored"


def test_a_timeout_setting_that_is_no_number_of_seconds_fails_naming_it() -> None:
    from quiesce.errors import QuiesceError
    from quiesce_gcp.main import deadline

    for value in ("ten", "0", "-5"):
        with pytest.raises(QuiesceError, match="QUIESCE_FUNCTION_TIMEOUT_SECONDS"):
            deadline({"QUIESCE_FUNCTION_TIMEOUT_SECONDS": value})
    remaining = deadline({"QUIESCE_FUNCTION_TIMEOUT_SECONDS": "540"}).remaining()
    assert remaining is not None
    assert 0 < remaining <= 540


# ------------------------------------------------------------------------------ documented payloads

MODES = ["structured", "binary"]


def deliver(world: World, mode: str, target: str, event: dict[str, Any]) -> Any:
    send = world.structured if mode == "structured" else world.binary
    response = send(target, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def fired_triggers(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str]]:
    return [
        (e["outcome"]["trigger"], e["outcome"]["action"]) for e in logged(capsys) if "outcome" in e
    ]


@pytest.mark.parametrize("mode", MODES)
def test_an_open_incident_fires_the_trigger_that_names_only_its_policy(
    world: World, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    deliver(world, mode, "on_alert", pubsub.incident("open", message_id="3103425958877813"))

    (run_id,) = world.runs()
    record = world.state.get_run(run_id)
    assert record is not None
    assert record.trigger_id == "gcp.monitoring:3103425958877813:cpu-alarm"
    assert record.status.value == "succeeded"
    assert fired_triggers(capsys) == [("cpu-alarm", "ran")]


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_incident_fires_only_the_trigger_that_asks_for_recovery(
    world: World, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """Monitoring's documented `closed` incident: `cpu-alarm` (policy only) stays quiet,
    `cpu-recovered` (condition: resolved) runs."""
    deliver(world, mode, "on_alert", pubsub.incident("closed"))

    assert fired_triggers(capsys) == [("cpu-recovered", "ran")]
    (run_id,) = world.runs()
    record = world.state.get_run(run_id)
    assert record is not None
    assert record.trigger_id == "gcp.monitoring:12960542283310994:cpu-recovered"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["required", "approved"])
def test_a_cloud_deploy_approval_fires_the_approval_trigger(
    world: World, capsys: pytest.CaptureFixture[str], mode: str, action: str
) -> None:
    """clouddeploy-approvals messages carry no ResourceType attribute; they used to be
    refused as unknown."""
    deliver(world, mode, "on_deploy", pubsub.clouddeploy(f"approvals_{action}"))

    assert fired_triggers(capsys) == [("prod-approval", "ran")]
    (run_id,) = world.runs()
    record = world.state.get_run(run_id)
    assert record is not None
    assert record.trigger_id == "gcp.clouddeploy:12960539230081117:prod-approval"


@pytest.mark.parametrize("mode", MODES)
def test_a_rejected_rollout_is_refused_with_the_reason_and_runs_nothing(
    world: World, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    deliver(world, mode, "on_deploy", pubsub.clouddeploy("approvals_rejected"))

    assert world.runs() == []
    entries = logged(capsys)
    (refusal,) = [e for e in entries if e["severity"] == "ERROR"]
    assert "'Rejected' fires no trigger" in refusal["reason"]
    (answer,) = [e for e in entries if "answer" in e]
    assert answer["answer"] == "refused"


# ------------------------------------------------------------------------------ wiring


def test_a_policy_in_cloud_storage_needs_google_cloud_storage_and_says_so() -> None:
    from quiesce.errors import PolicyError
    from quiesce_gcp.policy_source import load_policy_from

    with pytest.raises(PolicyError, match="needs google-cloud-storage"):
        load_policy_from("gs://bucket/policy.yaml")
    with pytest.raises(PolicyError, match="QUIESCE_POLICY is not set"):
        load_policy_from(None)
    with pytest.raises(PolicyError, match="no such file"):
        load_policy_from("/nonexistent/policy.yaml")


def test_gcp_backends_wires_the_provider_firestore_and_pubsub() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from quiesce.errors import QuiesceError
    from quiesce.policy import parse_policy
    from quiesce_gcp.provider import gcp_backends, topic_path
    from quiesce_gcp.state import FirestoreStateStore

    policy = parse_policy(yaml.safe_dump(POLICY), path="policy.yaml")
    client = firestore.Client(project="p", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    bus = MemoryEventBus()
    env = {"QUIESCE_PROJECT": "p", "QUIESCE_FIRESTORE_PREFIX": "qq"}
    built = gcp_backends(policy, env=env, firestore_client=client, bus=bus)
    assert set(built.providers) == {"gcp"}
    assert isinstance(built.state, FirestoreStateStore)
    assert built.state.prefix == "qq"
    assert built.bus is bus
    with pytest.raises(QuiesceError, match="QUIESCE_PUBSUB_TOPIC"):
        gcp_backends(policy, env=env, firestore_client=client)
    assert topic_path("events", "p") == "projects/p/topics/events"
    assert topic_path("projects/x/topics/t", None) == "projects/x/topics/t"
    with pytest.raises(QuiesceError, match="names no project"):
        topic_path("events", None)
