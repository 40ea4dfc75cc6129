"""The one retry loop every cloud's Backoff uses."""

from __future__ import annotations

import pytest

from quiesce.backoff import Backoff, Transient
from quiesce.errors import ProviderError


class Busy(Exception):
    pass


def transient(exc: Exception) -> Transient | None:
    return Transient(code="Busy", state="busy", message=str(exc)) if isinstance(exc, Busy) else None


def test_delays_are_full_jitter_under_a_capped_exponential_bound() -> None:
    top = Backoff(base=0.1, cap=1.0, random=lambda: 1.0)
    assert [top.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert top.delay(3, hint=7.0) == 7.0, "a server's hint wins"


def test_a_transient_error_is_retried_until_the_call_succeeds() -> None:
    waits: list[float] = []
    answers = iter([Busy("1"), Busy("2"), "done"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    backoff = Backoff(sleep=waits.append, random=lambda: 0.5)
    assert backoff.retry(call, what="x", transient=transient) == "done"
    assert waits == [0.05, 0.1]


def test_when_attempts_run_out_the_error_names_the_call_and_the_code() -> None:
    def call() -> None:
        raise Busy("still")

    with pytest.raises(ProviderError, match="put: still busy after 3 attempts") as caught:
        Backoff(attempts=3, sleep=lambda _: None).retry(call, what="put", transient=transient)
    assert caught.value.code == "Busy"


def test_an_error_that_is_not_transient_passes_through_at_once() -> None:
    waits: list[float] = []

    def call() -> None:
        raise KeyError("no")

    with pytest.raises(KeyError):
        Backoff(sleep=waits.append).retry(call, what="x", transient=transient)
    assert waits == []
