# Quiesce on Azure: one Flex Consumption Function App (Python 3.11) started by its timer
# triggers, by Resource Manager deployment events of the target resource groups (Event Grid) and
# by Azure Monitor alerts (an action group posting the common alert schema); state in a Table
# Storage table, run events on an Event Grid custom topic (CloudEvents 1.0), hooks through
# managed Run Command, backups as VM restore points or incremental disk snapshots.
# docs/azure-deploy.md describes every resource and the IAM model.

data "azurerm_client_config" "current" {}

data "azurerm_resource_group" "existing" {
  count = var.existing_resource_group_name == null ? 0 : 1

  name = var.existing_resource_group_name
}

resource "azurerm_resource_group" "quiesce" {
  count = var.existing_resource_group_name == null ? 1 : 0

  name     = "rg-${local.name}"
  location = var.location
  tags     = local.tags
}

locals {
  policy      = yamldecode(file(var.policy_file))
  policy_name = local.policy.name
  name        = "${var.name_prefix}-${local.policy_name}"

  subscription_id     = data.azurerm_client_config.current.subscription_id
  resource_group_name = var.existing_resource_group_name == null ? azurerm_resource_group.quiesce[0].name : data.azurerm_resource_group.existing[0].name
  resource_group_id   = var.existing_resource_group_name == null ? azurerm_resource_group.quiesce[0].id : data.azurerm_resource_group.existing[0].id

  # Globally unique names get a suffix that is stable for one subscription and resource group.
  suffix               = substr(sha256("${local.subscription_id}/${local.resource_group_name}/${local.name}"), 0, 6)
  function_app_name    = coalesce(var.function_app_name, "${substr(local.name, 0, 25)}-${local.suffix}")
  storage_account_name = coalesce(var.storage_account_name, "${substr(replace(lower(local.name), "/[^a-z0-9]/", ""), 0, 18)}${local.suffix}")
  # The package account: the same name with "pk" before the suffix.
  package_storage_account_name = "${substr(replace(lower(local.name), "/[^a-z0-9]/", ""), 0, 16)}pk${local.suffix}"
  table_name                   = coalesce(var.table_name, "quiesce${substr(replace(lower(local.policy_name), "/[^a-z0-9]/", ""), 0, 40)}")

  tags = merge(var.tags, { "quiesce-deployment" = local.name })

  # The resource groups Quiesce may back up, by "<subscription>/<name>".
  target_resource_groups = {
    for rg in var.target_resource_groups :
    "${coalesce(rg.subscription_id, local.subscription_id)}/${rg.name}" => {
      subscription_id = coalesce(rg.subscription_id, local.subscription_id)
      name            = rg.name
      id              = "/subscriptions/${coalesce(rg.subscription_id, local.subscription_id)}/resourceGroups/${rg.name}"
      deploy_events   = rg.deploy_events
    }
  }

  # Every resource group the policy's azure members live in, by "<subscription>/<name>".
  member_resource_groups = distinct(flatten([
    for _, group in local.policy.groups : [
      for member in group.members : "${member.subscription}/${member.resource_group}"
      if member.provider == "azure"
    ]
  ]))
  uncovered_resource_groups = sort([
    for key in local.member_resource_groups : key
    if !contains([for k, _ in local.target_resource_groups : lower(k)], lower(key))
  ])
  non_azure_members = flatten([
    for gname, group in local.policy.groups : [
      for member in group.members : "${gname}/${member.name}" if member.provider != "azure"
    ]
  ])

  # Timers of Linux Consumption and Flex Consumption apps run in UTC; the app does not register
  # a schedule trigger in another time zone.
  schedules_not_in_utc = sort([
    for t in try(local.policy.triggers, []) : t.name
    if try(t.schedule, null) != null && try(t.timezone, "UTC") != "UTC"
  ])

  # A run needs its group's max_freeze_seconds plus this margin before the function's timeout.
  run_margin_seconds = 60
  groups_that_cannot_start = sort([
    for name, g in local.policy.groups : name
    if try(g.max_freeze_seconds, 30) + local.run_margin_seconds > var.function_timeout_seconds
  ])
  groups_that_may_be_cut_off = sort([
    for name, g in local.policy.groups : name
    if try(g.max_freeze_seconds, 30) + try(g.durability_timeout_seconds, 3600) + local.run_margin_seconds > var.function_timeout_seconds
  ])
}

# Fails the plan, before anything changes, when the inputs do not fit together.
resource "terraform_data" "checks" {
  input = filesha256(var.policy_file)

  lifecycle {
    precondition {
      condition     = length(local.uncovered_resource_groups) == 0
      error_message = "The policy has members in ${join(", ", local.uncovered_resource_groups)}, which target_resource_groups does not list: Quiesce would have no rights there (docs/azure-deploy.md, The IAM model)."
    }
    precondition {
      condition     = length(local.non_azure_members) == 0
      error_message = "A policy deployed to Azure has only azure members; these are not: ${join(", ", local.non_azure_members)}."
    }
    precondition {
      condition     = length(local.schedules_not_in_utc) == 0
      error_message = "Timers of a Flex Consumption app run in UTC: give the schedule triggers ${join(", ", local.schedules_not_in_utc)} timezone UTC and a cron expression in UTC (docs/azure-deploy.md, Triggers on Azure)."
    }
    precondition {
      condition     = length(local.groups_that_cannot_start) == 0
      error_message = "The function would refuse every run of ${join(", ", local.groups_that_cannot_start)}: max_freeze_seconds + ${local.run_margin_seconds} s exceeds function_timeout_seconds (${var.function_timeout_seconds} s)."
    }
    precondition {
      condition     = length(local.storage_account_name) >= 3 && length(local.storage_account_name) <= 24
      error_message = "The storage account name ${local.storage_account_name} must have 3-24 lowercase letters and digits: set storage_account_name."
    }
  }
}

# A warning, not an error: a run cut off by the timeout is closed by the group's next run.
check "runs_fit_in_the_function_timeout" {
  assert {
    condition     = length(local.groups_that_may_be_cut_off) == 0
    error_message = "Runs of ${join(", ", local.groups_that_may_be_cut_off)} may outlast function_timeout_seconds (${var.function_timeout_seconds} s) while they wait for their snapshots: lower their durability_timeout_seconds (docs/azure-deploy.md, Limits)."
  }
}
