"""infra/aws is well-formed Terraform that validates offline, fits the code it deploys (handlers,
environment, table design, documents), and gets its schedules and event rules from the policy
through scripts/aws_triggers.py."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce.policy import Policy, parse_policy
from quiesce.triggers.router import route
from quiesce_aws import hooks, provider, state
from quiesce_aws.policy_source import POLICY_ENV
from quiesce_aws.triggers import convert
from tests.aws.test_permissions import INFRA, ROOT, Resolver, load_configuration
from tests.terraform import read_module

sys.path.insert(0, str(ROOT / "scripts"))
import aws_triggers

TERRAFORM = shutil.which("terraform")
MIRROR = Path(os.environ.get("QUIESCE_TF_MIRROR", "/opt/tf-plugins"))
PAYLOADS = ROOT / "tests" / "aws" / "payloads"

SAMPLE_POLICY = """\
version: 1
name: shop
groups:
  orders:
    max_freeze_seconds: 30
    durability_timeout_seconds: 600
    members:
      - name: db
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders, tier: db}}
        hooks:
          pre: {run: [/etc/quiesce/hooks/pause.sh], timeout_seconds: 10}
          post: {run: [/etc/quiesce/hooks/resume.sh], timeout_seconds: 10}
  billing:
    consistency: crash
    max_freeze_seconds: 10
    durability_timeout_seconds: 300
    members:
      - {name: ledger, provider: aws, region: us-east-1, select: {instance_ids: [i-0abc12345]}}
triggers:
  - {name: nightly, group: orders, schedule: "0 3 * * 1-5", timezone: Europe/Berlin}
  - {name: weekly, group: billing, schedule: "30 2 * * SUN"}
  - {name: monthly, group: billing, schedule: "15 1 1 * *", timezone: America/New_York}
  - {name: pre-deploy, group: orders, on: deploy, match: {application: orders-*, state: START}}
  - {name: release, group: orders, on: deploy, match: {pipeline: orders-release, state: STARTED}}
  - {name: db-stage, group: billing, on: deploy, match: {pipeline: billing, stage: Deploy}}
  - {name: migrate, group: orders, on: deploy, match: {stage: Prod, action: Migrate*}}
  - {name: disk-alarm, group: orders, on: alert, match: {alarm: "orders-db-*", state: ALARM}}
  - {name: cpu-alarm, group: billing, on: alert, match: {alarm: "Server*"}}
  - {name: web-ok, group: orders, on: alert, match: {alarm: orders-web-*, condition: resolved}}
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(SAMPLE_POLICY)


def generated(policy: Policy, text: str = SAMPLE_POLICY) -> dict[str, Any]:
    return aws_triggers.tfvars(policy, text.encode(), "policy.yaml")


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return data


# ------------------------------------------------------------------------------ terraform CLI


def terraform(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, *args, "-no-color"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if TERRAFORM is None:
        pytest.skip("the terraform binary is not installed")
    if not (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip(f"no hashicorp/aws provider mirror at {MIRROR} (set QUIESCE_TF_MIRROR)")
    rc = tmp_path_factory.mktemp("terraform") / "terraform.rc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{MIRROR}"\n  }}\n}}\n'
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }


@pytest.fixture(scope="module")
def workdir(offline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of infra/aws, initialised offline, with the sample policy, its generated tfvars
    and a stand-in package."""
    work = tmp_path_factory.mktemp("infra") / "aws"
    shutil.copytree(
        INFRA,
        work,
        ignore=shutil.ignore_patterns(".terraform*", "*.tfvars.json", "*.tfstate*"),
    )
    (work / "policy.yaml").write_text(SAMPLE_POLICY)
    tfvars = work / "quiesce.auto.tfvars.json"
    args = [str(work / "policy.yaml"), "-o", str(tfvars), "--terraform-dir", str(work)]
    assert aws_triggers.main(args) == 0
    (work / "quiesce-aws.zip").write_bytes(b"stand-in")
    init = terraform("init", "-backend=false", "-input=false", cwd=work, env=offline_env)
    assert init.returncode == 0, init.stdout + init.stderr
    return work


def test_terraform_files_are_formatted(offline_env: dict[str, str]) -> None:
    result = terraform(
        "fmt", "-check", "-recursive", "-diff", str(INFRA), cwd=ROOT, env=offline_env
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/aws`:\n{result.stdout}"


def test_the_configuration_validates_offline_with_the_provider_mirror(
    workdir: Path, offline_env: dict[str, str]
) -> None:
    validate = terraform("validate", cwd=workdir, env=offline_env)
    assert validate.returncode == 0, validate.stdout + validate.stderr


def test_the_generated_tfvars_plan_into_schedules_rules_and_functions(
    workdir: Path, offline_env: dict[str, str]
) -> None:
    """infra/aws/tests/plan.tftest.hcl, against a mock provider: the schedules, rules,
    functions and runner come out of the tfvars, and stale tfvars or uncovered member regions
    stop the plan."""
    result = terraform(
        "test",
        "-var=region=eu-central-1",
        '-var=additional_regions=["us-east-1"]',
        "-var=package_file=quiesce-aws.zip",
        f"-var=source_root={ROOT}",
        cwd=workdir,
        env=offline_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Success! [1-9]\d* passed, 0 failed", result.stdout), result.stdout


# ---------------------------------------------------------------------------- the tfvars file


def test_there_is_one_schedule_per_schedule_trigger_with_its_cron_and_time_zone(
    policy: Policy,
) -> None:
    assert generated(policy)["schedules"] == {
        "nightly": {
            "group": "orders",
            "expression": "cron(0 3 ? * 2-6 *)",
            "timezone": "Europe/Berlin",
            "description": "Quiesce shop: trigger nightly backs up group orders",
        },
        "weekly": {
            "group": "billing",
            "expression": "cron(30 2 ? * SUN *)",
            "timezone": "UTC",
            "description": "Quiesce shop: trigger weekly backs up group billing",
        },
        "monthly": {
            "group": "billing",
            "expression": "cron(15 1 1 * ? *)",
            "timezone": "America/New_York",
            "description": "Quiesce shop: trigger monthly backs up group billing",
        },
    }


def test_the_tfvars_carry_the_policy_name_hash_regions_and_group_timings(policy: Policy) -> None:
    data = generated(policy)
    assert data["policy_name"] == "shop"
    assert data["groups"] == {
        "billing": {"max_freeze_seconds": 10, "durability_timeout_seconds": 300},
        "orders": {"max_freeze_seconds": 30, "durability_timeout_seconds": 600},
    }
    assert re.fullmatch(r"[0-9a-f]{64}", data["policy_sha256"])
    assert data["member_regions"] == ["eu-central-1", "us-east-1"]
    assert set(data["event_rules"]) == {"deploy", "alert"}
    assert data["event_rules"]["deploy"]["triggers"] == [
        "db-stage",
        "migrate",
        "pre-deploy",
        "release",
    ]
    assert data["event_rules"]["alert"]["triggers"] == ["cpu-alarm", "disk-alarm", "web-ok"]


def test_the_script_writes_a_tfvars_file_that_terraform_can_check_against_the_policy(
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_bytes(SAMPLE_POLICY.replace("\n", "\r\n").encode())
    out = tmp_path / "tf" / "quiesce.auto.tfvars.json"
    (tmp_path / "tf").mkdir()
    code = aws_triggers.main(
        [str(policy_file), "-o", str(out), "--terraform-dir", str(tmp_path / "tf")]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["policy_file"] == "../policy.yaml"
    # what Terraform's filesha256() of the same file gives (CRLF kept)
    import hashlib

    assert data["policy_sha256"] == hashlib.sha256(policy_file.read_bytes()).hexdigest()


def test_groups_whose_runs_may_outlast_a_lambda_function_are_warned_about(
    policy: Policy,
) -> None:
    assert aws_triggers.long_runs(policy) == []
    slow = parse_policy(SAMPLE_POLICY.replace("durability_timeout_seconds: 600", ""))
    (warning,) = aws_triggers.long_runs(slow)
    assert "group 'orders'" in warning
    assert "at most 810" in warning


def test_terraform_uses_the_handlers_margin_when_it_checks_group_timings() -> None:
    from quiesce_aws.handler import RUN_MARGIN_SECONDS

    assert load_configuration()["locals"]["run_margin_seconds"] == RUN_MARGIN_SECONDS


def test_the_script_refuses_an_invalid_policy_or_one_with_non_aws_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE_POLICY.replace('schedule: "0 3 * * 1-5"', 'schedule: "0 3 * *"'))
    assert aws_triggers.main([str(bad), "-o", "-"]) == 2
    assert "needs 5 fields" in capsys.readouterr().err
    local = tmp_path / "local.yaml"
    local.write_text(
        "version: 1\nname: x\ngroups:\n  g:\n    consistency: crash\n"
        "    members: [{name: m, provider: local, volumes: [/srv]}]\n"
    )
    assert aws_triggers.main([str(local), "-o", "-"]) == 2
    assert "provider local cannot be backed up" in capsys.readouterr().err


# -------------------------------------------------------------------------- the event patterns


def eventbridge_matches(pattern: dict[str, Any], event: Any) -> bool:
    """EventBridge's matching for what aws_triggers generates: exact strings, wildcards,
    anything-but, nested objects and $or."""
    for key, condition in pattern.items():
        if key == "$or":
            if not any(eventbridge_matches(p, event) for p in condition):
                return False
        elif isinstance(condition, dict):
            child = event.get(key) if isinstance(event, dict) else None
            if not isinstance(child, dict) or not eventbridge_matches(condition, child):
                return False
        else:
            value = event.get(key) if isinstance(event, dict) else None
            if value is None:
                return False
            values = value if isinstance(value, list) else [value]
            if not any(leaf_matches(c, v) for c in condition for v in values):
                return False
    return True


def leaf_matches(condition: Any, value: Any) -> bool:
    if isinstance(condition, dict):
        ((kind, operand),) = condition.items()
        if kind == "anything-but":
            return value not in operand
        assert kind == "wildcard", kind
        return isinstance(value, str) and fnmatchcase(value, operand)
    return bool(condition == value)


DETAIL = "detail"
#: AWS's documented EventBridge events (tests/aws/payloads), as they are and with other
#: names and states: (payload, {path in the event: value}).
VARIANTS: list[tuple[str, dict[tuple[str, ...], str]]] = [
    ("codedeploy_deployment_success.json", {}),
    ("codedeploy_deployment_success.json", {(DETAIL, "application"): "orders-api"}),
    (
        "codedeploy_deployment_success.json",
        {(DETAIL, "application"): "orders-api", (DETAIL, "state"): "START"},
    ),
    (
        "codedeploy_deployment_success.json",
        {(DETAIL, "application"): "", (DETAIL, "state"): "START"},
    ),
    (
        "codedeploy_deployment_success.json",
        {(DETAIL, "application"): "billing", (DETAIL, "state"): "START"},
    ),
    ("codepipeline_pipeline_started.json", {}),
    ("codepipeline_pipeline_started.json", {(DETAIL, "pipeline"): "orders-release"}),
    ("codepipeline_pipeline_started.json", {(DETAIL, "pipeline"): "orders-release-2"}),
    (
        "codepipeline_pipeline_started.json",
        {(DETAIL, "pipeline"): "orders-release", (DETAIL, "state"): "SUCCEEDED"},
    ),
    # a stage of the release pipeline starting is not the release starting
    ("codepipeline_stage_started.json", {(DETAIL, "pipeline"): "orders-release"}),
    (
        "codepipeline_stage_started.json",
        {(DETAIL, "pipeline"): "billing", (DETAIL, "stage"): "Deploy"},
    ),
    (
        "codepipeline_stage_started.json",
        {(DETAIL, "pipeline"): "billing", (DETAIL, "stage"): "Build"},
    ),
    ("codepipeline_action_started.json", {}),
    ("codepipeline_action_started.json", {(DETAIL, "action"): "Migrate-db"}),
    (
        "codepipeline_action_started.json",
        {(DETAIL, "action"): "Migrate-db", (DETAIL, "stage"): "Beta"},
    ),
    ("cloudwatch_alarm_state_change.json", {}),
    # the same alarm recovering, or without data: no trigger names state or condition
    ("cloudwatch_alarm_state_change_ok.json", {}),
    ("cloudwatch_alarm_state_change.json", {(DETAIL, "state", "value"): "INSUFFICIENT_DATA"}),
    ("cloudwatch_alarm_state_change.json", {(DETAIL, "alarmName"): "orders-db-disk"}),
    ("cloudwatch_alarm_state_change_ok.json", {(DETAIL, "alarmName"): "orders-db-disk"}),
    ("cloudwatch_alarm_state_change.json", {(DETAIL, "alarmName"): "orders-web-5xx"}),
    ("cloudwatch_alarm_state_change_ok.json", {(DETAIL, "alarmName"): "orders-web-5xx"}),
    ("cloudwatch_alarm_state_change.json", {(DETAIL, "alarmName"): "billing-cpu"}),
]


def variant(name: str, changes: dict[tuple[str, ...], str]) -> dict[str, Any]:
    event = load_event(name)
    for path, value in changes.items():
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return event


@pytest.mark.parametrize(("name", "changes"), VARIANTS)
def test_a_rule_lets_through_exactly_the_events_that_fire_a_trigger(
    policy: Policy, name: str, changes: dict[tuple[str, ...], str]
) -> None:
    event = variant(name, changes)
    (trigger_event,) = convert(event)
    fired = bool(route(policy, trigger_event))
    rule = generated(policy)["event_rules"][trigger_event.kind]
    assert eventbridge_matches(json.loads(rule["pattern"]), event) == fired


def test_an_alarm_trigger_that_names_no_state_lets_only_alarms_through(policy: Policy) -> None:
    """The pattern once let OK through, and the recovery started a backup."""
    pattern = json.loads(generated(policy)["event_rules"]["alert"]["pattern"])
    cpu = next(p for p in pattern["$or"] if p["detail"]["alarmName"] == [{"wildcard": "Server*"}])
    assert cpu["detail"]["state"] == {"value": ["ALARM"]}


@pytest.mark.parametrize(
    ("condition", "states"),
    [
        ("firing", ["ALARM"]),
        ("resolved", ["OK"]),
        ("other", [{"anything-but": ["ALARM", "OK"]}]),
        ("*ed", ["OK"]),
        ("[fr]*", ["ALARM", "OK"]),
        ("*", None),
        ("*i*", ["ALARM"]),
        ("[fo]*", [{"anything-but": ["OK"]}]),
        ("cleared", []),
    ],
)
def test_a_condition_is_filtered_as_the_alarm_states_it_stands_for(
    condition: str, states: list[Any] | None
) -> None:
    policy = parse_policy(
        SAMPLE_POLICY.split("triggers:")[0]
        + "triggers:\n"
        + f"  - {{name: t, group: orders, on: alert, match: {{condition: '{condition}'}}}}\n"
    )
    (trigger,) = policy.triggers
    assert aws_triggers.alarm_states(trigger) == states


def test_a_trigger_that_names_a_state_is_filtered_on_that_state_only() -> None:
    policy = parse_policy(
        SAMPLE_POLICY.split("triggers:")[0]
        + "triggers:\n  - {name: t, group: orders, on: alert, match: {state: OK}}\n"
    )
    pattern = json.loads(aws_triggers.event_rules(policy)["alert"]["pattern"])
    assert pattern["detail"] == {"state": {"value": ["OK"]}}


def test_a_suppressed_composite_alarm_reaches_the_function_which_ignores_it(
    policy: Policy,
) -> None:
    """EventBridge is not asked to filter actionsSuppressedBy (a superset is always safe)."""
    event = variant(
        "cloudwatch_composite_alarm_suppressed.json", {(DETAIL, "alarmName"): "Server1"}
    )
    (trigger_event,) = convert(event)
    pattern = json.loads(generated(policy)["event_rules"]["alert"]["pattern"])
    assert eventbridge_matches(pattern, event)
    assert route(policy, trigger_event) == []


def test_stage_events_reach_only_triggers_that_name_a_stage_and_action_events_an_action(
    policy: Policy,
) -> None:
    pattern = json.loads(generated(policy)["event_rules"]["deploy"]["pattern"])
    other_action = variant(
        "codepipeline_action_started.json",
        {(DETAIL, "pipeline"): "billing", (DETAIL, "stage"): "Deploy"},
    )
    assert not eventbridge_matches(pattern, other_action)
    detail_types = {t for p in pattern["$or"] for t in p["detail-type"]}
    assert detail_types == {
        "CodeDeploy Deployment State-change Notification",
        "CodePipeline Pipeline Execution State Change",
        "CodePipeline Stage Execution State Change",
        "CodePipeline Action Execution State Change",
    }


@pytest.mark.parametrize(
    "match",
    [
        {"application": "orders-?"},
        {"application": "[ob]*"},
        {"application": "*"},
        {"state": ""},
        {"region": "eu-*"},
        {"provider": "code*"},
        {"deployment_group": "prod*", "state": "START"},
    ],
)
def test_a_rule_never_drops_an_event_its_trigger_fires_on(match: dict[str, str]) -> None:
    policy = parse_policy(
        SAMPLE_POLICY.split("triggers:")[0]
        + "triggers:\n"
        + f"  - {{name: t, group: orders, on: deploy, match: {json.dumps(match)}}}\n"
    )
    pattern = json.loads(generated(policy)["event_rules"]["deploy"]["pattern"])
    event = load_event("codedeploy_deployment_success.json")
    event["detail"]["deploymentGroup"] = "production"
    for application in ("orders-a", "orders-api", "billing", ""):
        event["detail"]["application"] = application
        (trigger_event,) = convert(event)
        if route(policy, trigger_event):
            assert eventbridge_matches(pattern, event), (match, application)


def test_a_trigger_no_aws_event_can_fire_is_left_out_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = parse_policy(
        SAMPLE_POLICY.split("triggers:")[0]
        + "triggers:\n  - {name: sev, group: orders, on: alert, match: {severity: high}}\n"
    )
    warnings: list[str] = []
    assert aws_triggers.event_rules(policy, warnings.append) == {}
    assert "severity" in warnings[0]


def test_an_action_trigger_that_names_no_stage_is_left_out_with_the_hint() -> None:
    """Action events name their stage, and a trigger that does not name `stage` fires only on
    pipeline-level events."""
    policy = parse_policy(
        SAMPLE_POLICY.split("triggers:")[0]
        + "triggers:\n  - {name: act, group: orders, on: deploy, match: {action: Migrate}}\n"
    )
    warnings: list[str] = []
    assert aws_triggers.event_rules(policy, warnings.append) == {}
    assert "unless it also names stage" in warnings[0]


def test_an_oversized_pattern_falls_back_to_filtering_by_event_type() -> None:
    long_name = "x" * 60
    triggers = "".join(
        f"  - {{name: t{i}, group: orders, on: alert, match: {{alarm: a-{i:04d}-{long_name}}}}}\n"
        for i in range(80)
    )
    policy = parse_policy(SAMPLE_POLICY.split("triggers:")[0] + "triggers:\n" + triggers)
    warnings: list[str] = []
    rules = aws_triggers.event_rules(policy, warnings.append)
    assert json.loads(rules["alert"]["pattern"]) == {
        "detail-type": ["CloudWatch Alarm State Change"],
        "source": ["aws.cloudwatch"],
    }
    assert "4096" in warnings[0]


# ------------------------------------------------------------ the configuration fits the code


def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_configuration()["resource"]
    return resources


def test_each_function_runs_its_handler_on_python_3_12_with_the_environment_the_code_reads() -> (
    None
):
    from quiesce_aws import handler

    config = load_configuration()
    functions = config["locals"]["functions"]
    for kind, entry in functions.items():
        module, _, name = entry["handler"].rpartition(".")
        assert module == "quiesce_aws.handler"
        assert callable(getattr(handler, name)), entry["handler"]
        assert name == f"{kind}_handler"
    body = resources()["aws_lambda_function"]["quiesce"]
    assert config["variable"]["runtime"]["default"] == "python3.12"
    assert body["runtime"] == "${var.runtime}"
    (environment,) = body["environment"]
    assert environment["variables"] == "${local.function_environment}"
    variables = config["locals"]["function_environment"]
    for name in (
        POLICY_ENV,
        provider.TABLE_ENV,
        provider.EVENT_BUS_ENV,
        provider.SSM_DOCUMENT_ENV,
        provider.REGION_ENV,
    ):
        assert name in variables, name
    assert variables[POLICY_ENV] == "policy.json"  # what scripts/package_aws.py bundles
    assert body["dead_letter_config"][0]["target_arn"] == "${aws_sqs_queue.dead_letters.arn}"


def test_the_table_is_the_one_the_state_store_defines() -> None:
    """The Terraform table, translated to CreateTable arguments, is state.table_definition()."""
    table = resources()["aws_dynamodb_table"]["state"]

    def key_schema(hash_key: str, range_key: str) -> list[dict[str, str]]:
        return [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ]

    def projection(index: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"ProjectionType": index["projection_type"]}
        if "non_key_attributes" in index:
            out["NonKeyAttributes"] = index["non_key_attributes"]
        return out

    as_create_table = {
        "TableName": "t",
        "BillingMode": table["billing_mode"],
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in table["attribute"]
        ],
        "KeySchema": key_schema(table["hash_key"], table["range_key"]),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": i["name"],
                "KeySchema": key_schema(i["hash_key"], i["range_key"]),
                "Projection": projection(i),
            }
            for i in table["global_secondary_index"]
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": i["name"],
                "KeySchema": key_schema(table["hash_key"], i["range_key"]),
                "Projection": projection(i),
            }
            for i in table["local_secondary_index"]
        ],
    }
    assert as_create_table == state.table_definition("t")


def test_the_table_expires_items_by_ttl_and_is_recoverable_and_encrypted() -> None:
    table = resources()["aws_dynamodb_table"]["state"]
    assert table["ttl"][0] == {"attribute_name": "ttl", "enabled": True}
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0] == {
        "enabled": True,
        "kms_key_arn": "${aws_kms_key.quiesce.arn}",
    }


def test_the_documents_are_created_from_the_adapters_file_under_the_names_they_send() -> None:
    config = load_configuration()
    resolver = Resolver(config)
    assert resolver.text(config["locals"]["run_hook_document"]) == hooks.RUN_HOOK_DOCUMENT
    assert (
        resolver.text(config["locals"]["install_runner_document"]) == hooks.INSTALL_RUNNER_DOCUMENT
    )
    text = hooks.DOCUMENT_FILE.read_text()
    assert hooks.SHA256_PLACEHOLDER == "__RUNNER_SHA256__"
    assert hooks.HOOKS_SHA256_PLACEHOLDER == "__HOOKS_SHA256__"
    assert hooks.SHA256_PLACEHOLDER in config["locals"]["document_text"]
    assert "local.runner_sha256" in config["locals"]["document_text"]
    assert hooks.HOOKS_SHA256_PLACEHOLDER in config["locals"]["documents"]
    assert "local.library_sha256" in config["locals"]["documents"]
    assert hooks.HOOKS_SHA256_PLACEHOLDER in text
    documents = yaml.safe_load(text)
    assert {"run_hook", "install_runner"} <= set(documents)
    assert config["locals"]["runner_file"].endswith("/shared/quiesce/guest/quiesce_guest.py")
    assert config["locals"]["library_file"].endswith("/shared/quiesce/hooklib/quiesce_hooks.py")


def test_the_runner_url_fits_the_install_documents_source_pattern() -> None:
    config = load_configuration()
    url_template = config["locals"]["runner_url"]
    key = "runner/" + "a" * 64 + "/quiesce_guest.py"
    assert config["locals"]["runner_key"] == "runner/${local.runner_sha256}/quiesce_guest.py"
    url = (
        url_template.replace("${aws_s3_bucket.runner.bucket}", "quiesce-shop-runner-2026112900")
        .replace("${var.region}", "eu-central-1")
        .replace("${data.aws_partition.current.dns_suffix}", "amazonaws.com")
        .replace("${local.runner_key}", key)
    )
    source = hooks.load_documents("0" * 64)["install_runner"]["parameters"]["SourceUrl"]
    assert re.fullmatch(source["allowedPattern"], url), url


def test_the_library_url_fits_the_install_documents_library_pattern() -> None:
    config = load_configuration()
    key = "library/" + "a" * 64 + "/quiesce_hooks.py"
    assert config["locals"]["library_key"] == "library/${local.library_sha256}/quiesce_hooks.py"
    url = (
        config["locals"]["library_url"]
        .replace("${aws_s3_bucket.runner.bucket}", "quiesce-shop-runner-2026112900")
        .replace("${var.region}", "eu-central-1")
        .replace("${data.aws_partition.current.dns_suffix}", "amazonaws.com")
        .replace("${local.library_key}", key)
    )
    document = hooks.load_documents("0" * 64, "1" * 64)["install_runner"]
    assert re.fullmatch(document["parameters"]["LibraryUrl"]["allowedPattern"], url), url
    regional = read_module(INFRA / "modules" / "regional")
    association = regional["resource"]["aws_ssm_association"]["install_runner"]
    assert association["parameters"] == {
        "SourceUrl": "${var.runner_url}",
        "Sha256": "${var.runner_sha256}",
        "LibraryUrl": "${var.library_url}",
        "LibrarySha256": "${var.library_sha256}",
    }


def test_a_schedule_is_named_after_its_trigger_in_the_policys_schedule_group() -> None:
    """The schedule function reads the trigger from the schedule's ARN; with the default
    prefix, policy "shop" gets the group of the real Scheduler event fixture."""
    config = load_configuration()
    schedule = resources()["aws_scheduler_schedule"]["trigger"]
    assert schedule["name"] == "${each.key}"
    assert schedule["group_name"] == "${aws_scheduler_schedule_group.quiesce.name}"
    assert schedule["schedule_expression_timezone"] == "${each.value.timezone}"
    assert schedule["flexible_time_window"][0]["mode"] == "OFF"
    config = copy.deepcopy(config)
    config["variable"]["policy_name"]["default"] = "shop"
    group = Resolver(config).text(config["locals"]["schedule_group_name"])
    event = load_event("eventbridge_scheduler.json")
    event["resources"] = [f"arn:aws:scheduler:eu-central-1:123456789012:schedule/{group}/nightly"]
    (trigger_event,) = convert(event)
    assert trigger_event.attributes["schedule_group"] == group == "quiesce-shop"
    assert trigger_event.trigger == "nightly"
    assert schedule["target"][0]["arn"] == '${aws_lambda_function.quiesce["schedule"].arn}'


def test_every_lambda_permission_is_scoped_to_its_source() -> None:
    for name, permission in resources()["aws_lambda_permission"].items():
        assert permission["source_arn"], name
        assert permission["action"] == "lambda:InvokeFunction"


def test_rules_send_deploy_events_to_the_deploy_function_and_alarms_to_the_alert_function() -> None:
    target = resources()["aws_cloudwatch_event_target"]["trigger"]
    assert target["arn"] == "${aws_lambda_function.quiesce[each.key].arn}"
    rule = resources()["aws_cloudwatch_event_rule"]["trigger"]
    assert rule["event_pattern"] == "${each.value.pattern}"
    assert set(load_configuration()["locals"]["functions"]) == {"schedule", "deploy", "alert"}


def test_asynchronous_invocations_that_fail_are_retried_and_failures_are_kept() -> None:
    """A function raises only when its run could not start; Lambda's retry is the redelivery
    that runs it (tests/aws/test_redelivery.py). Function errors are retried by Lambda alone,
    not by the rules' or schedules' retry policies."""
    config = resources()["aws_lambda_function_event_invoke_config"]["quiesce"]
    assert config["maximum_retry_attempts"] == 2
    queue = resources()["aws_sqs_queue"]["dead_letters"]
    assert queue["kms_master_key_id"] == "${aws_kms_key.quiesce.arn}"


def test_log_groups_keep_logs_for_the_configured_retention() -> None:
    group = resources()["aws_cloudwatch_log_group"]["function"]
    assert group["retention_in_days"] == "${var.log_retention_days}"
    assert group["kms_key_id"] == "${aws_kms_key.quiesce.arn}"


def test_the_example_policy_in_the_deployment_guide_is_valid_and_generates_its_schedules() -> None:
    guide = (ROOT / "docs" / "aws-deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
    example = next(b for b in blocks if b.startswith("version: 1"))
    parsed = parse_policy(example)
    data = generated(parsed, example)
    assert set(data["schedules"]) == {t.name for t in parsed.triggers if t.schedule}
    assert all(m.provider == "aws" for g in parsed.groups.values() for m in g.members)
