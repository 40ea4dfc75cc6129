"""The drill app's identity in infra/azure/drill.tf is granted exactly what a drill declares it
calls (quiesce_azure.restorer.drill_permissions: the restorer, the verify hooks, the copy-state
reads), where it declares it; the backup app's identity is granted none of the actions that
create or delete VMs, NICs or disks. The Terraform files are parsed (python-hcl2), not planned."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.terraform import read_module

pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

INFRA = Path(__file__).resolve().parents[2] / "infra" / "azure"
load = partial(read_module, INFRA)
DRILL = "${azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id}"
BACKUP = "${azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id}"
#: What only a drill may do: make and remove machines and their parts.
LAUNCHING = {
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/networkSecurityGroups/join/action",
}


def resources(type_: str) -> dict[str, Any]:
    found: dict[str, Any] = load()["resource"].get(type_, {})
    return found


def declared(scope: str) -> set[str]:
    from quiesce_azure.restorer import drill_permissions

    return {p.action for p in drill_permissions() if p.scope == scope}


def test_the_drill_role_has_exactly_what_a_drill_declares_on_the_resource_groups() -> None:
    actions = load()["locals"]["drill_actions"]
    assert actions == sorted(actions), "keep local.drill_actions sorted"
    role = resources("azurerm_role_definition")["drill"]
    (permissions,) = role["permissions"]
    assert permissions == {"actions": "${local.drill_actions}"}
    assert set(actions) == declared("resource_group")
    assert role["assignable_scopes"] == "${[for _, rg in local.target_resource_groups : rg.id]}"


def test_the_network_role_joins_the_restore_sites_and_nothing_else() -> None:
    actions = load()["locals"]["drill_network_actions"]
    assert set(actions) == declared("resource")
    role = resources("azurerm_role_definition")["drill_network"]
    (permissions,) = role["permissions"]
    assert permissions == {"actions": "${local.drill_network_actions}"}
    assignment = resources("azurerm_role_assignment")["drill_network"]
    assert assignment["for_each"] == "${local.drills ? local.drill_join_scopes : toset([])}"
    assert assignment["scope"] == "${each.value}"
    assert assignment["principal_id"] == DRILL


def test_every_drill_assignment_is_for_the_drill_identity_and_none_for_the_backup_app() -> None:
    assignments = resources("azurerm_role_assignment")
    drill = {name: body for name, body in assignments.items() if name.startswith("drill")}
    assert set(drill) == {
        "drill",
        "drill_network",
        "drill_events",
        "drill_state",
        "drill_host_storage",
        "drill_package",
    }
    for name, body in drill.items():
        assert body["principal_id"] == DRILL, name
    for name, body in assignments.items():
        if body["principal_id"] == BACKUP:
            assert "drill" not in body.get("role_definition_id", ""), name


def test_the_backup_apps_role_cannot_launch_or_delete_machines() -> None:
    backup = set(load()["locals"]["adapter_actions"])
    assert not backup & LAUNCHING, backup & LAUNCHING
    assert (
        set(load()["locals"]["drill_actions"]) | set(load()["locals"]["drill_network_actions"])
        >= LAUNCHING
    )


def test_the_drill_app_serves_drills_only_with_its_own_timeout_and_package() -> None:
    app = resources("azurerm_function_app_flex_consumption")["drill"]
    assert app["count"] == "${local.drills ? 1 : 0}"
    settings = app["app_settings"]
    assert settings["QUIESCE_APP"] == "drill"
    assert settings["AzureFunctionsJobHost__functionTimeout"] == "${local.drill_timeout}"
    assert app["identity"] == [{"type": "SystemAssigned"}]
    assert "drill_package[0]" in app["storage_container_endpoint"]
    backup = resources("azurerm_function_app_flex_consumption")["quiesce"]["app_settings"]
    assert "QUIESCE_APP" not in backup  # the code's default: backup
    from quiesce_azure.function_app import APP_ENV, TIMEOUT_ENV

    assert {APP_ENV, TIMEOUT_ENV} <= set(settings)
    timeout = load()["variable"]["drill_timeout_seconds"]
    assert timeout["default"] >= 900


def test_the_drill_locals_evaluate_to_the_policys_drills_sites_and_timeout(
    tmp_path: Path,
) -> None:
    """drill.tf's locals, evaluated by Terraform itself with a policy of two restore sites."""
    import json
    import re
    import shutil

    from tests.azure.test_terraform import applied_output

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("the terraform binary is not installed")
    text = (INFRA / "drill.tf").read_text()
    body = text[text.index("locals {") : text.index('resource "azurerm_service_plan"')]
    variables = (INFRA / "variables.tf").read_text()
    block = re.search(r'^variable "drill_timeout_seconds" \{\n.*?^\}\n', variables, re.S | re.M)
    assert block
    net = "/subscriptions/s/resourceGroups/rg-dr/providers/Microsoft.Network"
    policy = {
        "groups": {
            "orders": {
                "restore": {"network": f"{net}/virtualNetworks/v/subnets/a"},
                "copies": [
                    {"region": "northeurope"},
                    {
                        "region": "swedencentral",
                        "restore": {
                            "network": f"{net}/virtualNetworks/w/subnets/b",
                            "security_groups": [f"{net}/networkSecurityGroups/n"],
                        },
                    },
                ],
            }
        },
        "triggers": [
            {"name": "nightly", "group": "orders", "schedule": "0 4 * * *"},
            {"name": "drill", "group": "orders", "schedule": "0 3 1 * *", "action": "drill"},
        ],
    }
    (tmp_path / "main.tf").write_text(
        f"locals {{\n  policy = jsondecode({json.dumps(json.dumps(policy))})\n}}\n"
        + body
        + block.group(0)
        + 'output "o" {\n  value = {\n'
        + "".join(
            f"    {n} = local.{n}\n"
            for n in ("drills", "drill_triggers", "drill_join_scopes", "drill_timeout")
        )
        + "    rgs = local.drill_join_resource_groups\n  }\n}\n"
    )
    (tmp_path / "terraform.tfvars").write_text("drill_timeout_seconds = 5400\n")
    result = applied_output(terraform, tmp_path)
    assert result["drills"] is True
    assert result["drill_triggers"] == ["drill"]
    assert sorted(result["drill_join_scopes"]) == sorted(
        [
            f"{net}/virtualNetworks/v/subnets/a",
            f"{net}/virtualNetworks/w/subnets/b",
            f"{net}/networkSecurityGroups/n",
        ]
    )
    assert result["rgs"] == ["/subscriptions/s/resourceGroups/rg-dr"]
    assert result["drill_timeout"] == "01:30:00"
