"""scripts/gcp_os_policy.py: what the OS policy assignments install on the members."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce.errors import QuiesceError
from quiesce.guest import RUNNER_PATH
from quiesce.guest.quiesce_guest import load_config as runner_load_config
from quiesce.hooklib import INSTALLED_PATH, LIBRARY_PATH
from quiesce.policy import parse_policy
from quiesce_gcp import quiesce_agent
from quiesce_gcp.signing import AgentKeys, instance_path
from tests.gcp.test_terraform import guide_policy, load_configuration

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "gcp_os_policy", ROOT / "scripts" / "gcp_os_policy.py"
)
assert spec
assert spec.loader
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


KEYS = AgentKeys.from_hex("c3" * 32)
#: The guide's db member selects its instances by labels: they are named on the command line.
NAMED = {"db": ["orders-db-1"]}


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
        # The agent restarts when its key changes too.
        assert "/etc/quiesce/agent.key" in found["agent-service"]["exec"]["validate"]["script"]


def test_each_agent_instance_gets_its_own_key_root_only() -> None:
    policy = guide_policy()
    out = gen.key_assignments(policy, KEYS, NAMED)
    wanted = {"orders-db-1", "orders-api-1", "orders-api-2"}
    by_instance = {
        b["instanceFilter"]["inclusionLabels"][0]["labels"]["quiesce-instance"]: b
        for b in out.values()
    }
    assert set(by_instance) == wanted
    for name, body in by_instance.items():
        (found,) = resources(body).values()
        file = found["file"]
        assert (file["path"], file["permissions"]) == ("/etc/quiesce/agent.key", "600")
        key = KEYS.for_instance(instance_path("orders-prod", "europe-west1-b", name))
        assert file["content"] == key.hex() + "\n"
    # Every instance's key differs: one leaked key is worth nothing on another VM.
    contents = {resources(b)["agent-key"]["file"]["content"] for b in out.values()}
    assert len(contents) == len(wanted)
    # No other assignment carries a key.
    for body in gen.assignments(policy, "bkt").values():
        assert not any(key.strip() in json.dumps(body) for key in contents)


def test_an_agent_member_selected_by_labels_needs_its_instances_named() -> None:
    with pytest.raises(QuiesceError, match="--instance db=NAME"):
        gen.key_assignments(guide_policy(), KEYS)


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
            pre = found["pre-sh"]["file"]["content"]
            assert "quiesce_guest.py run-args --config /etc/quiesce/hooks.json" in pre
            assert "--hook reports.reports.pre" in pre
            assert "--hook reports.reports.post" in found["post-sh"]["file"]["content"]
            assert "/opt/reports" not in pre  # the shims name hooks; the allowlist runs them
            assert "[Snapshots]" not in pre
            assert "'Snapshots', 'enabled', 'true'" in str(found)
            config = json.loads(found["hooks-json"]["file"]["content"])
            assert config["hooks"]["reports.reports.pre"]["run"][0] == "/opt/reports/hooks/flush.sh"
        else:
            assert not {"pre-sh", "post-sh"} & set(found)


def test_the_hooks_json_parses_with_the_agents_and_the_runners_own_loaders(
    tmp_path: Path,
) -> None:
    out = gen.assignments(guide_policy(), "bkt")
    body = next(b for n, b in out.items() if n.startswith("quiesce-agent"))
    path = tmp_path / "hooks.json"
    path.write_text(resources(body)["hooks-json"]["file"]["content"])
    os.chmod(path, 0o600)
    declared = runner_load_config(str(path))
    assert declared.hook("orders.db.pre", "pre").entry["thaw"] == "orders.db.post"
    assert declared.hook("orders.api.post", "post").run == ["/opt/orders/hooks/resume-api.sh"]
    config = quiesce_agent.load_config(str(path))
    assert config["agent"]["runner"] == "/usr/local/lib/quiesce/quiesce_guest.py"
    assert config["agent"]["signing_key_file"] == "/etc/quiesce/agent.key"
    assert config["hooks"]


def test_the_formats_terraform_and_gcloud() -> None:
    policy = guide_policy()
    tfvars = gen.terraform_vars(policy, "bkt", KEYS, NAMED)
    first = next(iter(tfvars["os_policy_assignments"].values()))
    assert "instance_filter" in first
    assert "os_policies" in first
    key = tfvars["agent_key_assignments"]["quiesce-key-orders-prod-europe-west1-b-orders-api-1"]
    assert key == {
        "project": "orders-prod",
        "location": "europe-west1-b",
        "instance": "orders-api-1",
        "key": KEYS.for_instance(
            instance_path("orders-prod", "europe-west1-b", "orders-api-1")
        ).hex(),
    }
    files = gen.gcloud_files(policy, "bkt", KEYS, NAMED)
    assert "quiesce-key-orders-prod-europe-west1-b-orders-db-1.yaml" in files
    document = yaml.safe_load(next(iter(files.values())))
    assert {"osPolicies", "instanceFilter", "rollout"} <= set(document)
    json.dumps(tfvars)


def test_the_command_line_writes_the_keys_where_only_its_user_can_read(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    guide = (ROOT / "docs" / "gcp-deploy.md").read_text()
    policy.write_text(
        next(b for b in guide.split("```yaml\n")[1:] if "version: 1" in b).split("```")[0]
    )
    master = tmp_path / "master.key"
    master.write_text("c3" * 32)
    master.chmod(0o600)
    out = tmp_path / "vars.json"
    args = [str(policy), "--bucket", "b", "--master-key-file", str(master), "-o", str(out)]
    assert gen.main([*args, "--instance", "db=orders-db-1"]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["agent_key_assignments"]
    folder = tmp_path / "gcloud"
    assert (
        gen.main(
            [*args[:-2], "--instance", "db=orders-db-1", "--format", "gcloud", "-o", str(folder)]
        )
        == 0
    )
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in folder.iterdir())
    master.chmod(0o644)  # a master key others can read is refused
    assert gen.main([*args, "--instance", "db=orders-db-1"]) == 2


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


# ------------------------------------------------------------------ the hook library, installed

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs a root-owned file")


def test_the_hook_library_is_installed_pinned_by_sha256_next_to_the_runner() -> None:
    digest = hashlib.sha256(LIBRARY_PATH.read_bytes()).hexdigest()
    for body in gen.assignments(guide_policy(), "bkt").values():
        found = resources(body)
        staged = found["library-staged"]["file"]
        assert staged["file"]["gcs"] == {
            "bucket": "bkt",
            "object": f"quiesce/{digest}/quiesce_hooks.py",
        }
        assert (staged["path"], staged["permissions"]) == (
            "/var/lib/quiesce/staging/quiesce_hooks.py",
            "600",
        )
        install = found["library"]["exec"]
        assert digest in install["validate"]["script"]
        assert digest in install["enforce"]["script"]
        assert INSTALLED_PATH in install["enforce"]["script"]


def test_terraform_uploads_the_library_under_the_name_the_policy_fetches() -> None:
    files = load_configuration()["locals"]["guest_files"]
    assert files["quiesce_hooks.py"].endswith("/shared/quiesce/hooklib/quiesce_hooks.py")
    source = ROOT / "infra" / "gcp" / files["quiesce_hooks.py"].replace("${path.module}/", "")
    assert source.resolve() == LIBRARY_PATH
    assert gen.object_name(LIBRARY_PATH) == f"quiesce/{gen.sha256_of(source)}/quiesce_hooks.py"


def _library_exec(root: Path, step: str) -> subprocess.CompletedProcess[str]:
    """The library's exec resource script, run as OS Config runs it (a shell script as root),
    with the machine's folders moved under `root`."""
    found = resources(next(iter(gen.assignments(guide_policy(), "bkt").values())))
    script = found["library"]["exec"][step]["script"]
    script = script.replace("/var/lib/quiesce", str(root / "var")).replace(
        "/usr/local/lib/quiesce", str(root / "lib")
    )
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )


def _stage(root: Path, content: bytes) -> None:
    """What the library's GCS file resource leaves: the object in the staging folder."""
    (root / "var" / "staging").mkdir(parents=True, exist_ok=True)
    (root / "var" / "staging" / "quiesce_hooks.py").write_bytes(content)


@needs_root
def test_the_exec_resource_installs_the_library_root_owned_0755_and_then_validates(
    tmp_path: Path,
) -> None:
    _stage(tmp_path, LIBRARY_PATH.read_bytes())
    assert _library_exec(tmp_path, "validate").returncode == 101

    done = _library_exec(tmp_path, "enforce")

    assert done.returncode == 100, done.stderr
    installed = tmp_path / "lib" / "quiesce_hooks.py"
    assert installed.read_bytes() == LIBRARY_PATH.read_bytes()
    st = installed.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o755)
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["quiesce_hooks.py"]
    assert _library_exec(tmp_path, "validate").returncode == 100
    # A library changed on the machine is drift: validate says so, enforce puts it back.
    installed.write_bytes(installed.read_bytes() + b"\n# changed\n")
    assert _library_exec(tmp_path, "validate").returncode == 101
    assert _library_exec(tmp_path, "enforce").returncode == 100
    assert installed.read_bytes() == LIBRARY_PATH.read_bytes()


@needs_root
def test_a_staged_library_that_is_not_the_pinned_one_is_refused_and_the_old_one_stays(
    tmp_path: Path,
) -> None:
    (tmp_path / "lib").mkdir(mode=0o755)
    old = tmp_path / "lib" / "quiesce_hooks.py"
    old.write_bytes(b"#!/usr/bin/python3\n# the installed library\n")
    _stage(tmp_path, LIBRARY_PATH.read_bytes() + b"\nimport os; os.system('id')\n")

    done = _library_exec(tmp_path, "enforce")

    assert done.returncode == 1
    assert "not the pinned sha256" in done.stderr
    assert old.read_bytes() == b"#!/usr/bin/python3\n# the installed library\n"
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["quiesce_hooks.py"]
