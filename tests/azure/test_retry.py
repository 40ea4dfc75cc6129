"""Backoff: Retry-After honoured (seconds, milliseconds, HTTP date), else full jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from azure.core.exceptions import AzureError, HttpResponseError

from quiesce.errors import ProviderError
from quiesce_azure.retry import Backoff, delete_failed, read_failed, retry_after

from .conftest import Sleeps


class Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers
        self.reason = "x"

    def text(self) -> str:
        return ""


def error(status: int, **headers: str) -> HttpResponseError:
    exc = HttpResponseError(message="throttled", response=Response(status, headers))  # type: ignore[arg-type]
    exc.status_code = status
    return exc


def test_retry_after_forms() -> None:
    assert retry_after(error(429, **{"Retry-After": "12"})) == 12.0
    assert retry_after(error(429, **{"retry-after-ms": "1500"})) == 1.5
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert (
        25
        < (retry_after(error(503, **{"Retry-After": format_datetime(later, usegmt=True)})) or 0)
        <= 30
    )
    assert retry_after(error(429)) is None


def test_without_retry_after_the_delay_is_full_jitter() -> None:
    backoff = Backoff(base=1, cap=5, random=lambda: 0.5)
    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 2.5, 2.5]


def test_only_429_and_503_are_retried() -> None:
    sleeps = Sleeps()
    calls: list[int] = []

    def fails(status: int) -> None:
        calls.append(status)
        raise error(status)

    with pytest.raises(HttpResponseError):
        Backoff(sleep=sleeps).call(lambda: fails(409), what="x")
    assert calls == [409]
    with pytest.raises(ProviderError) as err:
        Backoff(attempts=3, sleep=sleeps, random=lambda: 1.0).call(lambda: fails(503), what="x")
    assert "after 3 attempts" in str(err.value)
    assert calls == [409, 503, 503, 503]
    assert len(sleeps.waits) == 2


def test_a_refused_read_names_the_member_and_what_and_keeps_the_status_as_its_code() -> None:
    refused = read_failed("db", "share uploads", error(403))
    assert isinstance(refused, ProviderError)
    assert refused.code == "Http403"
    assert "member 'db': could not read share uploads: Http403: throttled" in str(refused)

    broken = read_failed("db", "/subscriptions/s/x", AzureError("connection reset"))
    assert broken.code == "ReadFailed"
    assert "could not read /subscriptions/s/x: connection reset" in str(broken)


def test_a_refused_delete_names_the_snapshot_and_keeps_the_arm_code() -> None:
    refused = delete_failed("/subscriptions/s/snap", error(409))
    assert refused.code == "Http409"
    assert "could not delete /subscriptions/s/snap: Http409: throttled" in str(refused)
    assert delete_failed("x", AzureError("reset")).code == "DeleteFailed"
