"""Retries with exponential backoff and full jitter, for AWS throttling and limit errors.

The delay before retry n (0-based) is uniform in [0, min(cap, base * 2**n)] ("full jitter"):
callers that were throttled together spread out instead of retrying in lock-step. Only the
error codes a caller names are retried; they must be codes that mean the request was NOT carried
out (throttled, a limit reached), so retrying cannot act twice. `sleep` and `random` are
injectable, so tests run in no time and can check the delays.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from botocore.exceptions import ClientError

from quiesce.errors import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: SSM Run Command throttles with these.
SSM_THROTTLING = frozenset({"ThrottlingException", "TooManyUpdates", "RequestLimitExceeded"})
#: The EC2 API's token buckets.
EC2_THROTTLING = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
#: CreateSnapshots past 5 pending snapshots per volume (1 for st1/sc1).
SNAPSHOT_LIMITS = frozenset(
    {"ConcurrentSnapshotLimitExceeded", "SnapshotCreationPerVolumeRateExceeded"}
)
#: EventBridge, for the whole call and per entry.
EVENTS_THROTTLING = frozenset({"ThrottlingException", "InternalException", "InternalFailure"})
#: DynamoDB: throughput, request rate, and the transient internal error.
DYNAMODB_THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (None for anything else)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message') or exc}"
    return str(exc) or type(exc).__name__


@dataclass
class Backoff:
    """How often and how long to wait: `attempts` calls in all, delays capped at `cap` seconds."""

    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default=random.random)

    def delay(self, retry: int) -> float:
        """The wait before retry number `retry` (0 for the first retry): full jitter."""
        return float(self.random()) * min(self.cap, self.base * float(2**retry))

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_on: Collection[str],
        what: str,
    ) -> T:
        """Calls `fn`, retrying while it raises a ClientError whose code is in `retry_on`.

        When the attempts run out, raises ProviderError(code=<the AWS code>, retryable=True).
        """
        for attempt in range(self.attempts):
            try:
                return fn()
            except ClientError as exc:
                code = error_code(exc)
                if code not in retry_on:
                    raise
                if attempt + 1 >= self.attempts:
                    raise ProviderError(
                        f"{what}: still {code} after {self.attempts} attempts with backoff: "
                        f"{error_message(exc)}",
                        code=code or "Throttled",
                        retryable=True,
                    ) from exc
                wait = self.delay(attempt)
                log.info("%s: %s, retrying in %.3fs (attempt %d)", what, code, wait, attempt + 2)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
