"""Retries with exponential backoff and full jitter, for AWS throttling and limit errors.

The delay before retry n (0-based) is uniform in [0, min(cap, base * 2**n)] ("full jitter"):
callers that were throttled together spread out instead of retrying in lock-step. Only the
error codes a caller names are retried; they must be codes that mean the request was NOT carried
out (throttled, a limit reached), so retrying cannot act twice. `sleep` and `random` are
injectable, so tests run in no time and can check the delays.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.backoff import Backoff as CoreBackoff
from quiesce.backoff import Transient
from quiesce.errors import ProviderError

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
class Backoff(CoreBackoff):
    """How often and how long to wait: `attempts` calls in all, delays capped at `cap` seconds."""

    def call(self, fn: Callable[[], T], *, retry_on: Collection[str], what: str) -> T:
        """Calls `fn`, retrying while it raises a ClientError whose code is in `retry_on`.

        When the attempts run out, raises ProviderError(code=<the AWS code>).
        """

        def transient(exc: Exception) -> Transient | None:
            code = error_code(exc)
            if code is None or code not in retry_on:
                return None
            return Transient(code=code, state=code, message=error_message(exc))

        return self.retry(fn, what=what, transient=transient)

    def call_or_raise(
        self,
        fn: Callable[[], T],
        *,
        retry_on: Collection[str],
        what: str,
        failed: str,
        code: str,
        hint: str = "",
    ) -> T:
        """`call`; an AWS error it does not retry is raised as call_failed(failed, the error,
        code, hint)."""
        try:
            return self.call(fn, retry_on=retry_on, what=what)
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(failed, exc, code, hint) from exc

    def pages(
        self,
        operation: Callable[..., Any],
        params: Mapping[str, Any],
        key: str,
        *,
        retry_on: Collection[str],
        what: str,
        failed: str,
        code: str,
        next_page: str = "NextToken",
    ) -> list[Any]:
        """Every item under `key` of `operation`'s pages, called with `params`; `next_page`
        is the name under which an answer gives, and the next call takes, the next page. Each
        page is a `call_or_raise`."""
        out: list[Any] = []
        following: str | None = None
        while True:
            args = dict(params)
            if following:
                args[next_page] = following
            page = self.call_or_raise(
                lambda args=args: operation(**args),  # type: ignore[misc]
                retry_on=retry_on,
                what=what,
                failed=failed,
                code=code,
            )
            out.extend(page.get(key, []))
            following = page.get(next_page)
            if not following:
                return out


def call_failed(what: str, exc: BaseException, code: str, hint: str = "") -> ProviderError:
    """The error of an AWS call that failed: "`what`: <AWS code>: <AWS message>`hint`", with
    AWS's error code (else `code`)."""
    return ProviderError(f"{what}: {error_message(exc)}{hint}", code=error_code(exc) or code)
