"""PubSubPublisher against the Pub/Sub emulator: CloudEvents in binary content mode."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from quiesce.events import CloudEvent
from quiesce_gcp.events import MAX_MESSAGES, PubSubPublisher, batches, from_message, to_message

PROJECT = "quiesce-test"


def event(i: int = 0, **extra: Any) -> CloudEvent:
    return CloudEvent(
        source="quiesce/shop/orders",
        type="quiesce.run.completed",
        subject=f"run-{i}",
        data={"run_id": f"run-{i}", "n": i},
        quiescerunid=f"run-{i}",
        quiescegroup="orders",
        **extra,
    )


def test_binary_mode_round_trips() -> None:
    e = event(1)
    data, attrs = to_message(e)
    assert attrs["ce-specversion"] == "1.0"
    assert attrs["ce-type"] == "quiesce.run.completed"
    assert attrs["ce-id"] == e.id
    assert attrs["ce-time"].endswith("Z")
    assert attrs["content-type"] == "application/json"
    assert from_message(data, attrs) == e


def test_batches_respect_count_and_size() -> None:
    msgs = [(str(i), b"x" * 10, {"a": "b"}) for i in range(2500)]
    assert [len(b) for b in batches(msgs)] == [MAX_MESSAGES, MAX_MESSAGES, 500]
    big: list[tuple[str, bytes, dict[str, str]]] = [
        (str(i), b"x" * 4_000_000, {}) for i in range(5)
    ]
    assert [len(b) for b in batches(big)] == [2, 2, 1]


@pytest.fixture
def topic(pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    name = f"t{os.getpid()}"
    topic_path = publisher.topic_path(PROJECT, name)
    sub_path = subscriber.subscription_path(PROJECT, name)
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(name=sub_path, topic=topic_path)
    yield topic_path, sub_path
    subscriber.delete_subscription(subscription=sub_path)
    publisher.delete_topic(topic=topic_path)
    subscriber.close()


def test_events_arrive_on_a_subscription_with_ce_attributes(topic: tuple[str, str]) -> None:
    from google.cloud import pubsub_v1

    topic_path, sub_path = topic
    events = [event(i) for i in range(3)]
    assert PubSubPublisher(topic_path).publish(events) == []

    subscriber = pubsub_v1.SubscriberClient()
    got: dict[str, Any] = {}
    for _ in range(20):
        resp = subscriber.pull(subscription=sub_path, max_messages=10, timeout=5)
        for msg in resp.received_messages:
            got[msg.message.attributes["ce-id"]] = msg.message
        if resp.received_messages:
            subscriber.acknowledge(
                subscription=sub_path, ack_ids=[m.ack_id for m in resp.received_messages]
            )
        if len(got) == 3:
            break
    subscriber.close()
    assert set(got) == {e.id for e in events}
    for e in events:
        msg = got[e.id]
        attrs = dict(msg.attributes)
        assert attrs["ce-type"] == "quiesce.run.completed"
        assert attrs["ce-source"] == "quiesce/shop/orders"
        assert attrs["ce-subject"] == e.subject
        assert attrs["ce-quiescerunid"] == e.quiescerunid
        assert from_message(msg.data, attrs) == e


def test_a_missing_topic_returns_every_id_as_failed(
    topic: tuple[str, str],
) -> None:
    topic_path, _ = topic
    missing = topic_path + "-missing"
    events = [event(i) for i in range(2)]
    assert sorted(PubSubPublisher(missing, timeout=20).publish(events)) == sorted(
        e.id for e in events
    )


def test_each_batch_is_one_publish_request_whatever_the_machines_speed(
    topic: tuple[str, str],
) -> None:
    """2,300 events are three batches (1,000, 1,000, 300): three Publish requests, counted on
    the client's channel, even when the library's per-message hand-over is slow (its batcher,
    on a 10 ms timer, would send what it had gathered and split a batch)."""
    import time

    import grpc
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    topic_path, _ = topic
    sizes: list[int] = []

    class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            if details.method.endswith("/Publish"):
                sizes.append(len(request.messages))
            return continuation(details, request)

    class SlowHandOver(PublisherClient):  # type: ignore[misc]
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.001)  # a busy machine: each message takes a while to hand over
            return super().publish(*args, **kwargs)

    channel = grpc.intercept_channel(
        grpc.insecure_channel(os.environ["PUBSUB_EMULATOR_HOST"]), Count()
    )
    client = SlowHandOver(
        batch_settings=BatchSettings(max_messages=1000, max_bytes=10_000_000, max_latency=0.01),
        transport=PublisherGrpcTransport(channel=channel),
    )
    events = [event(i) for i in range(2300)]

    assert PubSubPublisher(topic_path, client=client).publish(events) == []

    assert sizes == [1000, 1000, 300]


def test_a_failed_request_fails_exactly_its_batch(topic: tuple[str, str]) -> None:
    topic_path, _ = topic
    publisher = PubSubPublisher(topic_path + "-missing", timeout=20)
    events = [event(i) for i in range(1200)]

    failed = publisher.publish(events)

    assert sorted(failed) == sorted(e.id for e in events)  # both batches, every id once
    assert len(failed) == len(set(failed))
