"""A policy whose name ends in .json is read as JSON, without a YAML parser, within the same
bounds as YAML, and validates exactly like its YAML twin; validating a policy loads only the
providers its members name."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce.errors import PolicyError
from quiesce.policy import load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "local" / "policy.yaml"

AWS = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "max_freeze_seconds": 30,
            "members": [
                {
                    "name": "db",
                    "provider": "aws",
                    "region": "eu-central-1",
                    "select": {"tags": {"app": "orders"}},
                    "hooks": {
                        "pre": {"run": ["/etc/quiesce/hooks/pause.sh"], "timeout_seconds": 10},
                        "post": {"run": ["/etc/quiesce/hooks/resume.sh"], "timeout_seconds": 10},
                    },
                }
            ],
        }
    },
    "triggers": [{"name": "nightly", "group": "orders", "schedule": "0 3 * * *"}],
}


def problems(text: str, path: str = "policy.json") -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path=path)
    return caught.value.problems


def test_a_json_policy_is_the_same_policy_as_its_yaml_twin(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    twin = tmp_path / "policy.json"
    twin.write_text(json.dumps(data))
    copy = tmp_path / "policy.yaml"
    copy.write_text(EXAMPLE.read_text())
    assert load_policy(twin) == load_policy(copy)
    assert parse_policy(json.dumps(AWS), path="p.json") == parse_policy(
        yaml.safe_dump(AWS), path="p.yaml"
    )


def test_a_json_policy_names_the_field_of_each_problem() -> None:
    bad: dict[str, Any] = json.loads(json.dumps(AWS))
    bad["groups"]["orders"]["max_freeze_seconds"] = -1
    bad["groups"]["orders"]["members"][0]["regoin"] = "x"
    found = problems(json.dumps(bad, indent=2))
    assert any(p.startswith("policy.json: groups.orders.max_freeze_seconds: ") for p in found), (
        found
    )
    assert any("groups.orders.members[0].regoin: unknown field" in p for p in found), found


def test_text_that_is_not_json_is_refused_with_its_line() -> None:
    (problem,) = problems('{\n  "version": 1,\n  "name": shop\n}')
    assert problem.startswith("policy.json: line 3: not valid JSON: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"version": 1, "version": 1}', "the key 'version' is given twice"),
        ('{"x": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
        ('{"version": ' + "9" * 31 + "}", "an integer of 31 digits"),
        ('{"version": NaN}', "NaN is not a value a policy can hold"),
        ('{"x": [' + ",".join(["1"] * 20_001) + "]}", "more than 20000 values"),
    ],
)
def test_json_beyond_the_bounds_of_a_policy_is_refused(text: str, expected: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith("policy.json: refused: ")
    assert expected in problem


def test_a_json_document_that_is_not_an_object_is_refused() -> None:
    (problem,) = problems("[1, 2]")
    assert problem == "policy.json: a policy is a JSON object with version, name, groups"


def test_a_yaml_policy_is_still_read_as_yaml() -> None:
    # YAML 1.2 booleans, and the YAML reader's refusals, are unchanged.
    (problem,) = problems("version: 1\nname: &a x\n", path="policy.yaml")
    assert "anchors and aliases" in problem


BLOCKED = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
"""


def run_python(code: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_a_json_policy_is_read_and_validated_without_yaml_and_other_clouds() -> None:
    """Neither PyYAML nor another cloud's member models are imported: the policy names only
    aws, and yaml cannot even be imported here."""
    code = (
        BLOCKED.format(blocked=("yaml",))
        + f"""
import json
from quiesce.policy import parse_policy
policy = parse_policy({json.dumps(AWS)!r}, path="policy.json")
print(json.dumps({{
    "name": policy.name,
    "member": type(policy.groups["orders"].members[0]).__module__,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in
                     ("yaml", "quiesce_aws", "quiesce_azure", "quiesce_gcp")),
}}))
"""
    )
    report = run_python(code)
    assert report["name"] == "shop"
    assert report["member"] == "quiesce_aws.member"
    assert report["loaded"] == ["quiesce_aws", "quiesce_aws.member", "quiesce_aws.spec"]


def test_a_provider_named_later_is_loaded_then_and_the_model_follows() -> None:
    """A process that validated an AWS policy then validates a GCP one: the member union is
    rebuilt with gcp's members; an unknown provider still lists every installed one."""
    gcp = json.loads(json.dumps(AWS))
    gcp["groups"]["orders"]["members"][0] = {
        "name": "db",
        "provider": "gcp",
        "project": "orders-prod",
        "zone": "europe-west1-b",
        "select": {"instances": ["db-1"]},
        "hooks": AWS["groups"]["orders"]["members"][0]["hooks"],  # type: ignore[index]
    }
    unknown = json.loads(json.dumps(AWS))
    unknown["groups"]["orders"]["members"][0]["provider"] = "vmware"
    code = f"""
import json, sys
from quiesce.errors import PolicyError
from quiesce.policy import parse_policy
first = parse_policy({json.dumps(AWS)!r}, path="a.json")
azure_loaded = "quiesce_azure.member" in sys.modules
second = parse_policy({json.dumps(gcp)!r}, path="g.json")
try:
    parse_policy({json.dumps(unknown)!r}, path="u.json")
except PolicyError as exc:
    problems = exc.problems
print(json.dumps({{
    "first": type(first.groups["orders"].members[0]).__name__,
    "second": type(second.groups["orders"].members[0]).__name__,
    "azure_loaded_before": azure_loaded,
    "problems": problems,
}}))
"""
    report = run_python(code)
    assert (report["first"], report["second"]) == ("AwsMember", "GcpMember")
    assert report["azure_loaded_before"] is False
    (problem,) = report["problems"]
    assert "unknown provider 'vmware'; known providers: local, aws, " in problem
    listed = problem.split("known providers: ", 1)[1].split(" (", 1)[0].split(", ")
    assert {"local", "aws", "azure", "gcp"} <= set(listed)  # and the managed services' providers
