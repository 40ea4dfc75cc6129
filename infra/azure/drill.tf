# The drill app: the same package as the backup app, deployed a second time as its own Flex
# Consumption app with its own system-assigned identity, created only when the policy has drill
# triggers (action: drill). Only this identity may create and delete VMs, NICs and disks: the
# backup app's role has none of those actions, and the backup app does not register the drill
# schedules (QUIESCE_APP). docs/azure-deploy.md, Drills.
#
# The drill identity gets:
# - the custom role "Quiesce drill (<name>)" on each target resource group: exactly what the
#   restorer, the verify hooks and the copy-state reads declare (quiesce_azure.restorer:
#   drill_permissions(); tests/azure/test_permissions.py compares the two);
# - the custom role "Quiesce drill network (<name>)" on each subnet and network security group
#   the policy's restore sites name: joining a NIC to them, nothing else;
# - the same data roles as the backup app, on the same resources (its own package container).

locals {
  drill_triggers = sort([
    for t in try(local.policy.triggers, []) : t.name if try(t.action, "backup") == "drill"
  ])
  drills = length(local.drill_triggers) > 0

  # What the drill calls in the target resource groups. Keep sorted.
  drill_actions = [
    "Microsoft.Compute/disks/delete",
    "Microsoft.Compute/disks/read",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints/read",
    "Microsoft.Compute/restorePointCollections/restorePoints/read",
    "Microsoft.Compute/snapshots/read",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/virtualMachines/instanceView/read",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/runCommands/delete",
    "Microsoft.Compute/virtualMachines/runCommands/read",
    "Microsoft.Compute/virtualMachines/runCommands/write",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/networkInterfaces/write",
  ]
  # What the drill calls on the restore sites' subnets and network security groups.
  drill_network_actions = [
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
  ]

  # The restore sites of the policy: each group's restore: and each copy's.
  restore_sites = flatten([
    for _, g in local.policy.groups : concat(
      try(g.restore, null) == null ? [] : [g.restore],
      [for c in try(g.copies, []) : c.restore if try(c.restore, null) != null],
    )
  ])
  # Their subnets and NSGs (resource ids), and the resource groups holding them.
  drill_join_scopes = toset(distinct(flatten([
    for site in local.restore_sites : concat([site.network], try(site.security_groups, []))
  ])))
  drill_join_resource_groups = distinct([
    for id in local.drill_join_scopes : regex("(?i)^(/subscriptions/[^/]+/resourceGroups/[^/]+)/", id)[0]
  ])

  drill_timeout = format(
    "%02d:%02d:%02d",
    floor(var.drill_timeout_seconds / 3600),
    floor(var.drill_timeout_seconds % 3600 / 60),
    var.drill_timeout_seconds % 60,
  )
}

resource "azurerm_service_plan" "drill" {
  # checkov:skip=CKV_AZURE_212:A Flex Consumption plan has no instance count: instances start on demand, per trigger.
  # checkov:skip=CKV_AZURE_225:Zone redundancy is an always-ready-instance option of Flex Consumption that a monthly drill does not need: a drill cut off by a zone failure leaves tagged resources that the next drill's label does not touch and `quiesce restore-cleanup` removes.
  count = local.drills ? 1 : 0

  name                = "asp-${local.name}-drill"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

# The drill app's package: the same zip, in its own container, read with its own identity.
resource "azurerm_storage_container" "drill_package" {
  # checkov:skip=CKV2_AZURE_21:Blob writes and deletes (who replaced the package) are logged by the package account's diagnostic setting; reads are the host's own traffic at every start and are left out.
  count = local.drills ? 1 : 0

  name                  = "drill-package"
  storage_account_id    = azurerm_storage_account.package.id
  container_access_type = "private"
}

resource "azurerm_function_app_flex_consumption" "drill" {
  # Public network access stays on, as for the backup app: the Functions host and deployment
  # reach it there; it has no HTTP or Event Grid function.
  count = local.drills ? 1 : 0

  name                = "${substr(local.function_app_name, 0, 26)}-drill"
  resource_group_name = local.resource_group_name
  location            = var.location
  service_plan_id     = azurerm_service_plan.drill[0].id

  runtime_name           = "python"
  runtime_version        = "3.11"
  instance_memory_in_mb  = var.instance_memory_in_mb
  maximum_instance_count = var.maximum_instance_count

  storage_container_type                     = "blobContainer"
  storage_container_endpoint                 = "${azurerm_storage_account.package.primary_blob_endpoint}${azurerm_storage_container.drill_package[0].name}"
  storage_authentication_type                = "SystemAssignedIdentity"
  function_app_storage_account_name          = azurerm_storage_account.quiesce.name
  function_app_storage_uses_managed_identity = true

  https_only                                     = true
  client_certificate_mode                        = "Optional"
  webdeploy_publish_basic_authentication_enabled = false
  virtual_network_subnet_id                      = var.function_subnet_id

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.quiesce.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
  }

  app_settings = {
    QUIESCE_POLICY             = var.policy_setting
    QUIESCE_TABLE              = azurerm_storage_table.state.name
    QUIESCE_TABLE_ENDPOINT     = azurerm_storage_account.quiesce.primary_table_endpoint
    QUIESCE_EVENTGRID_ENDPOINT = azurerm_eventgrid_topic.quiesce.endpoint
    # only the drill schedules, and a longer functionTimeout than host.json's
    QUIESCE_APP                            = "drill"
    AzureFunctionsJobHost__functionTimeout = local.drill_timeout
  }

  tags = local.tags
}

resource "azurerm_role_definition" "drill" {
  count = local.drills ? 1 : 0

  name        = "Quiesce drill (${local.name})"
  scope       = values(local.target_resource_groups)[0].id
  description = "What Quiesce's ${local.name} drill app may do in its target resource groups: create managed disks from restore points and snapshots, NICs and VMs tagged quiesce:restore, run verify hooks with Run Command, and delete what it tagged."

  permissions {
    actions = local.drill_actions
  }

  assignable_scopes = [for _, rg in local.target_resource_groups : rg.id]
}

resource "azurerm_role_assignment" "drill" {
  for_each = local.drills ? local.target_resource_groups : {}

  scope              = each.value.id
  role_definition_id = azurerm_role_definition.drill[0].role_definition_resource_id
  principal_id       = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type     = "ServicePrincipal"
  description        = "Quiesce ${local.name}: drills launch copies of this resource group's VMs"
}

resource "azurerm_role_definition" "drill_network" {
  count = local.drills && length(local.drill_join_scopes) > 0 ? 1 : 0

  name        = "Quiesce drill network (${local.name})"
  scope       = local.drill_join_resource_groups[0]
  description = "Join a NIC of a Quiesce ${local.name} drill to an isolated subnet or network security group a restore site names."

  permissions {
    actions = local.drill_network_actions
  }

  assignable_scopes = local.drill_join_resource_groups
}

resource "azurerm_role_assignment" "drill_network" {
  for_each = local.drills ? local.drill_join_scopes : toset([])

  scope              = each.value
  role_definition_id = azurerm_role_definition.drill_network[0].role_definition_resource_id
  principal_id       = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type     = "ServicePrincipal"
  description        = "Quiesce ${local.name}: drill copies join this restore site"
}

resource "azurerm_role_assignment" "drill_events" {
  count = local.drills ? 1 : 0

  scope                = azurerm_eventgrid_topic.quiesce.id
  role_definition_name = "EventGrid Data Sender"
  principal_id         = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: publish drill events"
}

resource "azurerm_role_assignment" "drill_state" {
  count = local.drills ? 1 : 0

  scope                = azurerm_storage_table.state.resource_manager_id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the state table (points and their drills)"
}

resource "azurerm_role_assignment" "drill_host_storage" {
  count = local.drills ? 1 : 0

  scope                = azurerm_storage_account.quiesce.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the drill app's Functions host storage (leases, host keys)"
}

resource "azurerm_role_assignment" "drill_package" {
  count = local.drills ? 1 : 0

  scope                = azurerm_storage_container.drill_package[0].id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_function_app_flex_consumption.drill[0].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the drill app's deployment package container"
}
