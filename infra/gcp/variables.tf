variable "project" {
  description = "The project of the functions, topics, catalog and buckets."
  type        = string
}

variable "region" {
  description = "Region of the functions, Cloud Scheduler jobs and buckets."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "quiesce"
}

variable "policy_file" {
  description = "The policy (YAML); its schedule triggers become Cloud Scheduler jobs."
  type        = string
  default     = "policy.yaml"
}

variable "policy_setting" {
  description = "QUIESCE_POLICY: the policy's path inside the function source, or gs://bucket/object."
  type        = string
  default     = "policy.yaml"
}

variable "function_source_zip" {
  description = "The functions' source archive (main.py, requirements.txt, quiesce, quiesce_gcp, the policy)."
  type        = string
}

variable "function_timeout_seconds" {
  description = "Timeout of each function (event-driven 2nd gen functions run up to 540 s)."
  type        = number
  default     = 540
}

variable "firestore_database" {
  description = "The Firestore database of the catalog: a new one, or \"(default)\" with create_firestore_database = false."
  type        = string
  default     = "quiesce"
}

variable "create_firestore_database" {
  description = "false: reuse an existing Firestore database (native mode) named firestore_database."
  type        = bool
  default     = true
}

variable "firestore_location" {
  description = "Location of a new Firestore database."
  type        = string
  default     = "eur3"
}

variable "create_clouddeploy_topic" {
  description = "Create the clouddeploy-operations and clouddeploy-approvals topics Cloud Deploy publishes to (false: they exist)."
  type        = bool
  default     = true
}

variable "cloud_builds_topic" {
  description = "The topic Cloud Build publishes build notifications to (created when the Cloud Build API is enabled)."
  type        = string
  default     = "cloud-builds"
}

variable "member_service_accounts" {
  description = "Service accounts of the member VMs: they read the guest runner, the hook library and the agent from the guest bucket."
  type        = list(string)
  default     = []
}

variable "agent_master_key" {
  description = "The agent master key, 64+ hex digits (openssl rand -hex 32): kept in Secret Manager for the functions; scripts/gcp_os_policy.py derives each VM's signing key from it."
  type        = string
  sensitive   = true
  validation {
    condition     = can(regex("^[0-9a-fA-F]{64,}$", var.agent_master_key))
    error_message = "agent_master_key must be at least 64 hexadecimal digits (openssl rand -hex 32)."
  }
}

variable "agent_instances" {
  description = "Instances of agent members selected by labels (member name => instance names): setMetadata is granted on exactly these and the members selected by name."
  type        = map(list(string))
  default     = {}
}

variable "agent_key_assignments" {
  description = "Written by scripts/gcp_os_policy.py: each agent instance's signing key, installed by its own OS policy assignment."
  type = map(object({
    project  = string
    location = string
    instance = string
    key      = string
  }))
  default   = {}
  sensitive = true
}

variable "os_policy_assignments" {
  description = "Written by scripts/gcp_os_policy.py (os-policy.auto.tfvars.json): what OS Config installs on the members."
  type        = any
  default     = {}
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key for the topics and buckets (null: Google-managed keys)."
  type        = string
  default     = null
}

variable "create_monitoring_webhook" {
  description = "Also create on_alert_webhook, an HTTP function for a Cloud Monitoring webhook notification channel (webhook_basicauth, with monitoring_webhook_token as its password). Cloud Monitoring calls it from the internet: it is reachable by anyone and refuses every request without the token."
  type        = bool
  default     = false
}

variable "monitoring_webhook_token" {
  description = "The webhook channel's secret, 32+ characters (openssl rand -hex 32): kept in Secret Manager for on_alert_webhook (QUIESCE_WEBHOOK_TOKEN). Needed when create_monitoring_webhook is true."
  type        = string
  default     = null
  sensitive   = true
  validation {
    condition     = try(length(var.monitoring_webhook_token) >= 32, var.monitoring_webhook_token == null)
    error_message = "monitoring_webhook_token must be at least 32 characters (openssl rand -hex 32)."
  }
}

variable "drill_timeout_seconds" {
  description = "Timeout of the drill function (an HTTP function: up to 3600 s). A drill needs at least 600 s; Cloud Scheduler waits for it up to 1800 s."
  type        = number
  default     = 1800

  validation {
    condition     = var.drill_timeout_seconds >= 600 && var.drill_timeout_seconds <= 3600
    error_message = "drill_timeout_seconds: between 600 (the least a drill needs) and 3600 (the HTTP function limit)."
  }
}

variable "inspection_instances" {
  description = "Inspection instances a restore site may name with inspect_on (projects/P/zones/Z/instances/NAME): the drill account may attach disks to these only."
  type        = list(string)
  default     = []
}
