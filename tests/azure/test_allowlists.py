"""The hook allowlists of a policy's Azure VMs, and the script infra/azure's run command
installs them with, run here as root against a folder standing for /etc/quiesce."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from quiesce.guest.quiesce_guest import parse_config
from quiesce.policy import parse_policy
from quiesce_azure.allowlists import AllowlistError, hook_allowlists, main
from tests.azure.test_permissions import INFRA, load_configuration

SUB = "00000000-0000-0000-0000-000000000001"
POLICY = f"""\
version: 1
name: shop
groups:
  orders:
    max_freeze_seconds: 45
    members:
      - name: db
        provider: azure
        subscription: {SUB}
        resource_group: rg-orders
        select: {{vm_names: [db-1, db-2]}}
        hooks:
          pre: {{run: [/etc/quiesce/hooks/pause.sh, orders], timeout_seconds: 10}}
          post: {{run: [/etc/quiesce/hooks/resume.sh, orders], timeout_seconds: 10}}
      - name: web
        provider: azure
        subscription: {SUB}
        resource_group: rg-orders
        select: {{tags: {{app: orders, tier: web}}}}
        hooks:
          verify: {{run: [/etc/quiesce/hooks/web-verify.sh]}}
"""
SCRIPT = INFRA / "install-hooks.sh"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs a root-owned file")


def test_each_member_gets_the_allowlist_of_its_hooks_for_its_vms() -> None:
    found = hook_allowlists(parse_policy(POLICY))

    assert set(found) == {"orders.db", "orders.web"}
    db, web = found["orders.db"], found["orders.web"]
    assert (db["vm_names"], db["tags"]) == (["db-1", "db-2"], None)
    assert (web["vm_names"], web["tags"]) == (None, {"app": "orders", "tier": "web"})
    config = parse_config(db["content"], "/etc/quiesce/hooks.json")
    assert set(config.hooks) == {"orders.db.pre", "orders.db.post"}
    assert config.hooks["orders.db.pre"]["thaw"] == "orders.db.post"
    assert config.hooks["orders.db.pre"]["max_freeze_seconds"] == 45.0


def test_members_that_share_a_vm_are_refused() -> None:
    text = POLICY.replace("{tags: {app: orders, tier: web}}", "{vm_names: [DB-2]}")

    with pytest.raises(AllowlistError, match=re.escape("orders.db and orders.web: both select")):
        hook_allowlists(parse_policy(text))


def test_the_module_writes_the_tfvars_terraform_reads(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "hooks.auto.tfvars.json"

    assert main([str(policy), "-o", str(out)]) == 0

    data = json.loads(out.read_text())
    assert set(data) == {"hook_allowlists"}
    assert data["hook_allowlists"]["orders.db"]["members"] == ["orders.db"]
    variable = load_configuration()["variable"]["hook_allowlists"]
    assert "quiesce_azure.allowlists" in variable["description"]


def test_the_run_command_installs_the_allowlist_pinned_by_its_hash() -> None:
    command = load_configuration()["resource"]["azurerm_virtual_machine_run_command"]
    body = command["hook_allowlist"]
    (source,) = body["source"]
    assert source["script"] == '${file("${path.module}/install-hooks.sh")}'
    parameters = {p["name"]: p["value"] for p in body["parameter"]}
    content = "var.hook_allowlists[each.value.allowlist].content"
    assert parameters == {
        "QUIESCE_ALLOWLIST_B64": f"${{base64encode({content})}}",
        "QUIESCE_ALLOWLIST_SHA256": f"${{sha256({content})}}",
    }
    assert "protected_parameter" not in body


def _install(root: Path, content: bytes, sha: str) -> subprocess.CompletedProcess[str]:
    script = SCRIPT.read_text().replace("/etc/quiesce", str(root / "etc"))
    env = {
        "PATH": "/usr/bin:/bin",
        "QUIESCE_ALLOWLIST_B64": base64.b64encode(content).decode(),
        "QUIESCE_ALLOWLIST_SHA256": sha,
    }
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@needs_root
def test_the_script_installs_the_allowlist_root_owned_0644(tmp_path: Path) -> None:
    content = hook_allowlists(parse_policy(POLICY))["orders.db"]["content"].encode()

    done = _install(tmp_path, content, hashlib.sha256(content).hexdigest())

    assert done.returncode == 0, done.stderr
    installed = tmp_path / "etc" / "hooks.json"
    assert installed.read_bytes() == content
    st = installed.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
    assert [p.name for p in (tmp_path / "etc").iterdir()] == ["hooks.json"]


@needs_root
def test_the_script_refuses_content_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir(mode=0o755)
    (tmp_path / "etc" / "hooks.json").write_text('{"version": 1, "hooks": {}}\n')
    pinned = hashlib.sha256(b'{"version": 1, "hooks": {}}\n').hexdigest()
    evil = b'{"version": 1, "hooks": {"x.y.post": {"phase": "post", "run": ["/bin/sh"]}}}\n'

    done = _install(tmp_path, evil, pinned)

    assert done.returncode == 1
    assert "not the pinned" in done.stderr
    assert (tmp_path / "etc" / "hooks.json").read_text() == '{"version": 1, "hooks": {}}\n'
    assert [p.name for p in (tmp_path / "etc").iterdir()] == ["hooks.json"]
