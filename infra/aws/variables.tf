# ---------------------------------------------------------------------------------- the policy
# policy_name, policy_file, policy_sha256, member_regions, schedules, event_rules, groups and
# hook_allowlists are written by scripts/aws_triggers.py (quiesce.auto.tfvars.json); do not keep
# them by hand.

variable "policy_name" {
  description = "The policy's `name`. Written by scripts/aws_triggers.py."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.policy_name))
    error_message = "policy_name is a policy name: lowercase letters, digits, '-' and '_'."
  }
}

variable "policy_file" {
  description = "The policy file, relative to this folder. Terraform refuses to plan when its SHA-256 is not policy_sha256 (the tfvars are stale)."
  type        = string
}

variable "policy_sha256" {
  description = "SHA-256 of the policy file the tfvars were generated from. Written by scripts/aws_triggers.py."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.policy_sha256))
    error_message = "policy_sha256 is 64 lowercase hex digits."
  }
}

variable "member_regions" {
  description = "Every region the policy's members live in. Written by scripts/aws_triggers.py."
  type        = list(string)
  default     = []
}

variable "schedules" {
  description = "One EventBridge Scheduler schedule per schedule trigger, by trigger name: the group, cron(...) expression and IANA time zone. Written by scripts/aws_triggers.py."
  type = map(object({
    group       = string
    expression  = string
    timezone    = string
    description = optional(string, "")
  }))
  default = {}

  validation {
    condition     = alltrue([for name, s in var.schedules : can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", name)) && startswith(s.expression, "cron(")])
    error_message = "Schedules are named after their triggers and use cron(...) expressions."
  }
}

variable "event_rules" {
  description = "The deploy and alert rules' event patterns (JSON), by kind. Written by scripts/aws_triggers.py."
  type = map(object({
    pattern  = string
    triggers = optional(list(string), [])
  }))
  default = {}

  validation {
    condition     = alltrue([for kind, _ in var.event_rules : contains(["deploy", "alert"], kind)])
    error_message = "event_rules has the kinds deploy and alert only."
  }
}

variable "hook_allowlists" {
  description = "The hook allowlist (/etc/quiesce/hooks.json) of each member's instances: its region, State Manager targets (tag:<key> or InstanceIds), the members it serves and its JSON content. Written by scripts/aws_triggers.py."
  type = map(object({
    region = string
    targets = list(object({
      key    = string
      values = list(string)
    }))
    members = list(string)
    content = string
  }))
  default = {}

  validation {
    condition     = alltrue([for name, a in var.hook_allowlists : can(regex("^[a-z0-9][a-z0-9_.-]{0,69}$", name)) && length(a.targets) >= 1 && length(a.targets) <= 4])
    error_message = "hook_allowlists are named <group>.<member> and have 1-4 targets: regenerate them with scripts/aws_triggers.py."
  }
}

# ---------------------------------------------------------------------------------- the deployment

variable "region" {
  description = "The region of the functions, the state table, the event bus and the schedules."
  type        = string
}

variable "additional_regions" {
  description = "Other regions where a modules/regional instance provides the SSM documents and the runner association (see docs/aws-deploy.md). Every member region must be var.region or listed here."
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of every resource's name; the resources are named <name_prefix>-<policy_name>[-<part>]."
  type        = string
  default     = "quiesce"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix: up to 20 lowercase letters, digits and '-', starting with a letter."
  }
}

variable "package_file" {
  description = "The Lambda zip built by scripts/package_aws.py. Default: dist/quiesce-aws.zip of this repository."
  type        = string
  default     = null
}

variable "source_root" {
  description = "The Quiesce source tree the SSM documents and the guest hook runner are read from. Default: this repository."
  type        = string
  default     = null
}

variable "instance_tag" {
  description = "The tag that marks the EC2 instances Quiesce may run hooks on: SendCommand is allowed only on instances carrying it, and the runner is installed on exactly those."
  type = object({
    key   = string
    value = string
  })
  default = {
    key   = "quiesce:enabled"
    value = "true"
  }
}

variable "ssm_document_prefix" {
  description = "The SSM documents are named <prefix>-RunHook and <prefix>-InstallRunner. They exist once per account and region: give each deployment in the same account and region its own prefix."
  type        = string
  default     = "Quiesce"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,64}$", var.ssm_document_prefix))
    error_message = "ssm_document_prefix: 3-64 letters, digits, '_', '-' or '.'."
  }
}

variable "event_bus_name" {
  description = "The custom event bus Quiesce publishes its run events to. Default: <name_prefix>-<policy_name>."
  type        = string
  default     = null
}

variable "architecture" {
  description = "The functions' architecture; the zip must be built for it (package_aws.py --architecture)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture is x86_64 or arm64."
  }
}

variable "runtime" {
  description = "The functions' Python runtime; the zip must be built for it (package_aws.py --python)."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.11", "python3.12"], var.runtime)
    error_message = "runtime is python3.11 or python3.12."
  }
}

variable "function_timeout" {
  description = "Seconds a function may run. A run needs at least its group's max_freeze_seconds + 60 s, and waits up to durability_timeout_seconds for its snapshots (see docs/aws-deploy.md, Long runs)."
  type        = number
  default     = 900

  validation {
    condition     = var.function_timeout >= 120 && var.function_timeout <= 900
    error_message = "function_timeout is 120-900 seconds."
  }
}

variable "function_memory" {
  description = "MB of memory per function (CPU grows with it)."
  type        = number
  default     = 512

  validation {
    condition     = var.function_memory >= 256 && var.function_memory <= 10240
    error_message = "function_memory is 256-10240 MB."
  }
}

variable "reserved_concurrency" {
  description = "Concurrent executions reserved for each function; null: none reserved (the account's unreserved pool). Group locks already keep one run per group."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Days the functions' logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "log_level" {
  description = "The functions' log level (POWERTOOLS_LOG_LEVEL)."
  type        = string
  default     = "INFO"
}

variable "tracing" {
  description = "Send X-Ray traces of the functions."
  type        = bool
  default     = true
}

variable "max_event_age_seconds" {
  description = "How late a trigger may still start a run: a schedule or event not delivered to its function by then is dropped (and, where possible, sent to the dead-letter queue) instead of freezing the application at an unexpected time."
  type        = number
  default     = 900

  validation {
    condition     = var.max_event_age_seconds >= 60 && var.max_event_age_seconds <= 21600
    error_message = "max_event_age_seconds is 60-21600."
  }
}

variable "create_alarm_topic" {
  description = "Create an SNS topic whose messages (CloudWatch alarm notifications) go to the alert function; point alarm actions at it to use alert triggers without EventBridge."
  type        = bool
  default     = false
}

variable "alarm_action_arns" {
  description = "CloudWatch alarm ARNs (wildcards allowed) that may invoke the alert function directly as their alarm action."
  type        = list(string)
  default     = []
}

variable "runner_association_schedule" {
  description = "How often State Manager re-applies the runner installation (it also runs when an instance gains the tag)."
  type        = string
  default     = "rate(1 day)"
}

variable "vpc_config" {
  description = "Run the functions in these subnets (they need routes or VPC endpoints to EC2, SSM, DynamoDB, EventBridge, SQS, KMS, CloudWatch Logs and X-Ray). null: not in a VPC."
  type = object({
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
  default = null
}

variable "code_signing_config_arn" {
  description = "A Lambda code signing configuration to enforce on the functions (the zip must then be signed by AWS Signer)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the state table (the catalog of recovery points) from deletion."
  type        = bool
  default     = true
}

variable "groups" {
  description = "Each group's max_freeze_seconds and durability_timeout_seconds, checked against function_timeout. Written by scripts/aws_triggers.py."
  type = map(object({
    max_freeze_seconds         = number
    durability_timeout_seconds = number
  }))
  default = {}
}

# ---------------------------------------------------------------------------------- drills
# drill_schedules, drill_regions, restore_subnets and restore_security_groups are written by
# scripts/aws_triggers.py from the policy's drill triggers and `restore:` sites.

variable "drill_schedules" {
  description = "One EventBridge Scheduler schedule per drill trigger (action: drill), by trigger name: the group, the region of the copy it drills (\"\": the group's own), cron(...) expression and IANA time zone; each starts the drill function. Written by scripts/aws_triggers.py."
  type = map(object({
    group       = string
    region      = optional(string, "")
    expression  = string
    timezone    = string
    description = optional(string, "")
  }))
  default = {}

  validation {
    condition     = alltrue([for name, s in var.drill_schedules : can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", name)) && startswith(s.expression, "cron(")])
    error_message = "Drill schedules are named after their triggers and use cron(...) expressions."
  }
}

variable "drill_regions" {
  description = "The regions drills restore in (the groups' own and their copies'): each needs the run-hook document for the verify hooks. Written by scripts/aws_triggers.py."
  type        = list(string)
  default     = []
}

variable "restore_subnets" {
  description = "The subnet ids of the policy's restore sites: the drill role launches copies into these only. Written by scripts/aws_triggers.py."
  type        = list(string)
  default     = []
}

variable "restore_security_groups" {
  description = "The security group ids of the policy's restore sites: the only ones the drill role gives its copies. Written by scripts/aws_triggers.py."
  type        = list(string)
  default     = []
}

variable "restore_instance_profile" {
  description = "An instance profile (ARN) for every restored copy instead of the original's, e.g. one that only allows SSM. null: each copy gets its original's (recorded with the point)."
  type        = string
  default     = null
}

variable "restore_instance_roles" {
  description = "The IAM role names the restored copies' instance profiles carry: those of the originals' instance profiles (each copy gets its original's) or of restore_instance_profile. The drill role may pass only these, and only to EC2. Empty: any role of the account, to EC2 only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for role in var.restore_instance_roles : can(regex("^[\\w+=,.@/-]{1,512}$", role)) && !strcontains(role, "*")])
    error_message = "restore_instance_roles holds role names (with their path, if any), without wildcards."
  }
}

variable "drill_timeout" {
  description = "Seconds the drill function may run: launching the copies, waiting for their SSM agents, verifying and deleting them must fit (at least 600; Lambda allows 900)."
  type        = number
  default     = 900

  validation {
    condition     = var.drill_timeout >= 120 && var.drill_timeout <= 900
    error_message = "drill_timeout is 120-900 seconds (Lambda's limit)."
  }
}
