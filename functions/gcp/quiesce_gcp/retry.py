"""Retries with exponential backoff and full jitter, for Compute Engine and Pub/Sub errors.

The delay before retry n (0-based) is uniform in [0, min(cap, base * 2**n)]. Only errors that
mean the request was NOT carried out are retried on mutations (429 rate limits, 503
unavailable); reads may also retry 500/504. The client libraries' own retries are switched off
by passing `retry=None` at every call site, so this is the one place that decides. `sleep` and
`random` are injectable so tests run in no time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.api_core import exceptions as gexc

from quiesce.backoff import Backoff as CoreBackoff
from quiesce.backoff import Transient
from quiesce.errors import ProviderError

T = TypeVar("T")

#: Errors after which a mutation (setMetadata, createSnapshot, publish) was not carried out.
MUTATION_RETRYABLE: tuple[type[Exception], ...] = (gexc.TooManyRequests, gexc.ServiceUnavailable)
#: Errors a read (get, list, getGuestAttributes) may be repeated after.
READ_RETRYABLE: tuple[type[Exception], ...] = (
    *MUTATION_RETRYABLE,
    gexc.InternalServerError,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
)


def error_message(exc: BaseException) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{type(exc).__name__} ({exc.code}): {exc.message}"
    return str(exc) or type(exc).__name__


def read_failed(member: str, what: str, exc: gexc.GoogleAPICallError) -> ProviderError:
    """The error of a member whose resource (`what`) could not be read: InstanceNotFound when
    it is not there, else the API's error."""
    if isinstance(exc, gexc.NotFound):
        return ProviderError(
            f"member {member!r}: {what} not found: {error_message(exc)}", code="InstanceNotFound"
        )
    return ProviderError(
        f"member {member!r}: cannot read {what}: {error_message(exc)}", code=type(exc).__name__
    )


@dataclass
class Backoff(CoreBackoff):
    """`attempts` calls in all, delays capped at `cap` seconds, full jitter."""

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_on: tuple[type[Exception], ...] = READ_RETRYABLE,
        what: str,
    ) -> T:
        """Calls `fn`, retrying while it raises one of `retry_on`; then ProviderError."""

        def transient(exc: Exception) -> Transient | None:
            if not isinstance(exc, retry_on):
                return None
            name = type(exc).__name__
            return Transient(code=name, state=name, message=error_message(exc))

        return self.retry(fn, what=what, transient=transient)
