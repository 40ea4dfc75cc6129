"""The policy models keep the guest runner's rules without importing the runner to validate a
policy that sets no hook environment."""

from __future__ import annotations

import json
import subprocess
import sys

from quiesce.guest import quiesce_guest
from quiesce.policy import model


def test_the_hook_name_rule_is_the_runners() -> None:
    assert model.HOOK_NAME_RE.pattern == quiesce_guest.HOOK_NAME_RE.pattern


def test_the_runner_is_imported_only_for_a_hook_environment() -> None:
    policy = {
        "version": 1,
        "name": "p",
        "groups": {
            "g": {
                "members": [
                    {
                        "name": "m",
                        "provider": "aws",
                        "region": "eu-central-1",
                        "select": {"tags": {"app": "m"}},
                        "hooks": {
                            "pre": {"run": ["/bin/true"]},
                            "post": {"run": ["/bin/true"], "env": {"LD_PRELOAD": "x"}},
                        },
                    }
                ]
            }
        },
    }
    code = f"""
import json, sys
from quiesce.errors import PolicyError
from quiesce.policy import parse_policy
policy = json.loads({json.dumps(policy)!r})
post = policy["groups"]["g"]["members"][0]["hooks"]["post"]
env = post.pop("env")
parse_policy(json.dumps(policy), path="p.json")
before = "quiesce.guest.quiesce_guest" in sys.modules
post["env"] = env
try:
    parse_policy(json.dumps(policy), path="p.json")
except PolicyError as exc:
    problems = exc.problems
print(json.dumps([before, problems]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    before, problems = json.loads(result.stdout)
    assert before is False
    (problem,) = problems
    assert "env.LD_PRELOAD: is refused" in problem
