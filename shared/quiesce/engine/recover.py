"""Closes runs whose orchestrator died: thaw what is owed, clean up, record and announce."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime

from quiesce.engine.context import RunContext
from quiesce.engine.finish import finish, flush_outbox
from quiesce.engine.orphans import Swept, sweep_orphans
from quiesce.engine.phases import thaw
from quiesce.policy.model import Group, Policy
from quiesce.ports import Backends
from quiesce.record import Orchestrator, Phase, RunRecord, RunStatus, utcnow


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_abandoned(
    record: RunRecord,
    now: datetime,
    *,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """A running record is abandoned when its orchestrator process is gone (same host) or its
    group lock has expired (any host)."""
    if record.status is not RunStatus.RUNNING:
        return False
    # The process answerable for the run: its orchestrator, or the last closer that took it over.
    owner = record.closers[-1] if record.closers else record.orchestrator
    if owner.host == host:
        if owner.pid == os.getpid():
            return False
        if not alive(owner.pid):
            return True
    return record.lock_expires_at is not None and record.lock_expires_at < now


def find_abandoned(
    policy: Policy,
    backends: Backends,
    *,
    group: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[RunRecord]:
    host = socket.gethostname()
    moment = now()
    return [
        r
        for r in backends.state.list_runs(policy.name, group)
        if is_abandoned(r, moment, host=host)
    ]


def recover_run(
    policy: Policy,
    record: RunRecord,
    backends: Backends,
    *,
    now: Callable[[], datetime] = utcnow,
) -> RunRecord:
    """Thaws every machine still owed a thaw (the guest runner answers with the watchdog's
    result when it already thawed), deletes the run's snapshots unless its recovery point was
    recorded, and finishes the run as abandoned."""
    died_in = record.phase
    group = policy.groups.get(record.group) or Group.model_construct(
        members=[], max_freeze_seconds=record.max_freeze_seconds
    )
    ctx = RunContext(policy=policy, group=group, backends=backends, record=record, now=now)
    if not record.abandoned:
        record.abandoned = True
        record.errors.append(
            f"the orchestrator ({record.orchestrator.host}, pid {record.orchestrator.pid}) "
            f"stopped during {died_in.value}; closed by `quiesce recover` on "
            f"{socket.gethostname()}"
        )
    ctx.save()  # names this closer: a concurrent recover now sees the run taken over
    thaw(ctx, announce_freeze=False)
    reached = died_in not in (Phase.STARTED, Phase.RESOLVED, Phase.LOCKED)
    finish(ctx, reached_snapshots=reached)
    return record


def claim(record: RunRecord, backends: Backends, *, now: datetime) -> RunRecord | None:
    """Takes an abandoned run over for closing, or returns None when another closer has it.

    A conditional write: of any number of concurrent closers (several `quiesce recover`, runs of
    the group starting at once) exactly one wins; a closer that dies half-way lets the next one
    claim the following attempt."""
    fresh = backends.state.get_run(record.run_id)
    if fresh is None or not is_abandoned(fresh, now, host=socket.gethostname()):
        return None
    me = Orchestrator(host=socket.gethostname(), pid=os.getpid())
    token = f"{me.host}:{me.pid}:{secrets.token_hex(4)}"
    if not backends.state.claim_close(fresh.run_id, len(fresh.closers), token):
        return None
    fresh.closers.append(me)
    return fresh


def recover_abandoned(
    policy: Policy,
    backends: Backends,
    *,
    group: str | None = None,
    now: Callable[[], datetime] = utcnow,
    swept: Swept | None = None,
) -> list[RunRecord]:
    """Recovers every abandoned run of the policy (or one group) that this caller wins the
    claim to close, deletes orphaned snapshots, and retries the outbox. What the orphan sweep
    deleted, and what it could not look at or delete, goes into `swept` when given."""
    recovered = []
    for found in find_abandoned(policy, backends, group=group, now=now):
        claimed = claim(found, backends, now=now())
        if claimed is not None:
            recovered.append(recover_run(policy, claimed, backends, now=now))
    deleted, problems = sweep_orphans(policy, backends, group)
    if swept is not None:
        swept.deleted += deleted
        swept.problems += problems
    flush_outbox(backends.state, backends.bus)
    return recovered
