"""The scheduler function end to end on the GCP adapters: a Cloud Scheduler message (as
functions-framework delivers it) backs up a two-VM `agent` group — the real Compute client
against the fake Compute API, the real guest agent and guest runner on each VM — and the run's
CloudEvents arrive on a Pub/Sub subscription of the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quiesce.ports import Backends
from quiesce.providers.memory import MemoryStateStore
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.events import PubSubPublisher

from .conftest import Fleet
from .scheduled_app import scheduled_app
from .test_engine_run import backends
from .test_events import topic  # noqa: F401  (the emulator topic and its subscription)

ROOT = Path(__file__).resolve().parents[2]
SCHEDULER = ROOT / "tests" / "events" / "gcp" / "scheduler.json"


def pulled(sub_path: str) -> list[dict[str, Any]]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    out: list[dict[str, Any]] = []
    try:
        while True:
            resp = subscriber.pull(subscription=sub_path, max_messages=50, timeout=5)
            if not resp.received_messages:
                return out
            subscriber.acknowledge(
                subscription=sub_path, ack_ids=[m.ack_id for m in resp.received_messages]
            )
            out += [
                {"attributes": dict(m.message.attributes), "data": json.loads(m.message.data)}
                for m in resp.received_messages
            ]
    finally:
        subscriber.close()


def test_a_scheduler_message_backs_up_a_two_vm_agent_group_and_publishes_its_events(
    fleet: Fleet,
    clients: GcpClients,
    topic: tuple[str, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    app_main: None,
) -> None:
    app, main, policy = scheduled_app(fleet, tmp_path, monkeypatch)
    built = backends(policy, clients)
    topic_path, sub_path = topic
    wired = Backends(built.providers, MemoryStateStore(), PubSubPublisher(topic_path))
    monkeypatch.setattr(main, "backends", lambda: wired)

    response = app.test_client().post(
        "/",
        json=json.loads(SCHEDULER.read_text()),
        headers={"Content-Type": "application/cloudevents+json"},
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    lines = fleet.lines()
    pres = [i for i, line in enumerate(lines) if line.startswith("pre ")]
    snaps = [i for i, line in enumerate(lines) if line.startswith("snapshot ")]
    posts = [i for i, line in enumerate(lines) if line.startswith("post ")]
    assert len(pres) == 2
    assert len(snaps) == 4
    assert len(posts) == 2
    assert max(pres) < min(snaps) < max(snaps) < min(posts), lines
    events = pulled(sub_path)
    types = [e["attributes"]["ce-type"] for e in events]
    assert types.count("quiesce.member.quiesced") == 2
    assert types.count("quiesce.member.thawed") == 2
    assert "quiesce.run.completed" in types
    (completed,) = [e for e in events if e["attributes"]["ce-type"] == "quiesce.run.completed"]
    assert (completed["data"]["status"], completed["data"]["consistency"]) == (
        "succeeded",
        "application",
    )
