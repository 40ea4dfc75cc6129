"""scripts/gcp_os_policy.py: what the OS policy assignments install on the members."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import yaml

from quiesce.guest import RUNNER_PATH, quiesce_agent
from quiesce.policy import parse_policy
from tests.gcp.test_terraform import guide_policy

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "gcp_os_policy", ROOT / "scripts" / "gcp_os_policy.py"
)
assert spec
assert spec.loader
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def resources(body: dict[str, Any]) -> dict[str, Any]:
    (policy,) = body["osPolicies"]
    (group,) = policy["resourceGroups"]
    return {r["id"]: r for r in group["resources"]}


def test_the_runner_and_agent_are_installed_pinned_by_sha256() -> None:
    out = gen.assignments(guide_policy(), "bkt")
    digest = hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest()
    for body in out.values():
        found = resources(body)
        staged = found["runner-staged"]["file"]["file"]["gcs"]
        assert staged == {"bucket": "bkt", "object": f"quiesce/{digest}/quiesce_guest.py"}
        install = found["runner"]["exec"]
        assert digest in install["validate"]["script"]
        assert digest in install["enforce"]["script"]
        assert "-o root -g root -m 0755" in install["enforce"]["script"]
        assert "/usr/local/lib/quiesce/quiesce_guest.py" in install["enforce"]["script"]
        assert "agent" in found


def test_agent_members_get_hooks_json_0600_and_the_unit() -> None:
    out = gen.assignments(guide_policy(), "bkt")
    agents = [b for n, b in out.items() if n.startswith("quiesce-agent")]
    assert agents
    for body in agents:
        found = resources(body)
        hooks = found["hooks-json"]["file"]
        assert (hooks["path"], hooks["permissions"]) == ("/etc/quiesce/hooks.json", "600")
        unit = found["agent-unit"]["file"]["content"]
        assert "Restart=always" in unit
        assert "StandardOutput=journal" in unit
        assert "StandardError=journal" in unit
        assert "pre-sh" not in found


def test_guest_flush_shims_only_for_guest_flush_members() -> None:
    policy = guide_policy()
    out = gen.assignments(policy, "bkt")
    flush = {
        m.name for g in policy.groups.values() for m in g.members if m.hook_channel == "guest_flush"
    }
    assert flush
    for name, body in out.items():
        found = resources(body)
        if name.startswith("quiesce-flush"):
            assert found["pre-sh"]["file"]["path"] == "/etc/google/snapshots/pre.sh"
            assert found["post-sh"]["file"]["path"] == "/etc/google/snapshots/post.sh"
            assert "quiesce_guest.py run-args" in found["pre-sh"]["file"]["content"]
            assert "[Snapshots]" not in found["pre-sh"]["file"]["content"]
            assert "'Snapshots', 'enabled', 'true'" in str(found)
            assert "hooks-json" not in found
        else:
            assert not {"pre-sh", "post-sh"} & set(found)


def test_the_hooks_json_parses_with_the_agents_own_loader(tmp_path: Path) -> None:
    out = gen.assignments(guide_policy(), "bkt")
    body = next(b for n, b in out.items() if n.startswith("quiesce-agent"))
    path = tmp_path / "hooks.json"
    path.write_text(resources(body)["hooks-json"]["file"]["content"])
    os.chmod(path, 0o600)
    config = quiesce_agent.load_config(str(path))
    assert config["runner"] == "/usr/local/lib/quiesce/quiesce_guest.py"
    assert config["members"]


def test_the_formats_terraform_and_gcloud() -> None:
    policy = guide_policy()
    tfvars = gen.terraform_vars(policy, "bkt")["os_policy_assignments"]
    first = next(iter(tfvars.values()))
    assert "instance_filter" in first
    assert "os_policies" in first
    files = gen.gcloud_files(policy, "bkt")
    document = yaml.safe_load(next(iter(files.values())))
    assert {"osPolicies", "instanceFilter", "rollout"} <= set(document)
    json.dumps(tfvars)


def test_members_selected_by_name_are_targeted_by_a_member_label() -> None:
    text = """\
version: 1
name: orders-prod
groups:
  g:
    members:
      - {name: api, provider: gcp, project: orders-prod, zone: europe-west1-b,
         select: {instances: [api-1]},
         hooks: {pre: {run: [/opt/p.sh], timeout_seconds: 5}, post: {run: [/opt/q.sh]}}}
"""
    (body,) = gen.assignments(parse_policy(text), "bkt").values()
    assert body["instanceFilter"] == {"inclusionLabels": [{"labels": {"quiesce-member": "api"}}]}
