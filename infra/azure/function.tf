# The function app: Flex Consumption, Linux, Python 3.11, system-assigned identity. It reaches
# its own storage, the state table and the event topic with that identity only.

resource "azurerm_service_plan" "quiesce" {
  # checkov:skip=CKV_AZURE_212:A Flex Consumption plan has no instance count: instances start on demand, per trigger.
  # checkov:skip=CKV_AZURE_225:Zone redundancy is an always-ready-instance option of Flex Consumption that a scheduled backup does not need: a trigger that finds no instance starts one, and a run cut off by a zone failure is closed by the group's next run.
  name                = "asp-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

resource "azurerm_function_app_flex_consumption" "quiesce" {
  # Public network access stays on: it is how Event Grid and Azure Monitor reach the triggers
  # (the Event Grid extension's key and the alert function's key protect them).
  name                = local.function_app_name
  resource_group_name = local.resource_group_name
  location            = var.location
  service_plan_id     = azurerm_service_plan.quiesce.id

  runtime_name           = "python"
  runtime_version        = "3.11"
  instance_memory_in_mb  = var.instance_memory_in_mb
  maximum_instance_count = var.maximum_instance_count

  # The package (its own account), and the host's own storage (AzureWebJobsStorage), through
  # the identity.
  storage_container_type                     = "blobContainer"
  storage_container_endpoint                 = "${azurerm_storage_account.package.primary_blob_endpoint}${azurerm_storage_container.package.name}"
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
    # APPLICATIONINSIGHTS_CONNECTION_STRING is written by the provider from site_config (naming
    # it here too gives a permanent diff).
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(local.function_app_name) <= 32
      error_message = "Function app names longer than 32 characters may collide in their host ids: set function_app_name."
    }
  }
}
