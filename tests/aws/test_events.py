"""EventBridgePublisher: CloudEvents as PutEvents entries, in batches, through a rule to SQS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quiesce.events import CloudEvent
from quiesce_aws.clients import SessionClients
from quiesce_aws.events import MAX_REQUEST_BYTES, EventBridgePublisher, entry_size

from .conftest import REGION, Sleeps, Wire, quick_backoff

BUS = "quiesce-test"


def event(n: int, size: int = 0) -> CloudEvent:
    return CloudEvent(
        id=f"e-{n}",
        source="/quiesce/policies/shop/groups/orders",
        type="quiesce.run.completed",
        subject=f"run-{n}",
        data={"n": n, "pad": "x" * size},
        quiescerunid=f"run-{n}",
        quiescegroup="orders",
    )


@pytest.fixture
def events_client(clients: SessionClients) -> Any:
    client = clients.events(REGION)
    client.create_event_bus(Name=BUS)
    return client


@pytest.fixture
def publisher(clients: SessionClients, events_client: Any, sleeps: Sleeps) -> EventBridgePublisher:
    return EventBridgePublisher(clients, REGION, bus=BUS, backoff=quick_backoff(sleeps))


def test_25_events_go_out_in_3_put_events_calls_of_at_most_10(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")

    failed = publisher.publish([event(n) for n in range(25)])

    assert failed == []
    assert [len(call["Entries"]) for call in sent] == [10, 10, 5]


def test_each_entry_carries_the_whole_cloudevent(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")
    one = event(1)

    publisher.publish([one])

    (entry,) = sent[0]["Entries"]
    assert entry["Source"] == "quiesce"
    assert entry["DetailType"] == "quiesce.run.completed"
    assert entry["EventBusName"] == BUS
    assert CloudEvent.model_validate_json(entry["Detail"]) == one


def test_the_source_can_be_each_events_own(
    clients: SessionClients, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")

    EventBridgePublisher(clients, REGION, bus=BUS, source=None).publish([event(1)])

    assert sent[0]["Entries"][0]["Source"] == "/quiesce/policies/shop/groups/orders"


def test_events_arrive_in_an_sqs_queue_through_a_rule(
    publisher: EventBridgePublisher, clients: SessionClients, events_client: Any
) -> None:
    sqs = clients.session.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="quiesce-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events_client.put_rule(
        Name="quiesce-all",
        EventBusName=BUS,
        EventPattern=json.dumps({"source": ["quiesce"], "detail-type": [{"prefix": "quiesce."}]}),
    )
    events_client.put_targets(
        Rule="quiesce-all", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    published = [event(n) for n in range(3)]

    assert publisher.publish(published) == []

    bodies = []
    for _ in range(5):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        bodies += [json.loads(m["Body"]) for m in messages]
        if len(bodies) >= 3:
            break
    received = sorted((CloudEvent.model_validate(b["detail"]) for b in bodies), key=lambda e: e.id)
    assert received == published
    assert {b["detail-type"] for b in bodies} == {"quiesce.run.completed"}


def test_an_entry_that_fails_is_returned_and_a_throttled_one_is_sent_again(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire, sleeps: Sleeps
) -> None:
    sent = wire.sent(events_client, "PutEvents")
    answers = iter(
        [
            {
                "FailedEntryCount": 2,
                "Entries": [
                    {"EventId": "ok-0"},
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                    {"ErrorCode": "InvalidArgument", "ErrorMessage": "bad detail"},
                ],
            }
        ]
    )
    wire.answer(events_client, "PutEvents", lambda _params: next(answers, None))

    failed = publisher.publish([event(0), event(1), event(2)])

    assert failed == ["e-2"]
    assert [[json.loads(e["Detail"])["id"] for e in c["Entries"]] for c in sent] == [
        ["e-0", "e-1", "e-2"],
        ["e-1"],
    ]
    assert sleeps.waits == [0.05]


def test_an_entry_that_keeps_failing_is_returned_after_a_few_resends(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")
    wire.answer(
        events_client,
        "PutEvents",
        lambda params: {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "InternalFailure"}] * len(params["Entries"]),
        },
    )

    assert publisher.publish([event(7)]) == ["e-7"]
    assert len(sent) == 3


def test_a_call_that_fails_returns_every_id_of_its_batch(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    wire.fail(events_client, "PutEvents", "AccessDeniedException", status=403)

    failed = publisher.publish([event(n) for n in range(12)])

    assert failed == [f"e-{n}" for n in range(10)]  # the second batch went through


def test_batches_stay_under_256_kb_per_request(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")
    big = [event(n, size=60_000) for n in range(6)]

    assert publisher.publish(big) == []

    assert [len(c["Entries"]) for c in sent] == [4, 2]
    for call in sent:
        assert sum(entry_size(e) for e in call["Entries"]) <= MAX_REQUEST_BYTES


def test_an_event_over_256_kb_is_refused_without_a_call(
    publisher: EventBridgePublisher, events_client: Any, wire: Wire
) -> None:
    sent = wire.sent(events_client, "PutEvents")

    assert publisher.publish([event(1, size=300_000)]) == ["e-1"]
    assert sent == []
