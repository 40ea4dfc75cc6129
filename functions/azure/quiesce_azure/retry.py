"""Retries of ARM calls that were throttled or refused as busy (429, 503).

ARM answers 429 (and sometimes 503) with a Retry-After header: that wait is honoured (capped at
`max_retry_after`). Without one, the delay before retry n (0-based) is uniform in
[0, min(cap, base * 2**n)] ("full jitter"), so callers throttled together spread out. A 429 or 503
means the request was not carried out, so retrying it cannot act twice; nothing else is retried.
The SDK clients' own retries are replaced (clients.py) so this is the one place that waits.
`sleep` and `random` are injectable: tests run in no time and can check the delays.

A connection that fails or is reset is a different matter: `Reconnect`, the clients' retry
policy, repeats a request whose connection failed before it was sent, and an idempotent one
(GET, PUT, DELETE, HEAD: ARM's PUT creates or replaces the named resource) whose connection was
reset while its answer was awaited.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from quiesce.backoff import Backoff as CoreBackoff
from quiesce.backoff import Transient
from quiesce.errors import ProviderError

T = TypeVar("T")

#: Throttled, or the service is busy: the request was not carried out.
RETRY_STATUSES = frozenset({429, 503})
#: Methods whose repetition does what one call does.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def status_of(exc: BaseException) -> int | None:
    if isinstance(exc, HttpResponseError):
        return exc.status_code
    return None


def error_code(exc: BaseException) -> str | None:
    """The ARM error code of an HttpResponseError (its error.code), else None."""
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None)
        if code:
            return str(code)
        if exc.status_code is not None:
            return f"Http{exc.status_code}"
    return None


def error_message(exc: BaseException) -> str:
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        message = getattr(error, "message", None)
        code = error_code(exc) or "Error"
        return f"{code}: {message or exc.message or exc}"
    return str(exc) or type(exc).__name__


def read_failed(member: str, what: str, exc: BaseException) -> ProviderError:
    """The error for a read of `what` that ARM refused (other than not found): the ARM error
    code, else ReadFailed."""
    return ProviderError(
        f"member {member!r}: could not read {what}: {error_message(exc)}",
        code=error_code(exc) or "ReadFailed",
    )


def delete_failed(snapshot_id: str, exc: BaseException) -> ProviderError:
    """The error for a delete of a snapshot that ARM refused (other than not found): the ARM
    error code, else DeleteFailed."""
    return ProviderError(
        f"could not delete {snapshot_id}: {error_message(exc)}",
        code=error_code(exc) or "DeleteFailed",
    )


def retry_after(exc: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """The Retry-After of a response, in seconds (delta-seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.fromtimestamp(now(), UTC)).total_seconds())


@dataclass
class Backoff(CoreBackoff):
    """How often and how long to wait: `attempts` calls in all; the server's Retry-After is
    honoured (up to `max_retry_after` seconds), else full jitter."""

    base: float = 0.2
    cap: float = 10.0
    max_retry_after: float = 60.0

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        retry_on: Collection[int] = RETRY_STATUSES,
    ) -> T:
        """Calls `fn`, retrying while it raises an HttpResponseError with a status in
        `retry_on`. When the attempts run out, raises ProviderError."""

        def transient(exc: Exception) -> Transient | None:
            if not isinstance(exc, HttpResponseError) or exc.status_code not in retry_on:
                return None
            hinted = retry_after(exc)
            return Transient(
                code=error_code(exc) or "Throttled",
                state=f"HTTP {exc.status_code}",
                message=error_message(exc),
                retry_after=None if hinted is None else min(hinted, self.max_retry_after),
            )

        return self.retry(fn, what=what, transient=transient)


def connection_failure(exc: BaseException, method: str) -> Transient | None:
    """A connection error `method` may be repeated after, described; else None.

    Not sent (ServiceRequestError from the network): any request may be repeated. Reset while
    the answer was awaited (ServiceResponseError): only an idempotent one, as the service may
    have carried it out."""
    if getattr(exc, "inner_exception", None) is None:  # raised by a policy, not the network
        return None
    if isinstance(exc, ServiceRequestError) or (
        isinstance(exc, ServiceResponseError) and method.upper() in IDEMPOTENT
    ):
        return Transient(code="ConnectionError", state="connection lost", message=str(exc))
    return None


class Reconnect(HTTPPolicy):  # type: ignore[type-arg]
    """The clients' retry policy: repeats requests whose connection failed (see above)."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.backoff = backoff or Backoff()

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        method = request.http_request.method
        return self.backoff.retry(
            lambda: self.next.send(request),
            what=f"{method} {request.http_request.url}",
            transient=lambda exc: connection_failure(exc, method),
        )
