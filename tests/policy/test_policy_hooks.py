"""Hooks in the policy are the machines' declarations: names, env, secrets, defaults, and the
allowlist they stand for (digests computed the way the runner computes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiesce.allowlist import allowlist, policy_hooks
from quiesce.errors import PolicyError
from quiesce.guest.quiesce_guest import entry_digest, parse_config
from quiesce.policy import parse_policy

LOCAL = """\
version: 1
name: shop
groups:
  orders:
    members:
      - name: db
        provider: local
        volumes: [/srv/db]
        hooks:
          pre:  {run: [/opt/hooks/pause.sh, db], timeout_seconds: 5, env: {DB: orders},
                 secret_env: {PGPASSWORD: /etc/quiesce/secrets/pg}}
          post: {run: [/opt/hooks/resume.sh, db], timeout_seconds: 5}
          verify: {run: [/opt/hooks/verify.sh], timeout_seconds: 60}
"""

AWS = """\
version: 1
name: shop
groups:
  web:
    max_freeze_seconds: 20
    members:
      - name: api
        provider: aws
        region: eu-central-1
        select: {tags: {app: shop}}
        hooks:
          pre: {name: shop-pause, timeout_seconds: 5}
          post: {name: shop-resume, timeout_seconds: 5}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path="p.yaml")
    return caught.value.problems


def test_hooks_are_named_group_member_phase_unless_they_give_a_name() -> None:
    hooks = parse_policy(LOCAL).groups["orders"].members[0].hooks
    assert hooks.pre is not None
    assert hooks.post is not None
    assert hooks.verify is not None
    assert (hooks.pre.name, hooks.post.name, hooks.verify.name) == (
        "orders.db.pre",
        "orders.db.post",
        "orders.db.verify",
    )
    named = parse_policy(LOCAL.replace("pre:  {run:", "pre:  {name: db-freeze, run:"))
    assert named.groups["orders"].members[0].hooks.pre.name == "db-freeze"  # type: ignore[union-attr]


def test_a_cloud_hook_may_give_only_its_name_a_local_one_must_declare_run() -> None:
    hooks = parse_policy(AWS).groups["web"].members[0].hooks
    assert hooks.pre is not None
    assert hooks.pre.run is None
    assert hooks.pre.name == "shop-pause"
    (problem,) = problems_of(
        LOCAL.replace("pre:  {run: [/opt/hooks/pause.sh, db],", "pre:  {name: x,")
    )
    assert "hooks.pre.run: local members declare their hooks in the policy" in problem
    (problem,) = problems_of(
        AWS.replace("pre: {name: shop-pause, timeout_seconds: 5}", "pre: {timeout_seconds: 3}")
    )
    assert "groups.web.members[0].hooks.pre" in problem
    assert "give run" in problem
    assert "or name" in problem


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "BASH_ENV", "ENV", "PYTHONPATH", "PERL5OPT", "IFS", "PATH", "QUIESCE_X"]
)
def test_env_names_that_change_which_code_runs_are_refused_naming_the_field(name: str) -> None:
    (problem,) = problems_of(LOCAL.replace("env: {DB: orders}", f"env: {{{name}: x}}"))
    assert f"line 10: groups.orders.members[0].hooks.pre.env: env.{name}: is refused" in problem
    (problem,) = problems_of(LOCAL.replace("secret_env: {PGPASSWORD:", f"secret_env: {{{name}:"))
    assert f"hooks.pre.secret_env: secret_env.{name}: is refused" in problem


def test_secret_env_holds_absolute_paths_on_the_machine_and_no_name_twice() -> None:
    (problem,) = problems_of(LOCAL.replace("/etc/quiesce/secrets/pg", "secrets/pg"))
    assert "secret_env.PGPASSWORD: 'secrets/pg' must be the absolute path" in problem
    (problem,) = problems_of(LOCAL.replace("env: {DB: orders}", "env: {PGPASSWORD: x}"))
    assert "PGPASSWORD is set in env too" in problem


def test_a_hook_without_timeout_fits_a_group_with_default_settings() -> None:
    text = """\
version: 1
name: shop
groups:
  orders:
    members:
      - name: db
        provider: local
        volumes: [/srv/db]
        hooks: {pre: {run: [/opt/pause.sh]}, post: {run: [/opt/resume.sh]}}
"""
    group = parse_policy(text).groups["orders"]
    pre = group.members[0].hooks.pre
    assert pre is not None
    assert pre.budget_seconds < group.max_freeze_seconds


def test_one_name_stands_for_one_declaration() -> None:
    text = LOCAL.replace(
        "verify: {run: [/opt/hooks/verify.sh]", "verify: {name: orders.db.post, run: [/x]"
    )
    (problem,) = problems_of(text)
    assert "groups.orders.members[db].hooks.verify" in problem
    assert "'orders.db.post' is also used by groups.orders.members[db].hooks.post" in problem


def test_the_allowlist_entries_are_the_runners_own_normal_form() -> None:
    policy = parse_policy(LOCAL)
    doc = allowlist(policy_hooks(policy))
    assert doc["hooks"]["orders.db.pre"] == {
        "phase": "pre",
        "run": ["/opt/hooks/pause.sh", "db"],
        "sha256": None,
        "env": {"DB": "orders"},
        "env_files": {"PGPASSWORD": "/etc/quiesce/secrets/pg"},
        "timeout_seconds": 5.0,
        "retries": 0,
        "thaw": "orders.db.post",
        "max_freeze_seconds": 60.0,
    }
    # The runner reads the document as its own config and reports the same digests.
    config = parse_config(__import__("json").dumps(doc), "/etc/quiesce/hooks.json")
    for hook in policy_hooks(policy):
        assert hook.digest == entry_digest(config.hooks[hook.name])


def test_hooks_the_machines_declare_are_left_out_of_the_allowlist() -> None:
    policy = parse_policy(AWS)
    hooks = policy_hooks(policy)
    assert [(h.name, h.entry) for h in hooks] == [("shop-pause", None), ("shop-resume", None)]
    assert allowlist(hooks)["hooks"] == {}


def test_the_allowlist_of_one_member(tmp_path: Path) -> None:
    text = LOCAL + (
        "      - name: cache\n        provider: local\n        volumes: [/srv/cache]\n"
        "        hooks: {pre: {run: [/opt/c.sh]}, post: {run: [/opt/d.sh]}}\n"
    )
    policy = parse_policy(text)
    names = sorted(allowlist(policy_hooks(policy, member="cache"))["hooks"])
    assert names == ["orders.cache.post", "orders.cache.pre"]
