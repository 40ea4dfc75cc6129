# The function app's system-assigned identity gets:
# - the custom role "Quiesce VM backup (<name>)" on each target resource group: exactly the
#   actions the Azure adapters declare (PERMISSIONS in functions/azure/quiesce_azure);
#   tests/azure/test_permissions.py fails when the two differ;
# - EventGrid Data Sender on Quiesce's topic, to publish its run events;
# - Storage Table Data Contributor on the state table only (not the account);
# - Storage Blob Data Owner on the host's storage account, which the Functions host needs to
#   run with an identity instead of a shared key (AzureWebJobsStorage leases and keys); that
#   account holds neither the package nor, for blob roles, the state table;
# - Storage Blob Data Contributor on the package container only: Flex Consumption deploys and
#   reads the package with the app's identity (docs/azure-deploy.md, The IAM model).

locals {
  # What the adapters call on the target resource groups' VMs, disks, snapshots and restore
  # points (and their copies in other regions, with a copy's disk encryption set), and on the
  # managed members there: reading flexible servers and SQL databases
  # (point-in-time restore needs no call at backup time) and creating, listing and deleting
  # share snapshots (the adapter deletes only snapshots whose metadata says Quiesce made them,
  # never a share). Keep sorted; the test compares this list with the adapters' declarations.
  adapter_actions = [
    "Microsoft.Compute/diskEncryptionSets/read",
    "Microsoft.Compute/disks/read",
    "Microsoft.Compute/restorePointCollections/read",
    "Microsoft.Compute/restorePointCollections/restorePoints/delete",
    "Microsoft.Compute/restorePointCollections/restorePoints/read",
    "Microsoft.Compute/restorePointCollections/restorePoints/write",
    "Microsoft.Compute/restorePointCollections/write",
    "Microsoft.Compute/snapshots/delete",
    "Microsoft.Compute/snapshots/read",
    "Microsoft.Compute/snapshots/write",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/runCommands/delete",
    "Microsoft.Compute/virtualMachines/runCommands/read",
    "Microsoft.Compute/virtualMachines/runCommands/write",
    "Microsoft.DBforMySQL/flexibleServers/read",
    "Microsoft.DBforPostgreSQL/flexibleServers/read",
    "Microsoft.Sql/servers/databases/read",
    "Microsoft.Storage/storageAccounts/fileServices/shares/delete",
    "Microsoft.Storage/storageAccounts/fileServices/shares/read",
    "Microsoft.Storage/storageAccounts/fileServices/shares/write",
  ]
}

resource "azurerm_role_definition" "adapters" {
  name        = "Quiesce VM backup (${local.name})"
  scope       = values(local.target_resource_groups)[0].id
  description = "What Quiesce's ${local.name} function app may do in its target resource groups: run hooks on VMs with managed Run Command, create and delete restore points and incremental snapshots, read managed databases, create and delete its own share snapshots."

  permissions {
    actions = local.adapter_actions
  }

  assignable_scopes = [for _, rg in local.target_resource_groups : rg.id]
}

resource "azurerm_role_assignment" "adapters" {
  for_each = local.target_resource_groups

  scope              = each.value.id
  role_definition_id = azurerm_role_definition.adapters.role_definition_resource_id
  principal_id       = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
  principal_type     = "ServicePrincipal"
  description        = "Quiesce ${local.name}: hooks and backups of this resource group's VMs"
}

resource "azurerm_role_assignment" "events" {
  scope                = azurerm_eventgrid_topic.quiesce.id
  role_definition_name = "EventGrid Data Sender"
  principal_id         = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: publish run events"
}

resource "azurerm_role_assignment" "state" {
  scope                = azurerm_storage_table.state.resource_manager_id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the state table"
}

resource "azurerm_role_assignment" "host_storage" {
  scope                = azurerm_storage_account.quiesce.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the Functions host's own storage (leases, host keys)"
}

resource "azurerm_role_assignment" "package" {
  scope                = azurerm_storage_container.package.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Quiesce ${local.name}: the deployment package's container"
}
