# Quiesce's own events (CloudEvents 1.0 on a custom topic), and the deployment events of the
# target resource groups, delivered to the function's Event Grid trigger.

resource "azurerm_eventgrid_topic" "quiesce" {
  # checkov:skip=CKV_AZURE_193:The function app publishes over the public endpoint unless it is VNet-integrated; local (key) auth is off, so only Entra ID principals with EventGrid Data Sender can publish.
  name                          = "egt-${local.name}"
  resource_group_name           = local.resource_group_name
  location                      = var.location
  input_schema                  = "CloudEventSchemaV1_0"
  local_auth_enabled            = false
  public_network_access_enabled = true

  identity {
    type = "SystemAssigned"
  }

  tags = local.tags
}

# One system topic per target resource group (Azure allows one per source): Resource Manager
# events of that group. Groups that already have one: set deploy_events = false and subscribe
# the function to the existing topic (docs/azure-deploy.md, Deployment events).
resource "azurerm_eventgrid_system_topic" "deployments" {
  for_each = { for key, rg in local.target_resource_groups : key => rg if rg.deploy_events }

  name                   = "egst-${local.name}-${substr(sha256(each.key), 0, 8)}"
  resource_group_name    = local.resource_group_name
  location               = "global"
  source_arm_resource_id = each.value.id
  topic_type             = "Microsoft.Resources.ResourceGroups"
  tags                   = local.tags
}

resource "azurerm_eventgrid_system_topic_event_subscription" "deployments" {
  for_each = var.wire_triggers ? azurerm_eventgrid_system_topic.deployments : {}

  name                = "quiesce-deployments"
  system_topic        = each.value.name
  resource_group_name = local.resource_group_name

  # deploy_events reads both schemas; the Event Grid schema reaches it with every azure-functions
  # the worker may bring (CloudEvents 1.0 needs 1.25 or later in the worker).
  event_delivery_schema = "EventGridSchema"

  azure_function_endpoint {
    function_id                       = "${azurerm_function_app_flex_consumption.quiesce.id}/functions/${var.deploy_function_name}"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  # Deployments (ARM templates, Bicep, Terraform's azurerm_resource_group_template_deployment,
  # `az deployment group create`) of this resource group: their writes that succeed, fail or
  # are canceled. Nothing else of the group's write traffic (nor a deployment's validate or
  # what-if action) starts the function.
  included_event_types = [
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceWriteFailure",
    "Microsoft.Resources.ResourceWriteCancel",
  ]

  subject_filter {
    subject_begins_with = "${each.value.source_arm_resource_id}/providers/Microsoft.Resources/deployments/"
    case_sensitive      = false
  }

  advanced_filter {
    string_in {
      key    = "data.operationName"
      values = ["Microsoft.Resources/deployments/write"]
    }
  }

  # A late event must not freeze the application at a time nobody chose: Event Grid gives up
  # after event_time_to_live minutes. Within that, a failed delivery (the host was not up, or a
  # run outlasted Event Grid's wait for the answer) is tried again; the function claims each
  # event id, so a redelivery of an event that already started a run starts nothing.
  retry_policy {
    max_delivery_attempts = 3
    event_time_to_live    = var.max_event_age_minutes
  }
}
