"""The group's restore time `T` for members whose point is `pitr` (a service with continuous
backup: RDS, Azure flexible servers, Cloud SQL...).

Such a service can be restored to any instant of its retention window, but only at its
restore API's resolution (usually whole seconds). The engine chooses one `T` for the group:
the first instant at that resolution at or after the moment every member was held (the last
pre hook succeeded, when the snapshot calls start). The thaw does not start before `T` has
passed, so `T` lies inside the quiesced interval; waiting for it costs at most one resolution
step of freeze (on average half of one, less the time the other snapshot calls take anyway).

A member whose `T` was not inside the quiesced interval (the freeze deadline or a signal
started the thaw first) is reported `crash`, with the reason, not `application`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from quiesce.ports import PointMethod
from quiesce.record import Consistency, SnapshotRef

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A resolution of 0 (any instant) is taken at microseconds.
FINEST = 1e-6


def resolution(methods: Sequence[PointMethod]) -> float | None:
    """The coarsest restore resolution of the group's `pitr` members; None: there are none."""
    steps = [max(m.resolution_seconds, FINEST) for m in methods if m.kind == "pitr"]
    return max(steps) if steps else None


def restore_time(held_at: datetime, step: float) -> datetime:
    """The first instant at `step` seconds' resolution at or after `held_at`."""
    seconds = (held_at - EPOCH).total_seconds()
    whole = math.ceil(round(seconds / step, 6)) * step
    return EPOCH + timedelta(microseconds=round(whole * 1_000_000))


def hold_until(
    moment: datetime,
    deadline: datetime | None,
    now: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Waits until `moment` has passed, never past `deadline`. Returns whether it passed."""
    while True:
        current = now()
        if current > moment:
            return True
        if deadline is not None and current >= deadline:
            return False
        end = moment if deadline is None else min(moment, deadline)
        sleep(max((end - current).total_seconds(), 0.0) + 0.0005)


def stamp(ref: SnapshotRef, moment: datetime | None, thaw_started: datetime | None) -> SnapshotRef:
    """A `pitr` reference with the group's `T`: its point is `T`; a `T` the thaw did not wait
    for is reported `crash` with the reason."""
    if ref.point != "pitr":
        return ref
    if moment is None:
        return ref.model_copy(
            update={
                "reported_consistency": Consistency.CRASH,
                "note": "no restore time was chosen for this point-in-time member",
            }
        )
    update: dict[str, object] = {"restore_time": moment, "fixed_at": moment}
    if thaw_started is not None and thaw_started <= moment:
        update["reported_consistency"] = Consistency.CRASH
        update["note"] = (
            f"the thaw began at {thaw_started.isoformat()}, before the restore time "
            f"{moment.isoformat()} (the freeze deadline or a signal ended the freeze first): "
            "restored to that time, the service is crash-consistent"
        )
    return ref.model_copy(update=update)
