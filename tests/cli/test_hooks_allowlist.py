"""`quiesce hooks allowlist` prints what the machines must declare; `quiesce plan` shows, per
machine and hook, whether they do (with the real guest runner answering the checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.allowlist import policy_hooks
from quiesce.cli.app import app
from quiesce.guest.quiesce_guest import parse_config
from quiesce.plan import plan_policy
from quiesce.policy import load_policy
from quiesce.providers.local import local_provider
from quiesce.providers.local.hooks import LocalHookRunner
from tests.workspace import Workspace, two_member_workspace

runner = CliRunner()


def quiesce(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return two_member_workspace(tmp_path)


def test_hooks_allowlist_prints_the_file_the_runner_reads(ws: Workspace) -> None:
    code, out = quiesce("hooks", "allowlist", str(ws.policy), "--member", "db")
    assert code == 0, out
    doc = json.loads(out)
    config = parse_config(out, "/etc/quiesce/hooks.json")
    assert sorted(config.hooks) == ["orders.db.post", "orders.db.pre"]
    pre = doc["hooks"]["orders.db.pre"]
    assert pre["run"] == [str(ws.root / "hooks" / "pause"), "db"]
    assert pre["thaw"] == "orders.db.post"
    assert pre["max_freeze_seconds"] == 20
    assert pre["timeout_seconds"] == 5


def test_hooks_allowlist_of_a_member_without_hooks_is_empty_and_of_an_unknown_one_exit_2(
    ws: Workspace,
) -> None:
    code, out = quiesce("hooks", "allowlist", str(ws.policy), "--member", "journal")
    assert code == 0
    assert json.loads(out) == {"version": 1, "hooks": {}}
    code, out = quiesce("hooks", "allowlist", str(ws.policy), "--member", "nope")
    assert code == 2
    assert "member 'nope' is not in the policy" in out


def test_plan_shows_each_machines_allowlist_matches_the_policy(ws: Workspace) -> None:
    code, out = quiesce("plan", str(ws.policy), "--json")
    assert code == 0, out
    db = json.loads(out)["groups"][0]["members"][0]
    (machine,) = db["hooks"]["pre"]["machines"]
    assert machine["allowlist"] == "matches"
    assert machine["thaw"] == "orders.db.post"
    assert machine["thaw_allowlist"] == "matches"
    assert machine["declared"] == db["hooks"]["pre"]["digest"]
    code, out = quiesce("plan", str(ws.policy))
    assert "pre: orders.db.pre:" in out
    assert "allowlist matches, thaw orders.db.post: matches ✓" in out


def test_plan_shows_a_machine_whose_allowlist_differs_or_lacks_a_hook(ws: Workspace) -> None:
    """A machine's runner with its own allowlist (another pre, no post) against the policy."""
    policy = load_policy(ws.policy)
    entries = {h.name: h.entry for h in policy_hooks(policy) if h.entry is not None}
    pre = dict(entries["orders.db.pre"])
    pre["timeout_seconds"] = 7.0  # the machine's declaration drifted from the policy's
    machine = LocalHookRunner(
        Path(policy.state_dir), {"orders.db.pre": {**pre, "thaw": "other.post"},
                                 "other.post": entries["orders.db.post"]}, scratch=True,
    )  # fmt: skip
    report = plan_policy(policy, {"local": local_provider(Path(policy.state_dir), machine)})
    db = report["groups"][0]["members"][0]
    (pre_state,) = db["hooks"]["pre"]["machines"]
    (post_state,) = db["hooks"]["post"]["machines"]
    assert pre_state["allowlist"] == "differs"
    assert pre_state["thaw_allowlist"] == "matches"  # other.post declares the policy's post
    assert post_state["allowlist"] == "missing"
    assert post_state["check"]["code"] == "HookNotDeclared"
    assert report["ok"] is False


def test_the_migration_path_an_old_policy_plans_after_installing_its_allowlist(
    ws: Workspace,
) -> None:
    """An existing policy with `run:` keeps working: the machine that declares the printed
    allowlist matches it, hook for hook."""
    doc = yaml.safe_load(ws.policy.read_text())
    assert "name" not in doc["groups"]["orders"]["members"][0]["hooks"]["pre"]
    code, out = quiesce("hooks", "allowlist", str(ws.policy))
    assert code == 0
    policy = load_policy(ws.policy)
    machine = LocalHookRunner(Path(policy.state_dir), json.loads(out)["hooks"], scratch=True)
    report = plan_policy(policy, {"local": local_provider(Path(policy.state_dir), machine)})
    assert report["ok"] is True
