output "resource_group_name" {
  description = "The resource group of Quiesce's resources."
  value       = local.resource_group_name
}

output "function_app_name" {
  description = "The function app; publish the package to it (docs/azure-deploy.md, step 4)."
  value       = azurerm_function_app_flex_consumption.quiesce.name
}

output "function_app_principal_id" {
  description = "The object id of the function app's system-assigned identity."
  value       = azurerm_function_app_flex_consumption.quiesce.identity[0].principal_id
}

output "state_table" {
  description = "The state table and its endpoint."
  value = {
    name     = azurerm_storage_table.state.name
    endpoint = azurerm_storage_account.quiesce.primary_table_endpoint
  }
}

output "event_topic" {
  description = "Quiesce's Event Grid topic (CloudEvents 1.0): subscribe to it to react to runs."
  value = {
    id       = azurerm_eventgrid_topic.quiesce.id
    endpoint = azurerm_eventgrid_topic.quiesce.endpoint
  }
}

output "action_group_id" {
  description = "Add this action group to the alert rules that should fire alert triggers (null until wire_triggers)."
  value       = one(azurerm_monitor_action_group.alert[*].id)
}

output "role_definition_id" {
  description = "The custom role with the adapters' actions."
  value       = azurerm_role_definition.adapters.role_definition_resource_id
}

output "drill_function_app_name" {
  description = "The drill app (null when the policy has no drill trigger); publish the same package to it."
  value       = one(azurerm_function_app_flex_consumption.drill[*].name)
}

output "drill_principal_id" {
  description = "The object id of the drill app's identity, the only one allowed to launch and delete VMs (null without drills)."
  value       = one(azurerm_function_app_flex_consumption.drill[*].identity[0].principal_id)
}
