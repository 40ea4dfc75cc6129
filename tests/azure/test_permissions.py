"""The function app's identity in infra/azure is granted exactly what the Azure adapters declare
they call (their PERMISSIONS), where they declare it, and nothing else beyond what the Functions
host needs to run them.

The Terraform files are parsed (python-hcl2), not planned: there is no azurerm provider to
validate against, so the tests read the configuration's literal values and references.
- Actions the adapters call on the target resource groups (scope "resource_group") are the
  custom role's actions, assigned on each target resource group and nowhere else.
- Actions on one resource (scope "resource": publishing to the topic, the state table's
  entities) are covered by the built-in role assigned on that resource.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from fnmatch import fnmatchcase
from functools import cache, partial
from pathlib import Path
from typing import Any

import pytest

from tests.terraform import read_module

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "azure"
load_configuration = partial(read_module, INFRA)

IDENTITY = "${azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id}"
TOPIC = "${azurerm_eventgrid_topic.quiesce.id}"
STORAGE = "${azurerm_storage_account.quiesce.id}"
TABLE = "${azurerm_storage_table.state.resource_manager_id}"
PACKAGE = "${azurerm_storage_container.package.id}"

#: The built-in roles the configuration assigns, the scope each is assigned on, and their
#: permissions as Azure defines them (actions and data actions; `*` as in the role).
BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "EventGrid Data Sender": (
        TOPIC,
        frozenset(
            {
                "Microsoft.Authorization/*/read",
                "Microsoft.EventGrid/topics/read",
                "Microsoft.EventGrid/domains/read",
                "Microsoft.EventGrid/partnerNamespaces/read",
                "Microsoft.EventGrid/namespaces/read",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.EventGrid/events/send/action",
            }
        ),
    ),
    "Storage Table Data Contributor": (
        TABLE,
        frozenset(
            {
                "Microsoft.Storage/storageAccounts/tableServices/tables/read",
                "Microsoft.Storage/storageAccounts/tableServices/tables/write",
                "Microsoft.Storage/storageAccounts/tableServices/tables/delete",
                "Microsoft.Storage/storageAccounts/tableServices/tables/entities/read",
                "Microsoft.Storage/storageAccounts/tableServices/tables/entities/write",
                "Microsoft.Storage/storageAccounts/tableServices/tables/entities/delete",
                "Microsoft.Storage/storageAccounts/tableServices/tables/entities/add/action",
                "Microsoft.Storage/storageAccounts/tableServices/tables/entities/update/action",
            }
        ),
    ),
    # Not for the adapters: the Functions host runs with the identity instead of a shared key
    # (AzureWebJobsStorage blobs) ...
    "Storage Blob Data Owner": (
        STORAGE,
        frozenset(
            {
                "Microsoft.Storage/storageAccounts/blobServices/containers/*",
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
            }
        ),
    ),
    # ... and deploys and reads its package (Flex Consumption) with it.
    "Storage Blob Data Contributor": (
        PACKAGE,
        frozenset(
            {
                "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
                "Microsoft.Storage/storageAccounts/blobServices/containers/read",
                "Microsoft.Storage/storageAccounts/blobServices/containers/write",
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
            }
        ),
    ),
}

# ------------------------------------------------------------------------- reading the files


def resources(type_: str) -> dict[str, Any]:
    found: dict[str, Any] = load_configuration()["resource"].get(type_, {})
    return found


# ----------------------------------------------------------------------------- the adapters


@cache
def adapter_classes() -> tuple[type, ...]:
    """Every class of quiesce_azure that declares PERMISSIONS (the adapters), found by reading
    the package's modules: a module that mentions PERMISSIONS is imported, and must import."""
    try:
        package = importlib.import_module("quiesce_azure")
        importlib.import_module("quiesce_azure.permissions")
    except ImportError as exc:
        pytest.skip(f"the Azure adapters are not there yet: {exc.name} cannot be imported")
    classes: list[type] = []
    for info in pkgutil.walk_packages(package.__path__, "quiesce_azure."):
        spec = importlib.util.find_spec(info.name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        if info.name == "quiesce_azure.permissions":
            continue
        if not re.search(r"^\s+PERMISSIONS\b", Path(spec.origin).read_text(encoding="utf-8"), re.M):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == info.name
                and isinstance(vars(value).get("PERMISSIONS"), dict)
            ):
                classes.append(value)
    if not classes:
        pytest.skip(
            "no class of quiesce_azure declares PERMISSIONS yet (the adapters in "
            "quiesce_azure.inventory/hooks/snapshots/events/state are missing)"
        )
    return tuple(sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"))


def declared_permissions() -> list[Any]:
    from quiesce_azure.permissions import declared

    return [p for perms in declared(*adapter_classes()).values() for p in perms]


def builtin_covers(role: str, action: str) -> bool:
    return any(fnmatchcase(action, granted) for granted in BUILTIN_ROLES[role][1])


def custom_role() -> dict[str, Any]:
    definitions = resources("azurerm_role_definition")
    assert set(definitions) == {"adapters", "drill", "drill_network"}, (
        "the custom roles: the adapters', and the drill app's (drill.tf)"
    )
    role: dict[str, Any] = definitions["adapters"]
    return role


def custom_role_actions() -> set[str]:
    """The custom role's actions and data actions, resolved from local.adapter_actions."""
    (permissions,) = custom_role()["permissions"]
    actions = permissions.get("actions", [])
    if actions == "${local.adapter_actions}":
        actions = load_configuration()["locals"]["adapter_actions"]
    return set(actions) | set(permissions.get("data_actions", []))


# ------------------------------------------------------------------------------------ tests


def test_every_adapter_class_declares_its_permissions() -> None:
    from quiesce_azure.permissions import declared

    for cls in adapter_classes():
        assert declared(cls), f"{cls.__name__} declares no PERMISSIONS"


def test_the_custom_role_has_exactly_the_actions_the_adapters_declare_on_resource_groups() -> None:
    """Every declared action not granted by a built-in role on its resource is in the custom
    role, and the custom role holds nothing else."""
    permissions = declared_permissions()
    wanted = {
        p.action
        for p in permissions
        if not (p.scope == "resource" and any(builtin_covers(r, p.action) for r in BUILTIN_ROLES))
    }
    granted = custom_role_actions()
    assert not wanted - granted, f"declared by the adapters but not granted: {wanted - granted}"
    assert not granted - wanted, f"granted but declared by no adapter: {granted - wanted}"


def test_the_adapters_declare_nothing_at_subscription_scope_that_the_role_cannot_give() -> None:
    """The custom role is assigned on the target resource groups only: an action the adapters
    need on a whole subscription would need its own, separate assignment."""
    subscription_wide = sorted(
        {p.action for p in declared_permissions() if p.scope == "subscription"}
    )
    assert not subscription_wide, (
        f"{subscription_wide} are declared at subscription scope: infra/azure grants nothing "
        "there; add a role assigned on the members' subscriptions"
    )


def test_actions_on_one_resource_are_covered_by_the_built_in_role_on_that_resource() -> None:
    for permission in declared_permissions():
        if permission.scope != "resource":
            continue
        covering = [r for r in BUILTIN_ROLES if builtin_covers(r, permission.action)]
        assert covering, (
            f"{permission.action} is declared on one resource but no built-in role grants it"
        )
        assert set(covering) & {"EventGrid Data Sender", "Storage Table Data Contributor"}, (
            f"{permission.action} is only covered by the host's storage role"
        )


def test_the_custom_role_names_each_action_and_denies_nothing_by_exception() -> None:
    (permissions,) = custom_role()["permissions"]
    assert set(permissions) <= {"actions", "data_actions"}, "no not_actions / not_data_actions"
    actions = custom_role_actions()
    assert actions, "the custom role grants something"
    for action in actions:
        assert "*" not in action, f"{action}: the role names every action, no wildcards"
    assert load_configuration()["locals"]["adapter_actions"] == sorted(
        load_configuration()["locals"]["adapter_actions"]
    ), "keep local.adapter_actions sorted"


def test_the_custom_role_is_assignable_and_assigned_on_the_target_resource_groups_only() -> None:
    role = custom_role()
    assert role["assignable_scopes"] == "${[for _, rg in local.target_resource_groups : rg.id]}"
    assert role["scope"] == "${values(local.target_resource_groups)[0].id}"
    assignment = resources("azurerm_role_assignment")["adapters"]
    assert assignment["for_each"] == "${local.target_resource_groups}"
    assert assignment["scope"] == "${each.value.id}"
    assert assignment["role_definition_id"] == (
        "${azurerm_role_definition.adapters.role_definition_resource_id}"
    )
    assert assignment["principal_id"] == IDENTITY
    target = load_configuration()["locals"]["target_resource_groups"]
    assert "/resourceGroups/${rg.name}" in target, target


def test_the_built_in_role_assignments_are_the_named_roles_on_their_resources() -> None:
    """EventGrid Data Sender on the topic, Storage Table Data Contributor on the state table,
    the Functions host's Storage Blob Data Owner on its own account (it runs without shared
    keys) and Storage Blob Data Contributor on the package container; all for the function
    app's identity, and no other assignment."""
    assignments = {
        name: body
        for name, body in resources("azurerm_role_assignment").items()
        if not name.startswith("drill")  # the drill app's (test_drill_permissions.py)
    }
    builtin = {
        (body["role_definition_name"], body["scope"])
        for body in assignments.values()
        if "role_definition_name" in body
    }
    assert builtin == {(role, scope) for role, (scope, _) in BUILTIN_ROLES.items()}
    for name, body in assignments.items():
        assert body["principal_id"] == IDENTITY, name
        assert body["principal_type"] == "ServicePrincipal", name
        assert ("role_definition_name" in body) != ("role_definition_id" in body), name
        assert "condition" not in body or name != "adapters", name
    assert {n for n, b in assignments.items() if "role_definition_id" in b} == {"adapters"}


def test_the_identity_is_the_function_apps_system_assigned_identity() -> None:
    app = resources("azurerm_function_app_flex_consumption")["quiesce"]
    (identity,) = app["identity"]
    assert identity == {"type": "SystemAssigned"}
    assert "azurerm_user_assigned_identity" not in load_configuration()["resource"]


def test_no_data_role_reaches_the_package_from_the_hosts_account_or_the_whole_account() -> None:
    """The host's broad blob role is on an account that holds no package: the package lives in
    its own account, whose only grant is on its container; the state table's role is on the
    table, not the account."""
    config = load_configuration()
    container = config["resource"]["azurerm_storage_container"]["package"]
    assert container["storage_account_id"] == "${azurerm_storage_account.package.id}"
    scopes = {
        body["role_definition_name"]: body["scope"]
        for body in resources("azurerm_role_assignment").values()
        if "role_definition_name" in body
    }
    assert "${azurerm_storage_account.package.id}" not in scopes.values()
    assert [role for role, scope in scopes.items() if scope == STORAGE] == [
        "Storage Blob Data Owner"
    ]
    table = config["resource"]["azurerm_storage_table"]["state"]
    assert table["storage_account_name"] == "${azurerm_storage_account.quiesce.name}"
