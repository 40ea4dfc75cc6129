"""infra/azure is formatted Terraform whose resources fit the code they deploy: the app settings
the function app reads, the events its triggers convert, the alert schema it parses, and the
policy it is deployed with.

There is no azurerm provider to validate or plan against offline, so the files are parsed with
python-hcl2 and checked structurally; `terraform fmt -check` needs no provider.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from quiesce.policy import parse_policy
from tests.azure.test_permissions import INFRA, ROOT, load_configuration, resources
from tests.terraform import only

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

TERRAFORM = shutil.which("terraform")
CHECKOV = (
    os.environ.get("QUIESCE_CHECKOV") or shutil.which("checkov") or "/tmp/checkov-venv/bin/checkov"
)
EVENTS = ROOT / "tests" / "events" / "azure"
GUIDE = ROOT / "docs" / "azure-deploy.md"

APP = "azurerm_function_app_flex_consumption"


def app() -> dict[str, Any]:
    body: dict[str, Any] = resources(APP)["quiesce"]
    return body


# ------------------------------------------------------------------------------ terraform CLI


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
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/azure`:\n{result.stdout}"


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(tmp_path: Path) -> None:
    if not Path(CHECKOV).is_file():
        pytest.skip("checkov is not installed (set QUIESCE_CHECKOV to its executable)")
    out = subprocess.run(
        [CHECKOV, "-d", str(INFRA), "--framework", "terraform", "-o", "json", "--quiet"],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(out.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)


def test_every_checkov_skip_gives_its_reason() -> None:
    for path in sorted(INFRA.glob("*.tf")):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s*# checkov:skip=CKV2?_AZURE_\d+:.{40,}", line), (
                    f"{path.name}: {line.strip()}"
                )


def test_the_module_pins_azurerm_4_and_uses_entra_id_for_storage() -> None:
    text = (INFRA / "versions.tf").read_text()
    assert re.search(r'source\s*=\s*"hashicorp/azurerm"', text)
    assert re.search(r'version\s*=\s*">= 4\.\d+\.\d+, < 5\.0\.0"', text)
    assert re.search(r"storage_use_azuread\s*=\s*true", text)


# ------------------------------------------------------------------------- the function app


def test_the_function_app_is_flex_consumption_python_3_11_with_a_system_assigned_identity() -> None:
    body = app()
    assert only(body["identity"])["type"] == "SystemAssigned"
    assert body["runtime_name"] == "python"
    assert body["runtime_version"] == "3.11"
    plan = resources("azurerm_service_plan")["quiesce"]
    assert (plan["os_type"], plan["sku_name"]) == ("Linux", "FC1")
    assert body["service_plan_id"] == "${azurerm_service_plan.quiesce.id}"
    assert body["https_only"] is True
    assert body["webdeploy_publish_basic_authentication_enabled"] is False


def test_the_function_app_reaches_its_storage_with_its_identity_only() -> None:
    body = app()
    assert body["storage_authentication_type"] == "SystemAssignedIdentity"
    assert body["function_app_storage_uses_managed_identity"] is True
    assert not {"storage_access_key", "function_app_storage_account_access_key"} & set(body)
    assert body["storage_container_endpoint"] == (
        "${azurerm_storage_account.package.primary_blob_endpoint}"
        "${azurerm_storage_container.package.name}"
    )


def test_the_app_settings_are_the_ones_the_code_reads() -> None:
    provider = pytest.importorskip("quiesce_azure.provider", reason="the Azure function code")
    policy_source = pytest.importorskip("quiesce_azure.policy_source")
    settings = app()["app_settings"]
    assert settings == {
        policy_source.POLICY_ENV: "${var.policy_setting}",
        provider.TABLE_ENV: "${azurerm_storage_table.state.name}",
        provider.TABLE_ENDPOINT_ENV: "${azurerm_storage_account.quiesce.primary_table_endpoint}",
        provider.EVENTGRID_ENDPOINT_ENV: "${azurerm_eventgrid_topic.quiesce.endpoint}",
    }
    assert set(settings) == {
        "QUIESCE_POLICY",
        "QUIESCE_TABLE",
        "QUIESCE_TABLE_ENDPOINT",
        "QUIESCE_EVENTGRID_ENDPOINT",
    }
    # No key for the topic: the app publishes with its identity.
    assert provider.EVENTGRID_KEY_ENV not in settings
    # APPLICATIONINSIGHTS_CONNECTION_STRING: the provider writes it from site_config.
    site = only(app()["site_config"])
    assert site["application_insights_connection_string"] == (
        "${azurerm_application_insights.quiesce.connection_string}"
    )
    assert site["minimum_tls_version"] == "1.2"
    assert load_configuration()["variable"]["policy_setting"]["default"] == "policy.yaml"


def test_application_insights_sends_to_the_log_analytics_workspace() -> None:
    insights = resources("azurerm_application_insights")["quiesce"]
    assert insights["workspace_id"] == "${azurerm_log_analytics_workspace.quiesce.id}"


# ----------------------------------------------------------------------- storage and events


def test_the_storage_accounts_take_tls_1_2_entra_id_only_and_no_public_blobs() -> None:
    for name in ("quiesce", "package"):
        account = resources("azurerm_storage_account")[name]
        assert account["min_tls_version"] == "TLS1_2", name
        assert account["https_traffic_only_enabled"] is True, name
        assert account["allow_nested_items_to_be_public"] is False, name
        assert account["shared_access_key_enabled"] is False, name
        assert account["default_to_oauth_authentication"] is True, name
    table = resources("azurerm_storage_table")["state"]
    assert table["storage_account_name"] == "${azurerm_storage_account.quiesce.name}"
    container = resources("azurerm_storage_container")["package"]
    assert container["container_access_type"] == "private"


def test_the_event_topic_takes_cloudevents_from_entra_id_principals_only() -> None:
    topic = resources("azurerm_eventgrid_topic")["quiesce"]
    assert topic["input_schema"] == "CloudEventSchemaV1_0"
    assert topic["local_auth_enabled"] is False


def subscription() -> dict[str, Any]:
    body: dict[str, Any] = resources("azurerm_eventgrid_system_topic_event_subscription")[
        "deployments"
    ]
    return body


def test_each_target_resource_group_gets_a_system_topic_of_its_resource_manager_events() -> None:
    topic = resources("azurerm_eventgrid_system_topic")["deployments"]
    assert topic["topic_type"] == "Microsoft.Resources.ResourceGroups"
    assert topic["source_arm_resource_id"] == "${each.value.id}"
    assert topic["location"] == "global"
    assert "local.target_resource_groups" in topic["for_each"]


def test_the_subscription_sends_deployment_writes_to_the_functions_event_grid_trigger() -> None:
    body = subscription()
    assert set(body["included_event_types"]) == {
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceWriteFailure",
        "Microsoft.Resources.ResourceWriteCancel",
    }
    subject = only(body["subject_filter"])
    assert subject["subject_begins_with"].endswith("/providers/Microsoft.Resources/deployments/")
    assert subject["case_sensitive"] is False
    (condition,) = only(body["advanced_filter"])["string_in"]
    assert condition == {
        "key": "data.operationName",
        "values": ["Microsoft.Resources/deployments/write"],
    }
    endpoint = only(body["azure_function_endpoint"])
    assert endpoint["function_id"] == (
        "${azurerm_function_app_flex_consumption.quiesce.id}/functions/${var.deploy_function_name}"
    )
    assert endpoint["max_events_per_batch"] == 1
    retry = only(body["retry_policy"])
    assert retry["max_delivery_attempts"] == 3
    assert retry["event_time_to_live"] == "${var.max_event_age_minutes}"


def event_grid_delivers(body: dict[str, Any], event: dict[str, Any], prefix: str) -> bool:
    """Event Grid's filtering, for what the subscription uses: event types, a subject prefix
    (case-insensitive) and StringIn on a data field."""
    event_type = event.get("eventType") or event.get("type")
    if event_type not in body["included_event_types"]:
        return False
    if not str(event.get("subject", "")).lower().startswith(prefix.lower()):
        return False
    for condition in only(body["advanced_filter"])["string_in"]:
        node: Any = event
        for key in condition["key"].split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, str) or not any(
            node.lower() == value.lower() for value in condition["values"]
        ):
            return False
    return True


@pytest.mark.parametrize(
    ("fixture", "delivered"),
    [("arm_deployment_eventgrid.json", True), ("arm_deployment_cloudevent.json", False)],
)
def test_a_deployment_write_reaches_the_function_and_a_validation_does_not(
    fixture: str, delivered: bool
) -> None:
    body = subscription()
    event = json.loads((EVENTS / fixture).read_text())
    match = re.match(r"(/subscriptions/[^/]+/resource[gG]roups/[^/]+)/", event["subject"])
    assert match
    source = "/subscriptions/{}/resourceGroups/{}".format(*match.group(1).split("/")[2::2])
    prefix = only(body["subject_filter"])["subject_begins_with"].replace(
        "${each.value.source_arm_resource_id}", source
    )
    assert event_grid_delivers(body, event, prefix) is delivered
    other = prefix.replace("/resourceGroups/", "/resourceGroups/other-")
    assert event_grid_delivers(body, event, other) is False


def test_the_action_group_posts_the_common_alert_schema_to_the_alert_function() -> None:
    group = resources("azurerm_monitor_action_group")["alert"]
    receiver = only(group["azure_function_receiver"])
    assert receiver["use_common_alert_schema"] is True
    assert receiver["function_app_resource_id"] == f"${{{APP}.quiesce.id}}"
    assert receiver["function_name"] == "${var.alert_function_name}"
    url = receiver["http_trigger_url"]
    assert url.startswith(
        f"https://${{{APP}.quiesce.default_hostname}}/api/${{var.alert_route}}?code="
    )
    assert not {"webhook_receiver", "email_receiver", "logic_app_receiver"} & set(group)
    # The fixture the alert function converts is the common alert schema.
    alert = json.loads((EVENTS / "monitor_alert_fired.json").read_text())
    assert alert["schemaId"] == "azureMonitorCommonAlertSchema"


def test_event_grid_and_monitor_wiring_waits_for_the_code_when_asked() -> None:
    assert subscription()["for_each"].startswith("${var.wire_triggers ?")
    assert resources("azurerm_monitor_action_group")["alert"]["count"] == (
        "${var.wire_triggers ? 1 : 0}"
    )


# --------------------------------------------------------------------------------- the policy


def test_terraform_refuses_policies_it_cannot_serve() -> None:
    (checks,) = resources("terraform_data").values()
    conditions = " ".join(p["condition"] for p in only(checks["lifecycle"])["precondition"])
    assert "local.uncovered_resource_groups" in conditions
    assert "local.non_azure_members" in conditions
    assert "local.groups_that_cannot_start" in conditions
    assert "local.schedules_not_in_utc" in conditions


def test_the_function_names_and_route_are_the_function_apps() -> None:
    """Read from the source: importing the app reads the bundled policy."""
    source = ROOT / "functions" / "azure" / "quiesce_azure" / "function_app.py"
    if not source.is_file():
        pytest.skip("quiesce_azure/function_app.py is not there yet")
    text = source.read_text()
    variables = load_configuration()["variable"]
    deploy = variables["deploy_function_name"]["default"]
    alert = variables["alert_function_name"]["default"]
    route = variables["alert_route"]["default"]
    assert re.search(
        rf'@app\.function_name\(name="{deploy}"\)\s*@app\.event_grid_trigger\(', text
    ), f"no Event Grid trigger function named {deploy}"
    assert re.search(
        rf'@app\.function_name\(name="{alert}"\)\s*@app\.route\(route="{route}", '
        r'methods=\["POST"\], auth_level=func\.AuthLevel\.FUNCTION\)',
        text,
    ), f"no POST function {alert} on /api/{route} with a function key"


def guide_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guides_example_policy_is_valid_and_its_tfvars_cover_its_resource_groups() -> None:
    example = next(b for b in guide_blocks("yaml") if b.startswith("version: 1"))
    policy = parse_policy(example)
    members = [m for g in policy.groups.values() for m in g.members]
    assert members
    tfvars = next(b for b in guide_blocks("hcl") if "target_resource_groups" in b)
    values = hcl2.load(io.StringIO(tfvars))
    targets = {
        (t.get("subscription_id", "").strip('"'), t["name"].strip('"'))
        for t in values["target_resource_groups"]
    }
    for member in members:
        assert member.provider == "azure"
        assert any(
            name.lower() == member.resource_group.lower() and sub in ("", member.subscription)
            for sub, name in targets
        ), f"{member.resource_group} is missing from the guide's target_resource_groups"


def test_the_guide_documents_every_variable() -> None:
    text = GUIDE.read_text()
    for name in load_configuration()["variable"]:
        assert f"`{name}`" in text, f"docs/azure-deploy.md does not document `{name}`"


def test_nothing_here_names_more_than_the_module_declares() -> None:
    """Outputs refer to resources that exist (a typo would only show at plan time)."""
    config = load_configuration()
    declared = {f"{t}.{n}" for t, named in config["resource"].items() for n in named}
    for name, output in config["output"].items():
        for ref in re.findall(r"(azurerm_[a-z_]+\.[a-z_]+)", json.dumps(output["value"])):
            assert ref in declared, f"output {name}: {ref}"
    assert fnmatchcase(config["locals"]["function_app_name"], "*${local.suffix}*")


# ------------------------------------------------- main.tf's policy checks, evaluated offline

STUB_SUBSCRIPTION = "8a2c1b4e-5f6d-4e3a-9b7c-1d2e3f4a5b6c"


def evaluate_locals(tmp_path: Path, policy_text: str, targets: str) -> dict[str, Any]:
    """main.tf's locals, evaluated by Terraform itself in a module that needs no provider: the
    client config and resource group are stubbed, everything else is the file's text."""
    if TERRAFORM is None:
        pytest.skip("the terraform binary is not installed")
    main = (INFRA / "main.tf").read_text()
    body = main[main.index("locals {") : main.index("# Fails the plan")]
    body = body.replace(
        "data.azurerm_client_config.current.subscription_id", f'"{STUB_SUBSCRIPTION}"'
    )
    body = re.sub(r"  resource_group_(name|id) +=.*\n", '  resource_group_\\1 = "rg"\n', body)
    (tmp_path / "policy.yaml").write_text(policy_text)
    text = (INFRA / "variables.tf").read_text()
    blocks = ""
    for name in (
        "policy_file",
        "target_resource_groups",
        "name_prefix",
        "function_app_name",
        "storage_account_name",
        "table_name",
        "tags",
        "function_timeout_seconds",
    ):
        block = re.search(rf'^variable "{name}" {{\n.*?^}}\n', text, flags=re.S | re.M)
        assert block, name
        blocks += block.group(0)
    (tmp_path / "terraform.tfvars").write_text(
        f'policy_file = "policy.yaml"\ntarget_resource_groups = {targets}\n'
    )
    (tmp_path / "main.tf").write_text(
        body
        + blocks
        + 'output "o" {\n  value = {\n'
        + "".join(
            f"    {n} = local.{n}\n"
            for n in (
                "uncovered_resource_groups",
                "non_azure_members",
                "schedules_not_in_utc",
                "groups_that_cannot_start",
                "groups_that_may_be_cut_off",
                "function_app_name",
                "storage_account_name",
                "table_name",
            )
        )
        + "  }\n}\n"
    )
    return applied_output(TERRAFORM, tmp_path)


def applied_output(terraform: str, folder: Path) -> dict[str, Any]:
    """Applies the provider-free module in `folder` (no CLI configuration, no checkpoint call)
    and returns its output `o`; a failed init or apply fails the test with Terraform's words."""
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(folder / "none.rc"),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }
    (folder / "none.rc").write_text("")
    for args in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        done = subprocess.run(
            [terraform, *args, "-no-color"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    out = subprocess.run(
        [terraform, "output", "-json", "o"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def guide_policy() -> str:
    return next(b for b in guide_blocks("yaml") if b.startswith("version: 1"))


def test_the_guides_policy_passes_every_check_with_both_resource_groups(tmp_path: Path) -> None:
    targets = '[{ name = "shop-data-rg" }, { name = "SHOP-APP-RG", subscription_id = null }]'
    result = evaluate_locals(tmp_path, guide_policy(), targets)
    assert result["uncovered_resource_groups"] == []
    assert result["non_azure_members"] == []
    assert result["schedules_not_in_utc"] == []
    assert result["groups_that_cannot_start"] == []
    assert result["groups_that_may_be_cut_off"] == []
    assert re.fullmatch(r"quiesce-shop-[0-9a-f]{6}", result["function_app_name"])
    assert re.fullmatch(r"quiesceshop[0-9a-f]{6}", result["storage_account_name"])
    assert result["table_name"] == "quiesceshop"


def test_a_missing_resource_group_a_local_time_zone_and_a_long_freeze_are_caught(
    tmp_path: Path,
) -> None:
    policy = (
        guide_policy()
        .replace('schedule: "0 2 * * *"}', 'schedule: "0 2 * * *", timezone: Europe/Berlin}')
        .replace("max_freeze_seconds: 120 ", "max_freeze_seconds: 1790")
    )
    assert "Europe/Berlin" in policy
    assert "max_freeze_seconds: 1790" in policy
    result = evaluate_locals(tmp_path, policy, '[{ name = "shop-data-rg" }]')
    assert result["uncovered_resource_groups"] == [f"{STUB_SUBSCRIPTION}/shop-app-rg"]
    assert result["schedules_not_in_utc"] == ["nightly"]
    assert result["groups_that_cannot_start"] == ["orders"]
    assert result["groups_that_may_be_cut_off"] == ["orders"]
