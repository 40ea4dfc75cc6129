"""infra/gcp is formatted Terraform that fits the code it deploys (python-hcl2, no provider)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from quiesce.policy import parse_policy
from tests.terraform import only, read_module

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "gcp"
load_configuration = partial(read_module, INFRA)
GUIDE = ROOT / "docs" / "gcp-deploy.md"
TERRAFORM = shutil.which("terraform")


def resources(type_: str) -> dict[str, Any]:
    found: dict[str, Any] = load_configuration()["resource"].get(type_, {})
    return found


def test_terraform_files_are_formatted(tmp_path: Path) -> None:
    if TERRAFORM is None:
        pytest.skip("the terraform binary is not installed")
    rc = tmp_path / "terraform.rc"
    rc.write_text("")
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", "-no-color", str(INFRA)],
        env={**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "CHECKPOINT_DISABLE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt infra/gcp`:\n{result.stdout}"


def test_every_checkov_skip_gives_its_reason() -> None:
    for path in sorted(INFRA.glob("*.tf")):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s*# checkov:skip=CKV2?_GCP_\d+:.{40,}", line), line


def entry_points_of_main(decorator: str = "functions_framework.cloud_event") -> set[str]:
    source = ROOT / "functions" / "gcp" / "quiesce_gcp" / "main.py"
    tree = ast.parse(source.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == decorator for d in node.decorator_list)
    }


def test_the_functions_entry_points_are_main_pys_and_run_python_3_12() -> None:
    functions = load_configuration()["locals"]["functions"]
    assert {f["entry_point"] for f in functions.values()} == entry_points_of_main()
    body = resources("google_cloudfunctions2_function")["quiesce"]
    build = only(body["build_config"])
    assert build["runtime"] == "python312"
    assert build["entry_point"] == "${each.value.entry_point}"
    trigger = only(body["event_trigger"])
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["pubsub_topic"] == "${each.value.topic}"


def test_the_environment_is_what_the_code_reads() -> None:
    from quiesce_gcp import provider
    from quiesce_gcp.main import TIMEOUT_ENV
    from quiesce_gcp.policy_source import POLICY_ENV

    config = only(resources("google_cloudfunctions2_function")["quiesce"]["service_config"])
    assert config["environment_variables"] == "${local.function_environment}"
    env = load_configuration()["locals"]["function_environment"]
    known = {
        POLICY_ENV,
        provider.PROJECT_ENV,
        provider.TOPIC_ENV,
        provider.DATABASE_ENV,
        provider.PREFIX_ENV,
        TIMEOUT_ENV,
    }
    assert set(env) <= known
    assert env[TIMEOUT_ENV] == "${var.function_timeout_seconds}"
    assert {POLICY_ENV, provider.PROJECT_ENV, provider.TOPIC_ENV} <= set(env)
    assert env[provider.TOPIC_ENV] == "${google_pubsub_topic.events.id}"


def test_the_functions_get_the_agent_master_key_from_secret_manager() -> None:
    from quiesce_gcp.signing import MASTER_KEY_ENV

    config = only(resources("google_cloudfunctions2_function")["quiesce"]["service_config"])
    secret = only(config["secret_environment_variables"])
    assert secret["key"] == MASTER_KEY_ENV
    assert secret["secret"] == "${google_secret_manager_secret.agent_master_key.secret_id}"
    version = resources("google_secret_manager_secret_version")["agent_master_key"]
    assert version["secret_data"] == "${var.agent_master_key}"
    variables = load_configuration()["variable"]
    assert variables["agent_master_key"]["sensitive"] is True
    assert variables["agent_key_assignments"]["sensitive"] is True


def guide_policy() -> Any:
    text = GUIDE.read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "version: 1" in b)
    return parse_policy(block)


def test_scheduler_jobs_are_the_policys_schedule_triggers() -> None:
    """local.schedule_triggers, evaluated on the guide's example policy, is one job per
    schedule trigger with its cron and time zone, publishing {"trigger": name}."""
    expression = load_configuration()["locals"]["schedule_triggers"]
    assert "try(local.policy.triggers, [])" in expression
    assert "if try(t.schedule, null) != null" in expression
    assert 'try(t.timezone, "UTC")' in expression
    job = resources("google_cloud_scheduler_job")["trigger"]
    assert job["for_each"] == "${local.schedule_triggers}"
    assert job["schedule"] == "${each.value.schedule}"
    assert job["time_zone"] == "${each.value.time_zone}"
    target = only(job["pubsub_target"])
    assert target["topic_name"] == "${google_pubsub_topic.schedules.id}"
    assert target["data"].replace(" ", "") == "${base64encode(jsonencode({trigger=each.key}))}"
    policy = guide_policy()
    schedules = {t.name: (t.schedule, t.timezone) for t in policy.triggers if t.schedule}
    assert schedules, "the guide's policy has schedule triggers"
    functions = load_configuration()["locals"]["functions"]
    assert functions["schedule"]["topic"] == "${google_pubsub_topic.schedules.id}"


def test_the_scheduler_message_is_what_the_trigger_converter_reads() -> None:
    import base64
    import json

    from quiesce_gcp.triggers import convert

    data = base64.b64encode(json.dumps({"trigger": "nightly"}).encode()).decode()
    event = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/quiesce-schedules",
        "data": {
            "message": {"messageId": "1", "data": data, "publishTime": "2026-01-01T00:00:00Z"}
        },
    }
    (converted,) = convert(event)
    assert (converted.kind, converted.trigger) == ("schedule", "nightly")


def test_firestore_is_native_mode_and_the_alert_channel_is_pubsub() -> None:
    db = resources("google_firestore_database")["catalog"]
    assert db["type"] == "FIRESTORE_NATIVE"
    channel = resources("google_monitoring_notification_channel")["alerts"]
    assert channel["type"] == "pubsub"
    assert set(resources("google_pubsub_topic")) >= {"schedules", "events", "alerts"}


def test_on_deploy_takes_cloud_deploy_operations_and_approvals() -> None:
    """Cloud Deploy publishes approvals to their own topic: without a trigger on it, an
    approval never reaches on_deploy."""
    triggers = resources("google_eventarc_trigger")
    topics = {only(only(t["transport"])["pubsub"])["topic"]: t for t in triggers.values()}
    for topic in ("clouddeploy-operations", "clouddeploy-approvals"):
        trigger = topics[f"projects/${{var.project}}/topics/{topic}"]
        destination = only(only(trigger["destination"])["cloud_run_service"])
        assert destination["service"] == (
            '${google_cloudfunctions2_function.quiesce["deploy"].service_config[0].service}'
        )
        assert only(trigger["matching_criteria"])["value"] == (
            "google.cloud.pubsub.topic.v1.messagePublished"
        )
    names = {t["name"] for t in resources("google_pubsub_topic").values()}
    assert {"clouddeploy-operations", "clouddeploy-approvals"} <= names


def test_the_webhook_function_is_mains_http_entry_point_and_gets_its_secret() -> None:
    from quiesce_gcp.signing import MASTER_KEY_ENV
    from quiesce_gcp.webhook import MIN_TOKEN_LENGTH, TOKEN_ENV

    assert entry_points_of_main("functions_framework.http") == {"on_alert_webhook", "on_drill"}
    http_entry_point = "on_alert_webhook"
    function = resources("google_cloudfunctions2_function")["alert_webhook"]
    assert function["for_each"] == "${local.webhook}"
    assert "event_trigger" not in function, "an HTTP function"
    assert only(function["build_config"])["entry_point"] == http_entry_point
    config = only(function["service_config"])
    assert config["environment_variables"] == "${local.function_environment}"
    secrets = {s["key"]: s for s in config["secret_environment_variables"]}
    assert set(secrets) == {MASTER_KEY_ENV, TOKEN_ENV}
    assert secrets[TOKEN_ENV]["secret"] == (
        "${google_secret_manager_secret.webhook_token[each.key].secret_id}"
    )
    version = resources("google_secret_manager_secret_version")["webhook_token"]
    assert version["secret_data"] == "${var.monitoring_webhook_token}"
    variables = load_configuration()["variable"]
    assert variables["monitoring_webhook_token"]["sensitive"] is True
    assert (
        str(MIN_TOKEN_LENGTH)
        in only(variables["monitoring_webhook_token"]["validation"])["condition"]
    )
    assert variables["create_monitoring_webhook"]["default"] is False
    assert load_configuration()["locals"]["webhook"] == (
        '${var.create_monitoring_webhook ? toset(["alert"]) : toset([])}'
    )


def test_only_the_webhook_is_reachable_from_the_internet() -> None:
    functions = resources("google_cloudfunctions2_function")
    assert only(functions["quiesce"]["service_config"])["ingress_settings"] == (
        "ALLOW_INTERNAL_ONLY"
    )
    assert only(functions["alert_webhook"]["service_config"])["ingress_settings"] == "ALLOW_ALL"
    invokers = resources("google_cloud_run_service_iam_member")
    public = {name for name, b in invokers.items() if b["member"] == "allUsers"}
    assert public == {"alert_webhook_public"}
    assert invokers["alert_webhook_public"]["service"] == (
        "${google_cloudfunctions2_function.alert_webhook[each.key].service_config[0].service}"
    )


def test_the_webhook_channel_sends_the_secret_as_its_basic_auth_password() -> None:
    channel = resources("google_monitoring_notification_channel")["webhook"]
    assert channel["type"] == "webhook_basicauth"
    assert channel["labels"]["url"] == (
        "${google_cloudfunctions2_function.alert_webhook[each.key].url}"
    )
    assert only(channel["sensitive_labels"])["password"] == "${var.monitoring_webhook_token}"
