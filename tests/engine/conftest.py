from __future__ import annotations

from typing import Any

import pytest

from quiesce.policy import Policy
from tests.fakes import World, make_world


def group_policy(
    members: int = 3,
    *,
    hooked: int | None = None,
    consistency: str = "application",
    on_quiesce_failure: str = "fallback",
    max_freeze_seconds: float = 30,
    retention: dict[str, Any] | None = None,
) -> Policy:
    """A policy with one group `g` of members m0..mN; the first `hooked` members have hooks."""
    hooked = members if hooked is None else hooked
    hooks = {"pre": {"run": ["/hooks/pre"], "timeout_seconds": 1}, "post": {"run": ["/hooks/post"]}}
    group: dict[str, Any] = {
        "consistency": consistency,
        "on_quiesce_failure": on_quiesce_failure,
        "max_freeze_seconds": max_freeze_seconds,
        "members": [
            {
                "name": f"m{i}",
                "provider": "local",
                "volumes": [f"/data/m{i}"],
                **({"hooks": hooks} if i < hooked else {}),
            }
            for i in range(members)
        ],
    }
    if retention:
        group["retention"] = retention
    return Policy.model_validate({"version": 1, "name": "p", "groups": {"g": group}})


@pytest.fixture
def world() -> World:
    return make_world()
