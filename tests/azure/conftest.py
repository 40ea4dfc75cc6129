from __future__ import annotations

from collections.abc import Iterator

import pytest

from quiesce_azure.clients import CredentialClients
from quiesce_azure.retry import Backoff

from .fake_arm import FakeArm, FakeCredential


class Sleeps:
    """An injectable sleep that records its waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def arm() -> Iterator[FakeArm]:
    fake = FakeArm()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def clients(arm: FakeArm, credential: FakeCredential) -> CredentialClients:
    return CredentialClients(credential, base_url=arm.base_url, polling_interval=0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def backoff(sleeps: Sleeps) -> Backoff:
    return Backoff(sleep=sleeps, random=lambda: 0.5)
