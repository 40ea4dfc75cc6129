"""Chooses the triggers an event fires (pure), and fires them through the engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict

from quiesce.engine import run_group, run_result
from quiesce.errors import DuplicateTriggerError, GroupBusyError
from quiesce.events import RunResult
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import RunRecord, utcnow
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.model import Trigger


def matches(trigger: Trigger, event: TriggerEvent) -> bool:
    """Does the event fire this trigger? Schedules by name; deploys and alerts by attributes."""
    if trigger.kind != event.kind:
        return False
    if trigger.kind == "schedule":
        return event.trigger == trigger.name
    return all(
        key in event.attributes and fnmatchcase(event.attributes[key], pattern)
        for key, pattern in trigger.match.items()
    )


def route(policy: Policy, event: TriggerEvent) -> list[Trigger]:
    return [t for t in policy.triggers if matches(t, event)]


class Outcome(BaseModel):
    """What one fired trigger came to."""

    model_config = ConfigDict(extra="forbid")

    trigger: str
    group: str
    action: Literal["ran", "duplicate", "cooldown", "busy"]
    detail: str = ""
    result: RunResult | None = None


def idempotency_key(event: TriggerEvent, trigger: Trigger) -> str:
    return f"{event.source}:{event.id}:{trigger.name}"


def fire(
    policy: Policy,
    event: TriggerEvent,
    backends: Backends,
    *,
    now: Callable[[], datetime] = utcnow,
    progress: Callable[[RunRecord], None] | None = None,
) -> list[Outcome]:
    """Runs the group of every trigger the event fires, once per event id, respecting
    cooldowns. An event that fires nothing returns an empty list."""
    outcomes = []
    for trigger in route(policy, event):
        if trigger.cooldown_minutes is not None:
            key = f"cooldown:{policy.name}:{trigger.name}"
            seconds = timedelta(minutes=trigger.cooldown_minutes).total_seconds()
            if not backends.state.claim_cooldown(key, now(), seconds):
                outcomes.append(
                    Outcome(
                        trigger=trigger.name,
                        group=trigger.group,
                        action="cooldown",
                        detail=f"fired less than {trigger.cooldown_minutes:g} minutes ago",
                    )
                )
                continue
        try:
            record = run_group(
                policy,
                trigger.group,
                backends,
                trigger_id=idempotency_key(event, trigger),
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
        except GroupBusyError as exc:
            outcomes.append(
                Outcome(trigger=trigger.name, group=trigger.group, action="busy", detail=str(exc))
            )
            continue
        outcomes.append(
            Outcome(
                trigger=trigger.name, group=trigger.group, action="ran", result=run_result(record)
            )
        )
    return outcomes
