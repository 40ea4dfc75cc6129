"""Who owns a trigger: a claim belongs to a run.

A delivered event claims its trigger id for the run it starts, atomically (the store's
`claim_trigger`), so an event delivered twice starts one run. A claim is only as good as the
run behind it, though: when the first delivery failed before its run did anything (a throttled
call, a timeout, a crash), the platform delivers again, and that delivery must run.

On a second delivery, the run that holds the claim decides:

* it is recorded and still running, or it began its quiesce (whatever came of it): the
  delivery is a duplicate and reports that run;
* it is recorded as finished without beginning its quiesce: the delivery takes the trigger over
  and runs;
* it is not recorded at all: within `CLAIM_GRACE_SECONDS` of the claim it may still be
  starting, and the delivery raises `TriggerPendingError` (the platform delivers again later);
  after that its orchestrator died before the first save, and the delivery takes over.

Taking over is itself a claim, on `<trigger>#after:<run>`, so of many deliveries racing to take
over one dead run exactly one wins; the others follow the chain to the winner and report it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from quiesce.errors import DuplicateTriggerError, QuiesceError, TriggerPendingError
from quiesce.ports import StateStore
from quiesce.record import RunRecord

#: How long a claim without a recorded run may still be a run starting up (its first save is
#: normally milliseconds after the claim; this covers a throttled catalog and its retries).
CLAIM_GRACE_SECONDS = 120.0
#: The longest chain of take-overs followed (each is a delivery whose run died before quiesce).
MAX_TAKEOVERS = 50

_RUN_ID = re.compile(r"^(\d{8}T\d{6}Z)-")


@dataclass(frozen=True)
class Cooldown:
    """The shortest time between two runs that `key` stands for (a group and an event kind):
    the run claims it when it begins its quiesce."""

    key: str
    seconds: float


def claimed_at(run_id: str) -> datetime | None:
    """When a run claimed its trigger: run ids begin with their start time (UTC, seconds)."""
    match = _RUN_ID.match(run_id)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def takeover_key(trigger_id: str, run_id: str) -> str:
    return f"{trigger_id}#after:{run_id}"


def claim(state: StateStore, record: RunRecord, now: datetime) -> None:
    """Claims `record.trigger_id` for `record`'s run, taking it over from an earlier run that
    did nothing (then `record.replaces` names that run).

    Raises DuplicateTriggerError (carrying the run that owns the trigger) or
    TriggerPendingError (the owner may still be starting)."""
    trigger_id = record.trigger_id
    if trigger_id is None:
        return
    key = trigger_id
    for _ in range(MAX_TAKEOVERS):
        holder = state.claim_trigger(key, record.run_id)
        if holder is None:
            if key != trigger_id:
                record.replaces = key.rsplit("#after:", 1)[1]
            return
        prior = state.get_run(holder)
        if prior is None:
            started = claimed_at(holder)
            age = None if started is None else (now - started).total_seconds()
            if age is not None and age < CLAIM_GRACE_SECONDS:
                raise TriggerPendingError(trigger_id, holder, CLAIM_GRACE_SECONDS - age)
        elif not prior.finished or prior.began_quiesce:
            raise DuplicateTriggerError(trigger_id, holder, prior)
        key = takeover_key(trigger_id, holder)
    raise QuiesceError(
        f"trigger {trigger_id!r} was taken over more than {MAX_TAKEOVERS} times by runs that "
        "stopped before their quiesce; not trying again"
    )
