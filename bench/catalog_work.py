"""What a run asked of its catalog, for the API-economy benchmark's lower bounds.

`count_catalog_work(state)` wraps the StateStore port methods of ONE store instance so each
call is counted and then goes to the real method: how many run-record writes the engine made,
how many recovery points it recorded, how many events it queued and in how many outbox items
(one per `outbox_add`, cut every 256 KiB of event JSON, as `CatalogStateStore` cuts them).
Those are what the engine's crash safety asks for, so each cloud's bound is built on them
(`bound_inputs(counted)`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: The event JSON one outbox item holds (quiesce.state_base.CatalogStateStore).
OUTBOX_BATCH_BYTES = 256 * 1024


def outbox_items(sizes: list[int], limit: int = OUTBOX_BATCH_BYTES) -> int:
    """How many items events of these JSON sizes take when cut every `limit` characters."""
    items, held = 1, 0
    for size in sizes:
        if held and held + size > limit:
            items, held = items + 1, 0
        held += size
    return items if sizes else 0


def count_catalog_work(state: Any) -> Counter[str]:
    """Counts `save_run`, `record_point`, `events` and `outbox_items` on this store."""
    did: Counter[str] = Counter()

    def wrap(name: str, count: Any) -> None:
        real = getattr(state, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            count(*args)
            return real(*args, **kwargs)

        setattr(state, name, counted)

    def outbox_add(events: Any) -> None:
        sizes = [len(e.to_json()) for e in {e.id: e for e in events}.values()]
        did["events"] += len(sizes)
        did["outbox_items"] += outbox_items(sizes)

    wrap("outbox_add", outbox_add)
    wrap("save_run", lambda *_: did.update(["save_run"]))
    wrap("record_point", lambda *_: did.update(["record_point"]))
    return did


def bound_inputs(did: Counter[str]) -> dict[str, int]:
    """What a cloud's bound is built on, from what `count_catalog_work` counted: the run's
    events, run-record saves, recovery points and outbox items; and its outbox flushes, two
    (at the start, what earlier runs left, and at the finish)."""
    return {
        "events": did["events"],
        "saves": did["save_run"],
        "points": did["record_point"],
        "outbox_items": did["outbox_items"],
        "flushes": 2,
    }
