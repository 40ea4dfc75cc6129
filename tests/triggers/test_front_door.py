"""The front door every cloud function calls: the kind check, the time-fit check, firing, and
one answer vocabulary (`fired | ignored | refused`), with the lines it reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from quiesce.policy import Policy, parse_policy
from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.front_door import (
    RUN_MARGIN_SECONDS,
    Answer,
    Deadline,
    FrontDoor,
    Kind,
    Reporter,
)
from tests.fakes import World, make_world

POLICY = """\
version: 1
name: shop
groups:
  orders:
    consistency: crash
    max_freeze_seconds: 30
    members: [{name: db, provider: local, volumes: [/srv/db]}]
triggers:
  - {name: nightly, group: orders, schedule: "0 4 * * *"}
  - {name: pre-deploy, group: orders, on: deploy, match: {state: START}}
"""
T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
NEEDED = 30 + RUN_MARGIN_SECONDS
PLENTY = Deadline(lambda: 900.0, "plenty")


def event(kind: str, id_: str = "e-1", **attributes: str) -> TriggerEvent:
    return TriggerEvent(
        kind=kind,  # type: ignore[arg-type]
        source="test",
        id=id_,
        time=T0,
        trigger="nightly" if kind == "schedule" else None,
        attributes=attributes,
    )


class Lines(Reporter):
    def __init__(self) -> None:
        self.lines: list[tuple[int, str, dict[str, Any]]] = []

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        self.lines.append((level, message, fields))

    def messages(self) -> list[str]:
        return [message for _, message, _ in self.lines]


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest.fixture
def world() -> World:
    return make_world()


def serve(
    policy: Policy,
    world: World,
    events: list[TriggerEvent] | Callable[[Any], list[TriggerEvent]],
    kind: Kind,
    deadline: Deadline = PLENTY,
    report: Reporter | None = None,
) -> Answer:
    convert = events if callable(events) else (lambda _payload: events)
    door = FrontDoor(lambda: policy, lambda: world.backends, report or Lines())
    return door.handle({"id": "payload-1"}, kind, convert, deadline)


def test_an_event_of_the_functions_kind_fires_its_trigger(policy: Policy, world: World) -> None:
    report = Lines()
    answer = serve(policy, world, [event("schedule")], "schedule", report=report)
    assert answer.status == "fired"
    (outcome,) = answer.outcomes
    assert (outcome.trigger, outcome.action) == ("nightly", "ran")
    assert report.messages() == ["trigger event", "trigger fired", "event fired"]
    assert len(world.state.list_runs("shop")) == 1


def test_an_event_of_another_kind_is_refused_before_the_policy_is_read(world: World) -> None:
    def no_policy() -> Policy:
        raise AssertionError("the policy is read only for an event the function serves")

    report = Lines()
    door = FrontDoor(no_policy, lambda: world.backends, report)
    answer = door.handle({}, "alert", lambda _payload: [event("deploy", state="START")], PLENTY)
    assert (answer.status, answer.outcomes) == ("refused", [])
    assert answer.reason == (
        "a deploy event (test) reached the alert function: it accepts only its own kind"
    )
    level, message, fields = report.lines[0]
    assert (level, fields["event_id"]) == (logging.ERROR, "e-1")
    assert message == f"event refused: {answer.reason}"
    assert world.state.list_runs("shop") == []


def test_a_payload_the_converter_cannot_read_is_refused_with_its_reason(
    policy: Policy, world: World
) -> None:
    def unreadable(_payload: Any) -> list[TriggerEvent]:
        raise UnsupportedEvent("no converter for event type 'x'")

    report = Lines()
    answer = serve(policy, world, unreadable, "deploy", report=report)
    assert (answer.status, answer.reason) == ("refused", "no converter for event type 'x'")
    assert report.lines[0][2] == {"reason": answer.reason, "event_id": "payload-1"}


def test_a_payload_that_holds_no_event_is_refused(policy: Policy, world: World) -> None:
    answer = serve(policy, world, [], "deploy")
    assert (answer.status, answer.reason) == ("refused", "the payload holds no event")


def test_an_event_that_fires_no_trigger_is_ignored(policy: Policy, world: World) -> None:
    report = Lines()
    answer = serve(policy, world, [event("deploy", state="DONE")], "deploy", report=report)
    assert (answer.status, answer.outcomes) == ("ignored", [])
    assert report.messages() == ["the event fires no trigger", "event ignored"]


@pytest.mark.parametrize(("left", "status"), [(NEEDED - 1, "refused"), (NEEDED, "fired")])
def test_a_run_must_fit_the_time_the_function_has_left(
    policy: Policy, world: World, left: float, status: str
) -> None:
    deadline = Deadline(lambda: left, "the platform's clock")
    answer = serve(policy, world, [event("schedule")], "schedule", deadline)
    assert answer.status == status
    if status == "refused":
        assert answer.reason == (
            f"group 'orders' needs at least {NEEDED}s (max_freeze_seconds + "
            f"{RUN_MARGIN_SECONDS}s) but the function has {NEEDED - 1}s left (the platform's "
            "clock): raise the function's timeout"
        )
        assert world.state.list_runs("shop") == []


def test_the_time_left_is_the_configured_timeout_minus_what_has_passed() -> None:
    now = [1000.0]
    deadline = Deadline.after(100, "timeout 100s", clock=lambda: now[0])
    assert deadline.remaining() == 100
    now[0] += 15
    assert deadline.remaining() == 85
    assert Deadline.after(None, "unbounded").remaining() is None


def test_a_run_that_fitted_at_the_start_is_refused_once_the_time_has_passed(
    policy: Policy, world: World
) -> None:
    """The second event of a batch sees the time the first one used."""
    now = [0.0]
    deadline = Deadline.after(NEEDED + 5, "timeout", clock=lambda: now[0])

    def two_schedules(_payload: Any) -> list[TriggerEvent]:
        return [event("schedule", "e-1"), event("schedule", "e-2")]

    class Slow(Lines):
        def fired(self, outcome: Any) -> None:
            super().fired(outcome)
            now[0] += 10  # the first run took ten seconds

    answer = serve(policy, world, two_schedules, "schedule", deadline, Slow())
    assert answer.status == "fired"
    assert [o.action for o in answer.outcomes] == ["ran"]
    assert "has 85s left" in answer.reason


def test_an_unbounded_function_takes_any_run(policy: Policy, world: World) -> None:
    answer = serve(policy, world, [event("schedule")], "schedule", Deadline.after(None, "-1"))
    assert answer.status == "fired"


def test_a_batch_fires_what_it_can_and_says_what_it_refused(policy: Policy, world: World) -> None:
    batch = [event("deploy", "d-1", state="START"), event("alert", "a-1")]
    answer = serve(policy, world, batch, "deploy")
    assert answer.status == "fired"
    assert [o.trigger for o in answer.outcomes] == ["pre-deploy"]
    assert "an alert event (test) reached the deploy function" in answer.reason


def test_a_second_delivery_is_fired_again_and_comes_to_duplicate(
    policy: Policy, world: World
) -> None:
    first = serve(policy, world, [event("schedule")], "schedule")
    again = serve(policy, world, [event("schedule")], "schedule")
    assert (first.status, again.status) == ("fired", "fired")
    assert [o.action for o in again.outcomes] == ["duplicate"]


def test_a_failed_run_is_reported_at_error(policy: Policy, world: World) -> None:
    world.snapshots.failing = {"db"}
    report = Lines()
    answer = serve(policy, world, [event("schedule")], "schedule", report=report)
    (outcome,) = answer.outcomes
    assert outcome.result is not None
    assert outcome.result.status == "failed"
    (level, _, fields) = next(line for line in report.lines if line[1] == "trigger fired")
    assert (level, fields["status"], fields["group"]) == (logging.ERROR, "failed", "orders")
    assert fields["outcome"] == outcome.model_dump(mode="json")
