# Logs and traces of the function app, and the action group that sends alerts to it.

resource "azurerm_log_analytics_workspace" "quiesce" {
  name                = "log-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "quiesce" {
  name                = "appi-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  workspace_id        = azurerm_log_analytics_workspace.quiesce.id
  application_type    = "other"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# The function's HTTP alert endpoint, with its function key: Azure Monitor posts the common
# alert schema to it. The key is read from the running app (so only with wire_triggers, once
# the package is published) and is kept in the Terraform state: protect the state.
data "azurerm_function_app_host_keys" "quiesce" {
  count = var.wire_triggers ? 1 : 0

  name                = azurerm_function_app_flex_consumption.quiesce.name
  resource_group_name = local.resource_group_name
}

resource "azurerm_monitor_action_group" "alert" {
  count = var.wire_triggers ? 1 : 0

  name                = "ag-${local.name}"
  resource_group_name = local.resource_group_name
  location            = "global"
  short_name          = substr("quiesce${local.suffix}", 0, 12)
  tags                = local.tags

  azure_function_receiver {
    name                     = "quiesce-alert"
    function_app_resource_id = azurerm_function_app_flex_consumption.quiesce.id
    function_name            = var.alert_function_name
    http_trigger_url         = "https://${azurerm_function_app_flex_consumption.quiesce.default_hostname}/api/${var.alert_route}?code=${data.azurerm_function_app_host_keys.quiesce[0].default_function_key}"
    use_common_alert_schema  = true
  }
}
