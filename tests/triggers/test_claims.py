"""A trigger claim belongs to a run: a redelivery after a transient failure runs the backup
once; a redelivery of a run in progress or finished reports it; only a run that began its
quiesce consumes the cooldown."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quiesce.engine import run_group
from quiesce.engine.claims import CLAIM_GRACE_SECONDS, claim, claimed_at, takeover_key
from quiesce.errors import DuplicateTriggerError, QuiesceError, TriggerPendingError
from quiesce.events import EventType
from quiesce.policy import Policy, parse_policy
from quiesce.ports import Backends
from quiesce.providers.memory import MemoryStateStore
from quiesce.record import Orchestrator, RunRecord, RunStatus
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.model import DEFAULT_COOLDOWN_MINUTES
from quiesce.triggers.router import fire, idempotency_key, route
from tests.fakes import World, make_world

POLICY = """\
version: 1
name: shop
groups:
  orders:
    consistency: application
    members:
      - name: db
        provider: local
        volumes: [/srv/db]
        hooks: {pre: {run: [/hooks/pre]}, post: {run: [/hooks/post]}}
triggers:
  - {name: nightly, group: orders, schedule: "0 4 * * *"}
  - {name: disk-alarm, group: orders, on: alert, match: {alarm: "orders-db-*"}}
  - {name: recovered, group: orders, on: alert, cooldown_minutes: 0,
     match: {alarm: "orders-db-*", condition: resolved}}
  - {name: release, group: orders, on: deploy, match: {pipeline: shop}}
  - {name: prod-stage, group: orders, on: deploy, cooldown_minutes: 0,
     match: {pipeline: shop, stage: Prod}}
"""
T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


class TransientError(Exception):
    """What a throttled or timed-out call raises."""


class FlakyState(MemoryStateStore):
    """The in-memory catalog, whose named primitives fail the next N calls."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, int] = {}

    def fail(self, name: str, times: int = 1) -> None:
        self.failures[name] = times

    def _trip(self, name: str) -> None:
        left = self.failures.get(name, 0)
        if left:
            self.failures[name] = left - 1
            raise TransientError(f"{name}: ThrottlingException (rate exceeded)")

    def acquire_lock(self, *args: Any, **kwargs: Any) -> Any:
        self._trip("acquire_lock")
        return super().acquire_lock(*args, **kwargs)

    def list_runs(self, *args: Any, **kwargs: Any) -> Any:
        self._trip("list_runs")
        return super().list_runs(*args, **kwargs)

    def save_run(self, *args: Any, **kwargs: Any) -> Any:
        self._trip("save_run")
        return super().save_run(*args, **kwargs)


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest.fixture
def world() -> World:
    w = make_world()
    state = FlakyState()
    w.state = state
    w.backends = Backends(providers=w.backends.providers, state=state, bus=w.bus)
    return w


def alarm(id_: str, condition: str = "firing", **more: str) -> TriggerEvent:
    attributes = {"alarm": "orders-db-disk", "state": "ALARM", "condition": condition, **more}
    return TriggerEvent(kind="alert", source="test", id=id_, time=T0, attributes=attributes)


def nightly(id_: str = "s-1") -> TriggerEvent:
    return TriggerEvent(kind="schedule", source="test", id=id_, time=T0, trigger="nightly")


def clock(start: datetime = T0) -> tuple[list[datetime], Callable[[], datetime]]:
    moment = [start]
    return moment, lambda: moment[0]


def pre_hooks_sent(world: World) -> int:
    return world.log.kinds("db").count("pre:sent")


def points(world: World) -> int:
    return len(world.state.list_points("shop"))


# ------------------------------------------------------------------------------ redelivery


@pytest.mark.parametrize("primitive", ["list_runs", "acquire_lock"])
def test_a_transient_failure_after_the_claim_is_raised_and_the_redelivery_runs_once(
    policy: Policy, world: World, primitive: str
) -> None:
    state = world.state
    assert isinstance(state, FlakyState)
    state.fail(primitive)

    with pytest.raises(TransientError):
        fire(policy, nightly(), world.backends)  # the platform sees an error: it redelivers

    (first,) = state.list_runs("shop")
    assert first.status is RunStatus.FAILED
    assert not first.began_quiesce
    assert any("could not start" in e and "ThrottlingException" in e for e in first.errors)
    assert pre_hooks_sent(world) == 0

    again = fire(policy, nightly(), world.backends)

    assert [o.action for o in again] == ["ran"]
    result = again[0].result
    assert result is not None
    assert result.status == "succeeded"
    assert first.run_id in again[0].detail
    second = state.get_run(result.run_id)
    assert second is not None
    assert second.replaces == first.run_id
    assert points(world) == 1
    assert pre_hooks_sent(world) == 1

    third = fire(policy, nightly(), world.backends)  # a late duplicate reports the run
    assert [o.action for o in third] == ["duplicate"]
    assert third[0].result is not None
    assert third[0].result.run_id == result.run_id
    assert points(world) == 1
    assert pre_hooks_sent(world) == 1


def test_a_run_that_failed_after_it_began_its_quiesce_keeps_its_trigger(
    policy: Policy, world: World
) -> None:
    world.snapshots.failing.add("db")

    first = fire(policy, nightly(), world.backends)
    assert first[0].result is not None
    assert first[0].result.status == "failed"

    again = fire(policy, nightly(), world.backends)

    assert [o.action for o in again] == ["duplicate"]
    assert again[0].result is not None
    assert again[0].result.run_id == first[0].result.run_id
    assert pre_hooks_sent(world) == 1


def test_a_redelivery_while_the_run_is_in_progress_reports_that_run(
    policy: Policy, world: World
) -> None:
    seen: list[list[Any]] = []
    released = threading.Event()
    in_freeze = threading.Event()

    def progress(record: RunRecord) -> None:
        if record.phase.value == "quiesced" and not in_freeze.is_set():
            in_freeze.set()
            released.wait(10)

    runner = threading.Thread(
        target=lambda: seen.append(fire(policy, nightly(), world.backends, progress=progress))
    )
    runner.start()
    assert in_freeze.wait(10)
    try:
        during = fire(policy, nightly(), world.backends)
    finally:
        released.set()
        runner.join(10)

    assert [o.action for o in during] == ["duplicate"]
    assert during[0].result is not None
    assert during[0].result.status == "running"
    assert [o.action for o in seen[0]] == ["ran"]
    assert during[0].result.run_id == seen[0][0].result.run_id
    assert points(world) == 1


def test_a_claim_whose_run_was_never_saved_is_pending_then_taken_over(
    policy: Policy, world: World
) -> None:
    # The first delivery's orchestrator died between its claim and its first save.
    key = idempotency_key(nightly(), route(policy, nightly())[0])
    dead = "20261129T040000Z-dead00"
    assert world.state.claim_trigger(key, dead) is None
    moment, now = clock(T0 + timedelta(seconds=30))

    with pytest.raises(TriggerPendingError, match="not recorded yet") as pending:
        fire(policy, nightly(), world.backends, now=now)
    assert pending.value.retry_after_seconds == pytest.approx(CLAIM_GRACE_SECONDS - 30)
    assert world.state.list_runs("shop") == []

    moment[0] = T0 + timedelta(seconds=CLAIM_GRACE_SECONDS + 1)
    later = fire(policy, nightly(), world.backends, now=now)

    assert [o.action for o in later] == ["ran"]
    (record,) = world.state.list_runs("shop")
    assert record.replaces == dead
    assert points(world) == 1


def test_many_redeliveries_racing_to_take_over_one_failed_run_start_one_backup(
    policy: Policy, world: World
) -> None:
    state = world.state
    assert isinstance(state, FlakyState)
    state.fail("acquire_lock")
    with pytest.raises(TransientError):
        fire(policy, nightly(), world.backends)

    barrier = threading.Barrier(8)
    answers: list[str] = []

    def deliver() -> None:
        barrier.wait()
        try:
            answers.extend(o.action for o in fire(policy, nightly(), world.backends))
        except QuiesceError as exc:  # the winner may not have saved yet: pending (redelivered)
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert answers.count("ran") == 1, answers
    assert set(answers) <= {"ran", "duplicate", "TriggerPendingError"}
    assert points(world) == 1
    assert pre_hooks_sent(world) == 1


def test_a_takeover_chain_is_followed_to_the_run_that_owns_the_trigger() -> None:
    state = MemoryStateStore()

    def record(run_id: str, *, finished: bool, began: bool) -> RunRecord:
        rec = RunRecord(
            run_id=run_id,
            policy="shop",
            group="orders",
            trigger_id="evt",
            requested_consistency="crash",
            on_quiesce_failure="fallback",
            max_freeze_seconds=5,
            orchestrator=Orchestrator(host="h", pid=1),
            status=RunStatus.FAILED if finished else RunStatus.RUNNING,
            quiesce_started_at=T0 if began else None,
        )
        state.save_run(rec)
        return rec

    record("20261129T040000Z-aaaaaa", finished=True, began=False)
    record("20261129T040100Z-bbbbbb", finished=True, began=False)
    owner = record("20261129T040200Z-cccccc", finished=False, began=True)
    assert state.claim_trigger("evt", "20261129T040000Z-aaaaaa") is None
    assert (
        state.claim_trigger(
            takeover_key("evt", "20261129T040000Z-aaaaaa"), "20261129T040100Z-bbbbbb"
        )
        is None
    )
    assert state.claim_trigger(takeover_key("evt", "20261129T040100Z-bbbbbb"), owner.run_id) is None

    newcomer = record("20261129T050000Z-dddddd", finished=False, began=False)
    with pytest.raises(DuplicateTriggerError) as duplicate:
        claim(state, newcomer, T0 + timedelta(hours=1))
    assert duplicate.value.run_id == owner.run_id


def test_claimed_at_reads_the_time_a_run_id_begins_with() -> None:
    assert claimed_at("20261129T040506Z-0a1b2c") == datetime(2026, 11, 29, 4, 5, 6, tzinfo=UTC)
    assert claimed_at("not-a-run-id") is None


def test_the_failed_start_is_published_as_a_failed_run(policy: Policy, world: World) -> None:
    state = world.state
    assert isinstance(state, FlakyState)
    state.fail("acquire_lock")
    with pytest.raises(TransientError):
        run_group(policy, "orders", world.backends, trigger_id="t-1")

    failed = [e for e in world.bus.events if e.type == EventType.RUN_FAILED]
    assert len(failed) == 1


# ------------------------------------------------------------------------------ cooldowns


def test_twenty_alerts_in_a_burst_start_one_run_by_default(policy: Policy, world: World) -> None:
    moment, now = clock()
    actions = []
    for i in range(20):
        moment[0] = T0 + timedelta(seconds=20 * i)
        actions += [o.action for o in fire(policy, alarm(f"a-{i}"), world.backends, now=now)]

    assert actions.count("ran") == 1
    assert actions.count("cooldown") == 19
    assert pre_hooks_sent(world) == 1
    assert len(world.state.list_runs("shop")) == 1  # a held-back alert leaves no record

    moment[0] = T0 + timedelta(minutes=DEFAULT_COOLDOWN_MINUTES, seconds=1)
    assert [o.action for o in fire(policy, alarm("a-late"), world.backends, now=now)] == ["ran"]


def test_a_redelivery_inside_the_cooldown_reports_the_run_it_started(
    policy: Policy, world: World
) -> None:
    moment, now = clock()
    first = fire(policy, alarm("a-1"), world.backends, now=now)
    assert [o.action for o in first] == ["ran"]

    moment[0] = T0 + timedelta(minutes=1)
    again = fire(policy, alarm("a-1"), world.backends, now=now)

    assert [o.action for o in again] == ["duplicate"]
    assert again[0].result is not None
    assert first[0].result is not None
    assert again[0].result.run_id == first[0].result.run_id
    assert [o.action for o in fire(policy, alarm("a-2"), world.backends, now=now)] == ["cooldown"]


def test_a_cooldown_is_consumed_only_by_a_run_that_began_its_quiesce(
    policy: Policy, world: World
) -> None:
    state = world.state
    assert isinstance(state, FlakyState)
    moment, now = clock()
    state.fail("acquire_lock")
    with pytest.raises(TransientError):
        fire(policy, alarm("a-1"), world.backends, now=now)
    assert state.fired_at("cooldown:shop:orders:alert") is None

    world.inventory.unresolvable = {"db"}  # resolving the member fails: recorded, not frozen
    moment[0] = T0 + timedelta(minutes=1)
    failed = fire(policy, alarm("a-2"), world.backends, now=now)
    assert failed[0].result is not None
    assert failed[0].result.status == "failed"
    assert state.fired_at("cooldown:shop:orders:alert") is None

    world.inventory.unresolvable = set()
    moment[0] = T0 + timedelta(minutes=2)
    ran = fire(policy, alarm("a-3"), world.backends, now=now)
    assert [o.action for o in ran] == ["ran"]
    assert state.fired_at("cooldown:shop:orders:alert") == T0 + timedelta(minutes=2)


def test_a_run_that_loses_the_cooldown_race_stops_before_it_freezes(
    policy: Policy, world: World
) -> None:
    # Another run claimed the cooldown after this event looked (between the look and the claim).
    def progress(record: RunRecord) -> None:
        if record.phase.value == "locked":
            world.state.claim_cooldown("cooldown:shop:orders:alert", T0, 900)

    outcome = fire(policy, alarm("a-1"), world.backends, now=lambda: T0, progress=progress)

    assert [o.action for o in outcome] == ["cooldown"]
    assert outcome[0].result is not None
    assert outcome[0].result.status == "failed"
    assert pre_hooks_sent(world) == 0
    (record,) = world.state.list_runs("shop")
    assert not record.began_quiesce
    assert any("claimed the cooldown" in e for e in record.errors)


def test_cooldown_zero_turns_the_default_off(world: World) -> None:
    policy = parse_policy(
        POLICY.replace(
            'match: {alarm: "orders-db-*"}}', 'cooldown_minutes: 0, match: {alarm: "orders-db-*"}}'
        )
    )
    moment, now = clock()
    runs = 0
    for i in range(3):
        moment[0] = T0 + timedelta(minutes=i)
        runs += [o.action for o in fire(policy, alarm(f"a-{i}"), world.backends, now=now)].count(
            "ran"
        )
    assert runs == 3


def test_schedules_have_no_default_cooldown(policy: Policy, world: World) -> None:
    moment, now = clock()
    for i in range(3):
        moment[0] = T0 + timedelta(minutes=i)
        assert [o.action for o in fire(policy, nightly(f"s-{i}"), world.backends, now=now)] == [
            "ran"
        ]


# ------------------------------------------------------------------------------ matching


def test_an_alert_trigger_fires_while_the_alert_fires_not_when_it_recovers(policy: Policy) -> None:
    assert [t.name for t in route(policy, alarm("a", "firing"))] == ["disk-alarm"]
    resolved = alarm("b", "resolved", state="OK")
    assert [t.name for t in route(policy, resolved)] == ["recovered"]  # asked for explicitly
    assert route(policy, alarm("c", "other", state="INSUFFICIENT_DATA")) == []


def test_an_alert_whose_actions_are_suppressed_fires_nothing_unless_asked(policy: Policy) -> None:
    assert route(policy, alarm("a", suppressed="true")) == []
    asking = parse_policy(
        POLICY + "  - {name: even-suppressed, group: orders, on: alert, "
        'match: {alarm: "orders-*", suppressed: "*"}}\n'
    )
    assert [t.name for t in route(asking, alarm("a", suppressed="true"))] == ["even-suppressed"]


def test_a_pipeline_trigger_fires_on_pipeline_events_and_a_stage_trigger_on_its_stage(
    policy: Policy,
) -> None:
    def deploy(**attributes: str) -> TriggerEvent:
        return TriggerEvent(kind="deploy", source="t", id="d", time=T0, attributes=attributes)

    assert [t.name for t in route(policy, deploy(pipeline="shop", state="STARTED"))] == ["release"]
    assert [t.name for t in route(policy, deploy(pipeline="shop", stage="Prod"))] == ["prod-stage"]
    assert route(policy, deploy(pipeline="shop", stage="Build")) == []
    assert route(policy, deploy(pipeline="shop", stage="Prod", action="Deploy")) == [], (
        "an action's event fires only a trigger that names the action"
    )
