# Two storage accounts, reached with Entra ID only (no shared keys):
# - "quiesce": the state table and the Functions host's own blobs (AzureWebJobsStorage: leases
#   for timers, host keys);
# - "package": the container Flex Consumption runs the deployment package from, apart, so that
#   the host's blob role on its own account does not reach the code it runs (iam.tf).

resource "azurerm_storage_account" "quiesce" {
  # checkov:skip=CKV_AZURE_33:No queues are used (no queue triggers, Flex Consumption keeps no content share); queue logging would log nothing.
  # checkov:skip=CKV_AZURE_59:Public network access is needed: a Flex Consumption app without VNet integration reaches storage over its public endpoint; only Entra ID principals with a data role get in (shared keys are disabled). Use function_subnet_id and a private endpoint to close it.
  # checkov:skip=CKV_AZURE_206:Replication is var.storage_replication_type (default ZRS); GRS does not protect against what a backup catalog needs (the VM restore points and snapshots themselves stay in their regions).
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; a customer-managed key needs a Key Vault and is an option for the operator, not a default.
  # checkov:skip=CKV2_AZURE_33:No private endpoint by default, for the same reason as CKV_AZURE_59.
  name                     = local.storage_account_name
  resource_group_name      = local.resource_group_name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type

  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  # Flex Consumption runs the host and the package with the app's managed identity, so nothing
  # needs a shared key: the account is reachable with Entra ID only.
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  tags = local.tags
}

# Quiesce's catalog: runs, recovery points, group locks, trigger claims, the event outbox.
resource "azurerm_storage_table" "state" {
  # checkov:skip=CKV2_AZURE_20:Table reads, writes and deletes are logged to Log Analytics by the diagnostic setting below; the check wants azurerm_log_analytics_storage_insights, which needs the account key this account does not have.
  name                 = local.table_name
  storage_account_name = azurerm_storage_account.quiesce.name
}

resource "azurerm_storage_account" "package" {
  # checkov:skip=CKV_AZURE_33:No queues are used in the package account; queue logging would log nothing.
  # checkov:skip=CKV_AZURE_59:Public network access is needed: a Flex Consumption app without VNet integration reaches its deployment storage over the public endpoint; only Entra ID principals with a data role get in (shared keys are disabled).
  # checkov:skip=CKV_AZURE_206:Replication is var.storage_replication_type (default ZRS); the package is rebuilt from the source tree by every deployment.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; a customer-managed key needs a Key Vault and is an option for the operator, not a default.
  # checkov:skip=CKV2_AZURE_33:No private endpoint by default, for the same reason as CKV_AZURE_59.
  name                     = local.package_storage_account_name
  resource_group_name      = local.resource_group_name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  tags = local.tags
}

# Flex Consumption runs the function app from the package in this container.
resource "azurerm_storage_container" "package" {
  # checkov:skip=CKV2_AZURE_21:Blob writes and deletes (who replaced the package) are logged by the diagnostic setting below; reads are the host's own traffic at every start and are left out.
  name                  = "package"
  storage_account_id    = azurerm_storage_account.package.id
  container_access_type = "private"
}

# Who read or changed the catalog, who wrote the host's blobs, and who replaced the package:
# resource logs of the table and blob services, in the deployment's Log Analytics workspace.
resource "azurerm_monitor_diagnostic_setting" "table" {
  name                       = "quiesce-audit"
  target_resource_id         = "${azurerm_storage_account.quiesce.id}/tableServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.quiesce.id

  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}

resource "azurerm_monitor_diagnostic_setting" "blob" {
  name                       = "quiesce-audit"
  target_resource_id         = "${azurerm_storage_account.quiesce.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.quiesce.id

  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}

resource "azurerm_monitor_diagnostic_setting" "package" {
  name                       = "quiesce-audit"
  target_resource_id         = "${azurerm_storage_account.package.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.quiesce.id

  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}
