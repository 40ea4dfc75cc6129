"""The guest hook runner (quiesce_guest.py, stdlib only, copied onto machines) cannot import the
policy model, so it keeps its own copies of the limits. These tests tie each copy to the
model's constraint: a change on one side without the other fails here, and each bound is
checked both ways (the largest value both accept, the next one both refuse)."""

from __future__ import annotations

from typing import Any

import pytest
from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, ValidationError

from quiesce.guest import quiesce_guest as runner
from quiesce.policy.model import HOOK_NAME_PATTERN, NAME_PATTERN, Group, Hook, MemberBase


def bound(model: type[BaseModel], field: str, kind: type[Any]) -> Any:
    """The value of the model field's `kind` constraint (Le, Ge, Gt)."""
    found = [m for m in model.model_fields[field].metadata if isinstance(m, kind)]
    assert len(found) == 1, f"{model.__name__}.{field} has no single {kind.__name__} bound"
    return getattr(found[0], kind.__name__.lower())  # Le(le=...), Ge(ge=...), Gt(gt=...)


def pattern(model: type[BaseModel], field: str) -> str:
    found = [getattr(m, "pattern", None) for m in model.model_fields[field].metadata]
    (value,) = [p for p in found if p is not None]
    return str(value)


def test_names_are_the_runners_patterns_anchored() -> None:
    assert f"^{runner.MEMBER_RE.pattern}$" == NAME_PATTERN
    assert pattern(MemberBase, "name") == f"^{runner.MEMBER_RE.pattern}$"
    assert f"^{runner.HOOK_NAME_RE.pattern}$" == HOOK_NAME_PATTERN
    assert pattern(Hook, "name") == f"^{runner.HOOK_NAME_RE.pattern}$"
    assert runner.KEY_RE.pattern == f"{runner.RUN_ID_RE.pattern}--{runner.MEMBER_RE.pattern}"


def test_hook_bounds_are_the_runners() -> None:
    assert bound(Hook, "timeout_seconds", Le) == runner.MAX_TIMEOUT_SECONDS
    assert bound(Hook, "timeout_seconds", Gt) == 0
    assert bound(Hook, "retries", Le) == runner.MAX_RETRIES
    assert bound(Hook, "retries", Ge) == 0


def test_the_freeze_bound_is_the_runners() -> None:
    assert bound(Group, "max_freeze_seconds", Le) == runner.MAX_FREEZE_SECONDS
    assert bound(Group, "max_freeze_seconds", Gt) == 0


def entry(**fields: Any) -> dict[str, Any]:
    base = {"phase": "pre", "run": ["/opt/pause.sh"], "thaw": "x.post", "max_freeze_seconds": 60}
    return base | fields


@pytest.mark.parametrize(
    ("field", "largest", "too_large"),
    [
        ("timeout_seconds", runner.MAX_TIMEOUT_SECONDS, runner.MAX_TIMEOUT_SECONDS + 1),
        ("retries", runner.MAX_RETRIES, runner.MAX_RETRIES + 1),
    ],
)
def test_the_model_and_the_runner_accept_and_refuse_the_same_hook_values(
    field: str, largest: float, too_large: float
) -> None:
    Hook(run=["/opt/pause.sh"], **{field: largest})
    runner.normalize_entry(entry(**{field: largest}))
    with pytest.raises(ValidationError, match=field):
        Hook(run=["/opt/pause.sh"], **{field: too_large})
    with pytest.raises(runner.Invalid, match=field):
        runner.normalize_entry(entry(**{field: too_large}))


def test_the_model_and_the_runner_accept_and_refuse_the_same_freeze_bound() -> None:
    largest, too_large = runner.MAX_FREEZE_SECONDS, runner.MAX_FREEZE_SECONDS + 1
    runner.normalize_entry(entry(max_freeze_seconds=largest))
    with pytest.raises(runner.Invalid, match="max_freeze_seconds"):
        runner.normalize_entry(entry(max_freeze_seconds=too_large))
    assert bound(Group, "max_freeze_seconds", Le) == largest  # and so refuses too_large
