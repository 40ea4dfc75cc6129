"""`hooks: {use: <workload>, with: {...}}`: a policy names the hook library's tested hooks,
and every mistake is an error naming the field, at validate time."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import ValidationError

from quiesce.allowlist import policy_hooks
from quiesce.hooklib import INSTALLED_PATH, LIBRARY_PATH
from quiesce.policy.model import Policy


def policy(hooks: dict[str, Any], provider: str = "local") -> Policy:
    member: dict[str, Any] = {"name": "db", "provider": provider, "hooks": hooks}
    if provider == "local":
        member["volumes"] = ["/srv/db"]
    else:
        member.update(region="eu-central-1", select={"tags": {"app": "shop"}})
    return Policy.model_validate(
        {"version": 1, "name": "shop", "groups": {"orders": {"members": [member]}}}
    )


def test_use_declares_the_workloads_pre_post_and_verify_hooks() -> None:
    hooks = policy({"use": "postgresql", "with": {"data": "/pg", "wal": "/wal", "port": 5433}})
    db = hooks.groups["orders"].members[0].hooks

    assert db.pre is not None
    assert db.post is not None
    assert db.verify is not None
    assert db.pre.run == [sys.executable, "-I", str(LIBRARY_PATH), "postgresql", "pre",
                          "--data", "/pg", "--wal", "/wal", "--port", "5433"]  # fmt: skip
    assert db.post.run is not None
    assert db.post.run[3:5] == ["postgresql", "post"]
    assert (db.pre.timeout_seconds, db.verify.timeout_seconds) == (30, 600)


def test_cloud_members_run_the_installed_library_and_their_allowlist_names_it() -> None:
    cloud = policy({"use": "fsfreeze", "with": {"mount": ["/data", "/logs"]}}, provider="aws")

    [pre, post] = policy_hooks(cloud)

    assert pre.entry is not None
    assert pre.entry["run"] == [INSTALLED_PATH, "fsfreeze", "pre", "--mount", "/data",
                                "--mount", "/logs"]  # fmt: skip
    assert pre.entry["thaw"] == post.name == "orders.db.post"


def test_a_library_given_in_the_policy_is_used() -> None:
    db = policy({"use": "redis", "library": ["/opt/q/quiesce_hooks.py"]}, provider="aws")

    run = db.groups["orders"].members[0].hooks.pre
    assert run is not None
    assert run.run == ["/opt/q/quiesce_hooks.py", "redis", "pre"]


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ({"use": "oracle"}, "use: 'oracle' is not in the hook library"),
        ({"use": "postgresql", "with": {"dta": "/pg"}}, "with.dta is not an option"),
        ({"use": "postgresql"}, "with.data is required by the postgresql hooks"),
        ({"use": "fsfreeze", "with": {"mount": ["/a"]}, "pre": {"run": ["/x"]}}, "not both"),
        ({"with": {"data": "/pg"}}, "go with use"),
    ],
)
def test_a_wrong_use_is_a_clear_error(hooks: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="hooks") as raised:
        policy(hooks)

    assert message in str(raised.value)
