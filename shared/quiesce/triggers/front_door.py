"""The front door every cloud function calls: it converts the payload, turns away what the
function does not serve, checks that a run fits the time the function has left, fires the
policy's triggers through the router and answers in one vocabulary (docs/triggers.md).

The answer's `status`:

* `fired`: at least one trigger fired; `outcomes` says what each came to (`ran`, `duplicate`,
  `cooldown`, `busy`) and, for a run, its result (`succeeded`, `degraded`, `failed`).
* `ignored`: an event of the function's kind that fires no trigger of the policy.
* `refused`: not an event the function serves (unknown or malformed, or of another kind), or
  a run that cannot fit the function's remaining time. `reason` says which.

A refusal is deterministic (a redelivery would be refused again), so it is logged at ERROR
and answered, never raised. Errors while a run starts propagate, so the platform redelivers;
the trigger claim turns the redelivery into `duplicate`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.event import Kind, TriggerEvent
from quiesce.triggers.model import Trigger
from quiesce.triggers.router import Outcome, fire, route

Status = Literal["fired", "ignored", "refused"]
Converter = Callable[[Any], list[TriggerEvent]]

#: Seconds a run needs beyond the freeze: snapshots' calls, thaw, catalog and events.
RUN_MARGIN_SECONDS = 60
#: Seconds a drill needs at least: launching copies, waiting until they answer, verifying and
#: deleting them (a drill cut short leaves its resources to `quiesce restore-cleanup`).
DRILL_SECONDS = 600


class Answer(BaseModel):
    """What one delivery came to, in the same words on every cloud."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    reason: str = ""
    outcomes: list[Outcome] = Field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Deadline:
    """How long the function may still run: `remaining()` in seconds, None when unbounded.
    `source` says how that is known, for the refusal's reason."""

    remaining: Callable[[], float | None]
    source: str

    @classmethod
    def after(
        cls,
        seconds: float | None,
        source: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> Deadline:
        """A function that may run `seconds` from now (the invocation's start); None: no end."""
        if seconds is None:
            return cls(lambda: None, source)
        end = clock() + seconds
        return cls(lambda: end - clock(), source)


def does_not_fit(policy: Policy, triggers: list[Trigger], deadline: Deadline) -> str | None:
    """Why a run of the triggers' groups cannot fit the function's remaining time, or None."""
    remaining = deadline.remaining()
    if remaining is None:
        return None
    if any(t.action == "drill" for t in triggers) and remaining < DRILL_SECONDS:
        return (
            f"a drill needs at least {DRILL_SECONDS}s (launching copies, waiting for them to "
            f"answer, verifying and deleting them) but the function has {max(remaining, 0):.0f}s "
            f"left ({deadline.source}): raise the drill function's timeout"
        )
    for name in sorted({t.group for t in triggers if t.action == "backup"}):
        needed = policy.groups[name].max_freeze_seconds + RUN_MARGIN_SECONDS
        if remaining < needed:
            return (
                f"group {name!r} needs at least {needed:g}s (max_freeze_seconds + "
                f"{RUN_MARGIN_SECONDS}s) but the function has {max(remaining, 0):.0f}s left "
                f"({deadline.source}): raise the function's timeout"
            )
    return None


def wrong_kind(event: TriggerEvent, kind: Kind) -> str | None:
    if event.kind == kind:
        return None
    article = "an" if event.kind == "alert" else "a"
    return (
        f"{article} {event.kind} event ({event.source}) reached the {kind} function: it "
        "accepts only its own kind"
    )


class Reporter:
    """Where the front door says what it did. A cloud writes the lines its own way (`write`);
    the messages and fields are the same everywhere."""

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def refused(self, reason: str, event_id: object) -> None:
        self.write(
            logging.ERROR, f"event refused: {reason}", {"reason": reason, "event_id": event_id}
        )

    def accepted(self, event: TriggerEvent) -> None:
        self.write(logging.INFO, "trigger event", {"trigger_event": event.model_dump(mode="json")})

    def unmatched(self, event: TriggerEvent) -> None:
        self.write(logging.INFO, "the event fires no trigger", {"event_id": event.id})

    def fired(self, outcome: Outcome) -> None:
        result = outcome.result
        failed = result is not None and result.status == "failed"
        self.write(
            logging.ERROR if failed else logging.INFO,
            "trigger fired",
            {
                "trigger": outcome.trigger,
                "group": outcome.group,
                "action": outcome.action,
                "detail": outcome.detail,
                "run_id": result.run_id if result else "",
                "status": result.status if result else "",
                "freeze_window_ms": (result.freeze_window_ms or 0.0) if result else 0.0,
                "outcome": outcome.model_dump(mode="json"),
            },
        )

    def answered(self, answer: Answer) -> None:
        fields = {"answer": answer.status, "reason": answer.reason, "fired": len(answer.outcomes)}
        self.write(logging.INFO, f"event {answer.status}", fields)


def _payload_id(payload: object) -> object:
    return payload.get("id") if isinstance(payload, Mapping) else None


@dataclass(frozen=True)
class FrontDoor:
    """What a cloud's functions share: where the policy and the backends come from (asked for
    only once an event is to be routed or fired) and how lines are written."""

    policy: Callable[[], Policy]
    backends: Callable[[], Backends]
    report: Reporter

    def handle(self, payload: object, kind: Kind, convert: Converter, deadline: Deadline) -> Answer:
        """Converts the payload, and fires every event of the function's `kind` whose runs
        fit its `deadline`; everything else is refused with the reason."""
        report = self.report
        try:
            events = convert(payload)
            if not events:
                raise UnsupportedEvent("the payload holds no event")
        except UnsupportedEvent as exc:
            report.refused(str(exc), _payload_id(payload))
            return _answer(report, [], [str(exc)])
        outcomes: list[Outcome] = []
        refusals: list[str] = []
        for event in events:
            if reason := wrong_kind(event, kind):
                report.refused(reason, event.id)
                refusals.append(reason)
                continue
            policy = self.policy()
            triggers = route(policy, event)
            if not triggers:
                report.unmatched(event)
                continue
            if reason := does_not_fit(policy, triggers, deadline):
                report.refused(reason, event.id)
                refusals.append(reason)
                continue
            report.accepted(event)
            for outcome in fire(policy, event, self.backends()):
                report.fired(outcome)
                outcomes.append(outcome)
        return _answer(report, outcomes, refusals)


def _answer(report: Reporter, outcomes: list[Outcome], refusals: list[str]) -> Answer:
    if outcomes:
        answer = Answer(status="fired", reason="; ".join(refusals), outcomes=outcomes)
    elif refusals:
        answer = Answer(status="refused", reason="; ".join(refusals))
    else:
        answer = Answer(status="ignored", reason="the event fires no trigger")
    report.answered(answer)
    return answer
