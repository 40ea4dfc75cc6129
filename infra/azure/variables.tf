# ---------------------------------------------------------------------------------- the policy

variable "policy_file" {
  description = "The policy file, relative to this folder. Terraform reads its name, its members' resource groups and its groups' timings from it; the function app reads the copy in its package."
  type        = string
  default     = "../../policy.yaml"
}

variable "policy_setting" {
  description = "The QUIESCE_POLICY app setting: where the function app finds the policy (policy.yaml: the copy in its package)."
  type        = string
  default     = "policy.yaml"
}

variable "target_resource_groups" {
  description = "The resource groups whose VMs Quiesce backs up: the custom role is assigned on each and nowhere else. subscription_id defaults to the deployment's; deploy_events = false skips the group's Event Grid system topic (deploy triggers then see no events of it)."
  type = list(object({
    name            = string
    subscription_id = optional(string)
    deploy_events   = optional(bool, true)
  }))

  validation {
    condition     = length(var.target_resource_groups) > 0
    error_message = "List at least one target resource group."
  }
}

# ---------------------------------------------------------------------------------- the deployment

variable "subscription_id" {
  description = "The subscription of Quiesce's own resources. null: ARM_SUBSCRIPTION_ID or the Azure CLI's current subscription."
  type        = string
  default     = null
}

variable "location" {
  description = "The region of the function app, storage account, topic and monitoring resources."
  type        = string
}

variable "existing_resource_group_name" {
  description = "Deploy into this existing resource group instead of creating rg-<name_prefix>-<policy name>."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every resource's name; resources are named <kind>-<name_prefix>-<policy name>."
  type        = string
  default     = "quiesce"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix: up to 20 lowercase letters, digits and '-', starting with a letter."
  }
}

variable "function_app_name" {
  description = "The function app's (globally unique) name. Default: <name_prefix>-<policy name>-<6 hex digits>."
  type        = string
  default     = null
}

variable "storage_account_name" {
  description = "The storage account's (globally unique) name. Default: <name_prefix><policy name> (letters and digits, 18 at most) and 6 hex digits."
  type        = string
  default     = null
}

variable "table_name" {
  description = "The state table. Default: quiesce<policy name> (letters and digits)."
  type        = string
  default     = null
}

variable "storage_replication_type" {
  description = "The storage account's replication."
  type        = string
  default     = "ZRS"
}

variable "function_timeout_seconds" {
  description = "The function timeout set in the package's host.json (functionTimeout): Terraform checks the groups' max_freeze_seconds and durability_timeout_seconds against it."
  type        = number
  default     = 1800

  validation {
    condition     = var.function_timeout_seconds >= 120
    error_message = "function_timeout_seconds is at least 120."
  }
}

variable "instance_memory_in_mb" {
  description = "Memory of each Flex Consumption instance."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_in_mb)
    error_message = "instance_memory_in_mb is 512, 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = "How many instances the app may scale out to (group locks already keep one run per group)."
  type        = number
  default     = 40
}

variable "function_subnet_id" {
  description = "A subnet for the app's VNet integration (it then needs routes to Resource Manager, storage, Event Grid and Application Insights). null: none."
  type        = string
  default     = null
}

variable "wire_triggers" {
  description = "Create the Event Grid subscriptions of the deploy trigger. They need the app's code deployed (Event Grid checks the function exists): apply with false first, publish the package, then apply with true (docs/azure-deploy.md)."
  type        = bool
  default     = true
}

variable "deploy_function_name" {
  description = "The function app's Event Grid trigger function that receives Resource Manager deployment events (quiesce_azure.function_app)."
  type        = string
  default     = "deploy_events"
}

variable "alert_function_name" {
  description = "The function app's HTTP trigger function that receives Azure Monitor alerts (quiesce_azure.function_app)."
  type        = string
  default     = "monitor_alerts"
}

variable "alert_route" {
  description = "The alert function's route, under /api/."
  type        = string
  default     = "alerts"
}

variable "max_event_age_minutes" {
  description = "How late a deployment event may still start a run; Event Grid drops it after that."
  type        = number
  default     = 15

  validation {
    condition     = var.max_event_age_minutes >= 1 && var.max_event_age_minutes <= 1440
    error_message = "max_event_age_minutes is 1-1440."
  }
}

variable "log_retention_days" {
  description = "Days the logs and traces are kept (Log Analytics and Application Insights)."
  type        = number
  default     = 90

  validation {
    condition     = contains([30, 60, 90, 120, 180, 270, 365, 550, 730], var.log_retention_days)
    error_message = "log_retention_days is one of 30, 60, 90, 120, 180, 270, 365, 550, 730."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------- drills

variable "drill_timeout_seconds" {
  description = "The drill app's functionTimeout (its AzureFunctionsJobHost__functionTimeout app setting): a drill launches VMs, waits for their VM agents, verifies and deletes them. At least 900 s (a drill refuses to start with less than 600 s left)."
  type        = number
  default     = 3600

  validation {
    condition     = var.drill_timeout_seconds >= 900 && var.drill_timeout_seconds <= 86400
    error_message = "drill_timeout_seconds is 900-86400."
  }
}
