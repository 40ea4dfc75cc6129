"""Splitting what a provider sends into requests its API accepts (a count and a size limit),
written once for every bus and API; each provider only says how big one item is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(
    items: Sequence[T], size: Callable[[T], int], *, max_items: int, max_bytes: int
) -> list[list[T]]:
    """`items` in order, in batches of at most `max_items` items and `max_bytes` bytes (an item
    larger than `max_bytes` goes alone: the API says no to it, not to its neighbours)."""
    out: list[list[T]] = []
    total = 0
    for item in items:
        this = size(item)
        if not out or len(out[-1]) >= max_items or total + this > max_bytes:
            out.append([])
            total = 0
        out[-1].append(item)
        total += this
    return out
