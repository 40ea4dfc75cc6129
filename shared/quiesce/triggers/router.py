"""Chooses the triggers an event fires (pure), and fires them through the engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict

from quiesce.engine import run_group, run_result
from quiesce.engine.claims import Cooldown
from quiesce.errors import CooldownError, DuplicateTriggerError, GroupBusyError, QuiesceError
from quiesce.events import RunResult
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import DrillRecord, RunRecord, utcnow
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.model import Trigger

#: The values converters give an alert's `condition` attribute.
FIRING, RESOLVED, OTHER = "firing", "resolved", "other"


def matches(trigger: Trigger, event: TriggerEvent) -> bool:
    """Does the event fire this trigger? Schedules by name; deploys and alerts by attributes.

    Two defaults keep a trigger to what users mean by it, unless its `match` names the
    attribute: an alert trigger fires only while the alert fires (`condition: firing`, not on
    recovery) and not when the alert's actions are suppressed; a deploy trigger fires only on
    pipeline-level events (those without a `stage`), and a stage trigger only on its stage's
    events, not on its actions' (those with an `action`)."""
    if trigger.kind != event.kind:
        return False
    if trigger.kind == "schedule":
        return event.trigger == trigger.name
    named = trigger.match.keys()
    attributes = event.attributes
    if trigger.kind == "alert":
        explicit = "state" in named or "condition" in named
        if not explicit and attributes.get("condition", FIRING) != FIRING:
            return False
        if "suppressed" not in named and attributes.get("suppressed") == "true":
            return False
    if trigger.kind == "deploy":
        for level in ("stage", "action"):  # a stage's (an action's) event needs it named
            if level in attributes and level not in named:
                return False
    return all(
        key in attributes and fnmatchcase(attributes[key], pattern)
        for key, pattern in trigger.match.items()
    )


def route(policy: Policy, event: TriggerEvent) -> list[Trigger]:
    return [t for t in policy.triggers if matches(t, event)]


class Outcome(BaseModel):
    """What one fired trigger came to."""

    model_config = ConfigDict(extra="forbid")

    trigger: str
    group: str
    action: Literal["ran", "duplicate", "cooldown", "busy", "drilled"]
    detail: str = ""
    result: RunResult | None = None
    drill: DrillRecord | None = None


def idempotency_key(event: TriggerEvent, trigger: Trigger) -> str:
    return f"{event.source}:{event.id}:{trigger.name}"


def cooldown_of(policy: Policy, trigger: Trigger) -> Cooldown | None:
    """The interval between event-started runs of the trigger's group, per event kind."""
    seconds = trigger.cooldown_seconds
    if seconds <= 0:
        return None
    return Cooldown(key=f"cooldown:{policy.name}:{trigger.group}:{trigger.kind}", seconds=seconds)


def _cooling(
    cooldown: Cooldown | None, trigger_id: str, backends: Backends, moment: datetime
) -> str | None:
    """Why the cooldown holds the trigger back now, or None (reads: nothing is claimed).

    An event that already started a run (a redelivery) is not held back: the claim reports
    that run, or takes over a run that stopped before its quiesce."""
    if cooldown is None:
        return None
    last = backends.state.fired_at(cooldown.key)
    if last is None or (moment - last).total_seconds() >= cooldown.seconds:
        return None
    if backends.state.trigger_owner(trigger_id) is not None:
        return None
    return (
        f"a run of this group started by a {cooldown.key.rsplit(':', 1)[1]} event began its "
        f"quiesce at {last.isoformat()}, less than {cooldown.seconds / 60:g} minutes ago"
    )


def fire(
    policy: Policy,
    event: TriggerEvent,
    backends: Backends,
    *,
    now: Callable[[], datetime] = utcnow,
    progress: Callable[[RunRecord], None] | None = None,
) -> list[Outcome]:
    """Runs the group of every trigger the event fires, once per event id, respecting
    cooldowns. An event that fires nothing returns an empty list.

    TriggerPendingError (the event's run may still be starting) and errors before a run did
    anything propagate, so the platform delivers the event again."""
    outcomes = []
    for trigger in route(policy, event):
        if trigger.action == "drill":
            outcomes.append(_drill(policy, event, trigger, backends, now))
            continue
        cooldown = cooldown_of(policy, trigger)
        trigger_id = idempotency_key(event, trigger)
        if reason := _cooling(cooldown, trigger_id, backends, now()):
            outcomes.append(
                Outcome(trigger=trigger.name, group=trigger.group, action="cooldown", detail=reason)
            )
            continue
        try:
            record = run_group(
                policy,
                trigger.group,
                backends,
                trigger_id=trigger_id,
                cooldown=cooldown,
                now=now,
                progress=progress,
            )
        except DuplicateTriggerError as exc:
            prior = exc.record if isinstance(exc.record, RunRecord) else None
            outcomes.append(
                Outcome(
                    trigger=trigger.name,
                    group=trigger.group,
                    action="duplicate",
                    detail=str(exc),
                    result=run_result(prior) if prior is not None else None,
                )
            )
            continue
        except CooldownError as exc:
            stopped = exc.record if isinstance(exc.record, RunRecord) else None
            outcomes.append(
                Outcome(
                    trigger=trigger.name,
                    group=trigger.group,
                    action="cooldown",
                    detail=str(exc),
                    result=run_result(stopped) if stopped is not None else None,
                )
            )
            continue
        except GroupBusyError as exc:
            outcomes.append(
                Outcome(trigger=trigger.name, group=trigger.group, action="busy", detail=str(exc))
            )
            continue
        detail = (
            f"took the trigger over from run {record.replaces}, which stopped before its quiesce"
            if record.replaces
            else ""
        )
        outcomes.append(
            Outcome(
                trigger=trigger.name,
                group=trigger.group,
                action="ran",
                detail=detail,
                result=run_result(record),
            )
        )
    return outcomes


def _drill(
    policy: Policy,
    event: TriggerEvent,
    trigger: Trigger,
    backends: Backends,
    now: Callable[[], datetime],
) -> Outcome:
    """A drill trigger: restore the group's newest point into isolation, verify, measure,
    tear down (quiesce.drill). A drill that cannot start (nothing to drill) is answered."""
    from quiesce.drill import run_drill  # the restore code loads only for drills

    try:
        drill = run_drill(
            policy,
            trigger.group,
            backends,
            region=trigger.region,
            trigger_id=idempotency_key(event, trigger),
            now=now,
        )
    except DuplicateTriggerError as exc:
        return Outcome(
            trigger=trigger.name, group=trigger.group, action="duplicate", detail=str(exc)
        )
    except QuiesceError as exc:
        return Outcome(
            trigger=trigger.name,
            group=trigger.group,
            action="drilled",
            detail=f"not drilled: {exc}",
        )
    rto = f", recovery time {drill.rto_seconds:g}s" if drill.rto_seconds is not None else ""
    return Outcome(
        trigger=trigger.name,
        group=trigger.group,
        action="drilled",
        detail=f"{drill.verdict}{rto}",
        drill=drill,
    )
