"""A managed service (database, file share) declares no hooks: its writers are held by the
group's VM members."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field, ValidationError

from quiesce.policy.managed import ManagedMember


class DatabaseMember(ManagedMember):
    provider: Literal["test-db"] = Field(default="test-db")
    instance: str


def test_a_managed_member_without_hooks_is_accepted() -> None:
    member = DatabaseMember(name="orders-db", instance="orders")
    assert member.hooks.pre is None


@pytest.mark.parametrize(
    "hooks",
    [
        {"pre": {"run": ["/hooks/pre"]}, "post": {"run": ["/hooks/post"]}},
        {"post": {"run": ["/hooks/post"]}},
        {"verify": {"run": ["/hooks/check"]}},
    ],
)
def test_a_managed_member_with_hooks_is_refused_with_the_reason(hooks: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="a managed service runs no hooks of its own"):
        DatabaseMember.model_validate({"name": "orders-db", "instance": "orders", "hooks": hooks})
