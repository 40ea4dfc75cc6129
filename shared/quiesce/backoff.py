"""Retries with exponential backoff and full jitter, written once for every cloud.

A cloud's Backoff says only which of its SDK's errors are transient (and what to call them);
the waiting, the attempt count and the final ProviderError live here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from quiesce.errors import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Transient:
    """What a retryable error is: its code, how to say it ("HTTP 429"), and the server's hint
    of how long to wait, if it gave one."""

    code: str
    state: str
    message: str
    retry_after: float | None = None


@dataclass
class Backoff:
    """`attempts` calls in all; the wait before retry n is uniform in [0, min(cap, base·2ⁿ)]."""

    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default=random.random)

    def delay(self, retry: int, hint: float | None = None) -> float:
        """The wait before retry number `retry` (0 for the first): the server's hint when it
        gave one, else full jitter."""
        if hint is not None:
            return hint
        return float(self.random()) * min(self.cap, self.base * float(2**retry))

    def retry(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        transient: Callable[[Exception], Transient | None],
    ) -> T:
        """Calls `fn`, retrying while `transient` recognises what it raises; any other error
        passes through. When the attempts run out: ProviderError(code)."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as exc:
                seen = transient(exc)
                if seen is None:
                    raise
                if attempt + 1 >= self.attempts:
                    raise ProviderError(
                        f"{what}: still {seen.state} after {self.attempts} attempts with "
                        f"backoff: {seen.message}",
                        code=seen.code,
                    ) from exc
                wait = self.delay(attempt, seen.retry_after)
                log.info(
                    "%s: %s, retrying in %.3fs (attempt %d)", what, seen.state, wait, attempt + 2
                )
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
