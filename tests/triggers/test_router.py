"""Events pick triggers; triggers start runs once per event, and alerts respect cooldowns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from quiesce.policy import Policy, parse_policy
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.router import fire, route
from tests.fakes import World, make_world

POLICY = """\
version: 1
name: shop
groups:
  orders:
    consistency: crash
    members: [{name: db, provider: local, volumes: [/srv/db]}]
  billing:
    consistency: crash
    members: [{name: ledger, provider: local, volumes: [/srv/ledger]}]
triggers:
  - {name: nightly, group: orders, schedule: "0 4 * * *"}
  - {name: pre-deploy, group: orders, on: deploy, match: {application: orders-app, state: START*}}
  - {name: billing-deploy, group: billing, on: deploy, match: {application: billing}}
  - {name: disk-alarm, group: orders, on: alert, cooldown_minutes: 60,
     match: {alarm: "orders-db-*", state: ALARM}}
"""
T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def event(kind: str, id_: str = "e-1", trigger: str | None = None, **attrs: str) -> TriggerEvent:
    return TriggerEvent(
        kind=kind,  # type: ignore[arg-type]
        source="test",
        id=id_,
        time=T0,
        trigger=trigger,
        attributes=attrs,
    )


def test_a_schedule_event_fires_the_trigger_it_names(policy: Policy) -> None:
    assert [t.name for t in route(policy, event("schedule", trigger="nightly"))] == ["nightly"]
    assert route(policy, event("schedule", trigger="hourly")) == []


def test_a_deploy_event_fires_the_triggers_whose_match_it_satisfies(policy: Policy) -> None:
    fired = route(policy, event("deploy", application="orders-app", state="STARTED"))
    assert [t.name for t in fired] == ["pre-deploy"]
    assert route(policy, event("deploy", application="orders-app", state="SUCCESS")) == []
    assert route(policy, event("deploy", state="STARTED")) == [], (
        "a missing attribute never matches"
    )


def test_an_alert_matches_with_wildcards(policy: Policy) -> None:
    assert [
        t.name for t in route(policy, event("alert", alarm="orders-db-disk", state="ALARM"))
    ] == ["disk-alarm"]
    assert route(policy, event("alert", alarm="orders-db-disk", state="OK")) == []


def test_an_event_runs_its_group_and_a_second_delivery_runs_nothing(policy: Policy) -> None:
    world = make_world()
    first = fire(policy, event("schedule", trigger="nightly"), world.backends)
    assert [(o.action, o.group) for o in first] == [("ran", "orders")]
    assert first[0].result is not None
    assert first[0].result.status == "succeeded"
    again = fire(policy, event("schedule", trigger="nightly"), world.backends)
    assert [o.action for o in again] == ["duplicate"]
    assert again[0].result is not None
    assert again[0].result.run_id == first[0].result.run_id
    assert len(world.state.list_runs("shop")) == 1


def test_an_alert_inside_its_cooldown_starts_no_run(policy: Policy) -> None:
    world: World = make_world()
    clock = [T0]
    alert = {"alarm": "orders-db-disk", "state": "ALARM"}
    assert (
        fire(policy, event("alert", "a-1", **alert), world.backends, now=lambda: clock[0])[0].action
        == "ran"
    )
    clock[0] = T0 + timedelta(minutes=30)
    held = fire(policy, event("alert", "a-2", **alert), world.backends, now=lambda: clock[0])
    assert [(o.action, o.trigger) for o in held] == [("cooldown", "disk-alarm")]
    clock[0] = T0 + timedelta(minutes=61)
    assert (
        fire(policy, event("alert", "a-3", **alert), world.backends, now=lambda: clock[0])[0].action
        == "ran"
    )
    assert len(world.state.list_runs("shop")) == 2


def test_an_event_that_fires_nothing_runs_nothing(policy: Policy) -> None:
    world = make_world()
    assert fire(policy, event("deploy", application="unknown"), world.backends) == []
    assert world.state.list_runs("shop") == []


def test_a_trigger_event_cannot_carry_commands() -> None:
    with pytest.raises(pydantic.ValidationError):
        TriggerEvent.model_validate(
            {"kind": "deploy", "source": "x", "id": "1", "time": T0, "hooks": {"pre": "rm -rf /"}}
        )
    with pytest.raises(pydantic.ValidationError):
        TriggerEvent.model_validate(
            {"kind": "deploy", "source": "x", "id": "1", "time": T0, "attributes": {"run": ["sh"]}}
        )
