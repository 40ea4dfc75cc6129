"""The hook allowlists of a policy's EC2 members: what each instance declares, and which
instances each State Manager association writes it on."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest

from quiesce.guest.quiesce_guest import entry_digest, parse_config
from quiesce.policy import parse_policy
from quiesce_aws.allowlists import AllowlistError, hook_allowlists
from quiesce_aws.hooks import load_documents
from tests.aws.test_permissions import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import aws_triggers

POLICY = """\
version: 1
name: shop
groups:
  orders:
    max_freeze_seconds: 45
    members:
      - name: db
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders, tier: db}}
        hooks:
          pre: {run: [/etc/quiesce/hooks/pause.sh, orders], timeout_seconds: 10, env: {DB: orders}}
          post: {run: [/etc/quiesce/hooks/resume.sh, orders], timeout_seconds: 10, retries: 1}
          verify: {run: [/etc/quiesce/hooks/verify.sh], timeout_seconds: 60}
      - name: web
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders, tier: web}}
      - name: ledger
        provider: aws
        region: us-east-1
        select: {instance_ids: [i-0abc12345, i-0abc12346]}
        hooks:
          pre: {run: [/usr/local/bin/ledger-pause], timeout_seconds: 5}
          post: {run: [/usr/local/bin/ledger-resume], timeout_seconds: 5}
"""


WEB = "select: {tags: {app: orders, tier: web}}"


def test_each_hooked_member_gets_one_allowlist_targeted_at_its_instances() -> None:
    found = hook_allowlists(parse_policy(POLICY))

    assert set(found) == {"orders.db", "orders.ledger"}  # web has no hooks
    db, ledger = found["orders.db"], found["orders.ledger"]
    assert db.region == "eu-central-1"
    assert db.targets == [
        {"key": "tag:app", "values": ["orders"]},
        {"key": "tag:tier", "values": ["db"]},
    ]
    assert ledger.region == "us-east-1"
    assert ledger.targets == [{"key": "InstanceIds", "values": ["i-0abc12345", "i-0abc12346"]}]


def test_the_allowlist_declares_the_members_hooks_as_the_runner_reads_them() -> None:
    db = hook_allowlists(parse_policy(POLICY))["orders.db"]

    config = parse_config(db.content, "/etc/quiesce/hooks.json")

    assert set(config.hooks) == {"orders.db.pre", "orders.db.post", "orders.db.verify"}
    pre = config.hooks["orders.db.pre"]
    assert pre["run"] == ["/etc/quiesce/hooks/pause.sh", "orders"]
    assert pre["env"] == {"DB": "orders"}
    assert (pre["thaw"], pre["max_freeze_seconds"]) == ("orders.db.post", 45.0)
    assert config.hooks["orders.db.post"]["retries"] == 1
    # what `quiesce plan` compares: the machine's digest of what it reads back
    assert entry_digest(json.loads(db.content)["hooks"]["orders.db.pre"]) == entry_digest(pre)


def test_members_with_the_same_selection_share_one_allowlist() -> None:
    policy = parse_policy(
        POLICY.replace(WEB, "select: {tags: {tier: db, app: orders}}").replace(
            "        select: {tags: {tier: db, app: orders}}\n",
            "        select: {tags: {tier: db, app: orders}}\n"
            "        hooks: {verify: {run: [/etc/quiesce/hooks/web-verify.sh]}}\n",
        )
    )

    found = hook_allowlists(policy)

    shared = found["orders.db"]
    assert shared.members == ["orders.db", "orders.web"]
    assert "orders.web.verify" in json.loads(shared.content)["hooks"]
    assert "orders.web" not in found


@pytest.mark.parametrize(
    ("web_select", "why"),
    [
        ("{tags: {app: orders}}", "also carries the other's tags"),
        ("{tags: {app: orders, tier: db, zone: a}}", "also carries the other's tags"),
    ],
)
def test_members_whose_tag_selections_overlap_are_refused(web_select: str, why: str) -> None:
    policy = parse_policy(
        POLICY.replace("select: {tags: {app: orders, tier: web}}", f"select: {web_select}").replace(
            f"        select: {web_select}\n",
            f"        select: {web_select}\n        hooks: {{verify: {{run: [/v.sh]}}}}\n",
        )
    )

    with pytest.raises(AllowlistError, match=re.escape("orders.db and orders.web")) as raised:
        hook_allowlists(policy)

    assert why in str(raised.value)


def test_members_that_share_an_instance_id_are_refused() -> None:
    text = POLICY + (
        "      - name: audit\n        provider: aws\n        region: us-east-1\n"
        "        select: {instance_ids: [i-0abc12346]}\n"
        "        hooks: {verify: {run: [/usr/local/bin/audit]}}\n"
    )

    with pytest.raises(AllowlistError, match="both select i-0abc12346"):
        hook_allowlists(parse_policy(text))


def test_the_same_instance_ids_in_two_regions_are_not_an_overlap() -> None:
    text = POLICY + (
        "      - name: audit\n        provider: aws\n        region: eu-central-1\n"
        "        select: {instance_ids: [i-0abc12346]}\n"
        "        hooks: {verify: {run: [/usr/local/bin/audit]}}\n"
    )

    assert set(hook_allowlists(parse_policy(text))) == {
        "orders.db",
        "orders.ledger",
        "orders.audit",
    }


def test_a_member_selected_by_more_tags_than_an_association_can_target_is_refused() -> None:
    tags = "{a: '1', b: '2', c: '3', d: '4', e: '5'}"
    policy = parse_policy(POLICY.replace("{tags: {app: orders, tier: db}}", f"{{tags: {tags}}}"))

    with pytest.raises(AllowlistError, match="at most 4"):
        hook_allowlists(policy)


def test_the_tfvars_carry_each_allowlist_with_its_targets_and_content() -> None:
    policy = parse_policy(POLICY)

    data = aws_triggers.tfvars(policy, POLICY.encode(), "policy.yaml")

    allowlists: dict[str, Any] = data["hook_allowlists"]
    assert set(allowlists) == {"orders.db", "orders.ledger"}
    assert allowlists["orders.db"]["members"] == ["orders.db"]
    assert allowlists["orders.db"]["region"] == "eu-central-1"
    assert json.loads(allowlists["orders.db"]["content"])["version"] == 1


def test_the_allowlist_url_terraform_builds_fits_the_install_documents_pattern() -> None:
    pattern = load_documents("0" * 64)["install_hooks"]["parameters"]["SourceUrl"]["allowedPattern"]
    for name in hook_allowlists(parse_policy(POLICY)):
        url = (
            "https://quiesce-shop-runner-2026112900.s3.eu-central-1.amazonaws.com/allowlists/"
            f"{name}/{'a' * 64}/hooks.json"
        )
        assert re.fullmatch(pattern, url), url


def test_the_script_refuses_a_policy_whose_allowlists_would_collide(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        POLICY + "      - name: audit\n        provider: aws\n        region: us-east-1\n"
        "        select: {instance_ids: [i-0abc12345]}\n"
        "        hooks: {verify: {run: [/usr/local/bin/audit]}}\n"
    )

    assert aws_triggers.main([str(bad), "-o", "-"]) == 2
    assert "holds one hook allowlist" in capsys.readouterr().err
