"""The in-memory catalog keeps the same contract as the real ones."""

from __future__ import annotations

import pytest

from quiesce.providers.memory import MemoryStateStore
from tests.contracts.state_store import StateStoreContract


@pytest.fixture
def store() -> MemoryStateStore:
    return MemoryStateStore()


class TestMemoryStateStore(StateStoreContract):
    """The StateStore contract (tests/contracts/state_store.py) on MemoryStateStore."""
