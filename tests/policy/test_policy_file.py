"""The policy file is the user's contract: what it accepts, and how it says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiesce.errors import PolicyError
from quiesce.policy import load_policy, parse_policy

EXAMPLE = """\
version: 1
name: orders
state_dir: .quiesce
groups:
  orders:
    consistency: application
    on_quiesce_failure: fallback
    max_freeze_seconds: 30
    retention: {keep_last: 7}
    members:
      - name: db
        provider: local
        volumes: [./data/db]
        hooks:
          pre:  {run: [./hooks/pause.sh, db], timeout_seconds: 10, retries: 0}
          post: {run: [./hooks/resume.sh, db], timeout_seconds: 10}
          verify: {run: [./hooks/verify.sh], timeout_seconds: 60}
      - name: journal
        provider: local
        volumes: [./data/journal]
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path="p.yaml")
    return caught.value.problems


def test_the_documented_example_is_valid_and_its_paths_are_resolved_against_the_file(
    tmp_path: Path,
) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(EXAMPLE)
    policy = load_policy(file)
    db = policy.groups["orders"].members[0]
    assert db.volumes == [str(tmp_path / "data/db")]
    assert db.hooks.pre is not None
    assert db.hooks.pre.run == [str(tmp_path / "hooks/pause.sh"), "db"]
    assert policy.state_dir == str(tmp_path / ".quiesce")
    assert policy.groups["orders"].retention is not None
    assert policy.groups["orders"].members[1].hooks.pre is None


def test_an_absolute_hook_path_is_kept_and_a_bare_relative_one_is_refused() -> None:
    text = EXAMPLE.replace("./hooks/pause.sh", "/etc/quiesce/pause.sh")
    policy = parse_policy(text, base_dir=Path("/srv"))
    hooks = policy.groups["orders"].members[0].hooks
    assert hooks.pre is not None
    assert hooks.pre.run is not None
    assert hooks.pre.run[0] == "/etc/quiesce/pause.sh"
    # `hooks/resume.sh` is neither absolute nor ./-relative: what `plan` and the runner would
    # refuse, `validate` refuses first, with or without the file's folder to resolve against.
    for base in (Path("/srv"), None):
        with pytest.raises(PolicyError) as caught:
            parse_policy(
                EXAMPLE.replace("./hooks/resume.sh", "hooks/resume.sh"), path="p.yaml",
                base_dir=base,
            )  # fmt: skip
        (problem,) = caught.value.problems
        assert "line 11: groups.orders.members[0]: hooks.post.run" in problem
        assert "'hooks/resume.sh' must be an absolute path or start with ./" in problem


def test_a_misspelled_field_is_named_with_its_path_and_line() -> None:
    (problem,) = problems_of(EXAMPLE.replace("timeout_seconds: 60", "timeout_secs: 60"))
    assert problem.startswith("p.yaml: line 17: groups.orders.members[0].hooks.verify")
    assert "timeout_secs" in problem
    assert "unknown field" in problem


def test_a_wrong_value_names_the_field_and_the_allowed_values() -> None:
    (problem,) = problems_of(
        EXAMPLE.replace("on_quiesce_failure: fallback", "on_quiesce_failure: retry")
    )
    assert "line 7" in problem
    assert "groups.orders.on_quiesce_failure" in problem
    assert "'fallback' or 'abort'" in problem


def test_an_unknown_provider_is_named() -> None:
    (problem,) = problems_of(
        EXAMPLE.replace(
            "provider: local\n        volumes: [./data/journal]",
            "provider: vmware\n        volumes: [./data/journal]",
        )
    )
    assert "line 18: groups.orders.members[1]: unknown provider 'vmware'" in problem
    assert "known providers: local, aws" in problem


def test_a_member_without_a_provider_is_named() -> None:
    (problem,) = problems_of(
        EXAMPLE.replace(
            "        provider: local\n        volumes: [./data/j", "        volumes: [./data/j"
        )
    )
    assert "groups.orders.members[1]: a member needs a provider" in problem


AWS_MEMBER = """\
      - name: web
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders}}
        hooks:
          pre: {run: [/etc/quiesce/pre.sh], timeout_seconds: 10}
          post: {run: [/etc/quiesce/post.sh]}
"""


def test_an_aws_member_selects_instances_by_id_or_tags() -> None:
    policy = parse_policy(EXAMPLE + AWS_MEMBER)
    web = policy.groups["orders"].members[2]
    assert web.provider == "aws"
    assert web.select.tags == {"app": "orders"}


def test_cloud_hook_paths_must_be_absolute_paths_on_the_machine() -> None:
    (problem,) = problems_of(EXAMPLE + AWS_MEMBER.replace("/etc/quiesce/pre.sh", "pre.sh"))
    assert "groups.orders.members[2]" in problem
    assert "hooks.pre.run: 'pre.sh' must be an absolute path" in problem


def test_an_aws_member_needs_exactly_one_selector() -> None:
    text = EXAMPLE + AWS_MEMBER.replace(
        "{tags: {app: orders}}", "{tags: {a: b}, instance_ids: [i-0123456789abcdef0]}"
    )
    (problem,) = problems_of(text)
    assert "line 24: groups.orders.members[2].select: give exactly one" in problem


def test_windows_members_are_quiesced_by_vss_not_hooks() -> None:
    (problem,) = problems_of(
        EXAMPLE + AWS_MEMBER.replace("region:", "os: windows\n        region:")
    )
    assert "quiesced by VSS" in problem


def test_every_problem_is_reported_at_once() -> None:
    text = EXAMPLE.replace("version: 1", "version: 2").replace("name: orders\n", "name: Orders!\n")
    assert len(problems_of(text)) == 2


def test_a_pre_hook_without_a_post_hook_is_refused() -> None:
    text = EXAMPLE.replace(
        "          post: {run: [./hooks/resume.sh, db], timeout_seconds: 10}\n", ""
    )
    (problem,) = problems_of(text)
    assert "groups.orders.members[0].hooks" in problem
    assert "nothing could ever thaw" in problem


def test_a_pre_hook_that_could_outlast_the_watchdog_is_refused() -> None:
    text = EXAMPLE.replace("timeout_seconds: 10, retries: 0", "timeout_seconds: 10, retries: 2")
    (problem,) = problems_of(text)
    assert "30s" in problem
    assert "max_freeze_seconds" in problem
    assert "'db'" in problem


def test_member_names_must_be_unique_in_a_group() -> None:
    (problem,) = problems_of(EXAMPLE.replace("name: journal", "name: db"))
    assert "repeated: db" in problem


def test_an_application_group_needs_at_least_one_pre_hook() -> None:
    text = (
        EXAMPLE.split("        hooks:\n")[0]
        + "      - name: journal\n        provider: local\n        volumes: [./j]\n"
    )
    (problem,) = problems_of(text)
    assert "consistency: crash" in problem


def test_retention_needs_a_rule() -> None:
    (problem,) = problems_of(EXAMPLE.replace("{keep_last: 7}", "{}"))
    assert "groups.orders.retention" in problem
    assert "keep_last" in problem


def test_hook_environment_names_are_checked() -> None:
    text = EXAMPLE.replace("retries: 0}", "retries: 0, env: {'BAD NAME': x}}")
    (problem,) = problems_of(text)
    assert "groups.orders.members[0].hooks.pre.env" in problem
    assert "BAD NAME: is not a valid variable name" in problem


def test_broken_yaml_names_the_line() -> None:
    (problem,) = problems_of("version: 1\nname: [unclosed\n")
    assert problem.startswith("p.yaml: line")
    assert "not valid YAML" in problem


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    (problem,) = problems_of("- just\n- a list\n")
    assert "YAML mapping" in problem


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


AZURE_MEMBER = """\
      - name: api
        provider: azure
        subscription: 00000000-0000-0000-0000-000000000000
        resource_group: rg-orders
        select: {vm_names: [api-1, api-2]}
        snapshot: disk_snapshots
        hooks:
          pre: {run: [/etc/quiesce/pre.sh], timeout_seconds: 10}
          post: {run: [/etc/quiesce/post.sh]}
"""


def test_an_azure_member_selects_vms_of_a_resource_group() -> None:
    api = parse_policy(EXAMPLE + AZURE_MEMBER).groups["orders"].members[2]
    assert api.provider == "azure"
    assert api.select.vm_names == ["api-1", "api-2"]
    assert api.snapshot == "disk_snapshots"


def test_a_windows_azure_member_takes_an_application_consistent_restore_point() -> None:
    text = EXAMPLE + AZURE_MEMBER.replace("select:", "os: windows\n        select:")
    (problem,) = problems_of(text)
    assert "quiesced by VSS" in problem


GCP_MEMBER = """\
      - name: reports
        provider: gcp
        project: orders-prod
        zone: europe-west1-b
        select: {instances: [reports-1]}
        hook_channel: agent
        hooks:
          pre: {run: [/etc/quiesce/pre.sh], timeout_seconds: 10}
          post: {run: [/etc/quiesce/post.sh]}
"""


def test_a_gcp_member_selects_instances_of_a_zone() -> None:
    reports = parse_policy(EXAMPLE + GCP_MEMBER).groups["orders"].members[2]
    assert (reports.provider, reports.hook_channel) == ("gcp", "agent")


def test_guest_flush_cannot_hold_a_group_of_several_members() -> None:
    (problem,) = problems_of(
        EXAMPLE + GCP_MEMBER.replace("hook_channel: agent", "hook_channel: guest_flush")
    )
    assert "guest_flush" in problem
    assert "group of its own" in problem


def test_an_application_group_of_windows_members_is_quiesced_by_vss_alone() -> None:
    text = """\
version: 1
name: shop
groups:
  files:
    consistency: application
    members:
      - name: fs
        provider: aws
        region: eu-central-1
        os: windows
        select: {tags: {role: fileserver}}
"""
    assert parse_policy(text).groups["files"].members[0].os == "windows"
