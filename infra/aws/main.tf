# Quiesce on AWS: three Lambda functions started by EventBridge Scheduler schedules, deployment
# events and alarms; state in DynamoDB, run events on a custom EventBridge bus, hooks through SSM
# Run Command and the guest hook runner that a State Manager association installs on the
# instances. docs/aws-deploy.md describes every resource and the IAM model.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  name        = "${var.name_prefix}-${var.policy_name}"
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  source_root = coalesce(var.source_root, "${path.module}/../..")

  package_file  = coalesce(var.package_file, "${local.source_root}/dist/quiesce-aws.zip")
  document_file = "${local.source_root}/functions/aws/quiesce_aws/ssm_document.yaml"
  runner_file   = "${local.source_root}/shared/quiesce/guest/quiesce_guest.py"
  library_file  = "${local.source_root}/shared/quiesce/hooklib/quiesce_hooks.py"

  event_bus_name      = coalesce(var.event_bus_name, local.name)
  schedule_group_name = local.name

  # The three functions share one package and one role; each is started by one kind of event.
  functions = {
    schedule = {
      handler     = "quiesce_aws.handler.schedule_handler"
      description = "Quiesce ${var.policy_name}: runs the group of an EventBridge Scheduler schedule's trigger"
    }
    deploy = {
      handler     = "quiesce_aws.handler.deploy_handler"
      description = "Quiesce ${var.policy_name}: runs the groups of deploy triggers on CodeDeploy/CodePipeline events"
    }
    alert = {
      handler     = "quiesce_aws.handler.alert_handler"
      description = "Quiesce ${var.policy_name}: runs the groups of alert triggers on CloudWatch alarms"
    }
  }
  function_names = { for kind, _ in local.functions : kind => "${local.name}-${kind}" }

  covered_regions = distinct(concat([var.region], var.additional_regions))

  # The schedule, deploy and alert handlers refuse a run unless max_freeze_seconds plus this
  # margin is left (quiesce_aws.handler.RUN_MARGIN_SECONDS).
  run_margin_seconds = 60
  groups_that_cannot_start = sort([
    for name, g in var.groups : name
    if g.max_freeze_seconds + local.run_margin_seconds > var.function_timeout
  ])
  groups_that_may_be_cut_off = sort([
    for name, g in var.groups : name
    if g.max_freeze_seconds + g.durability_timeout_seconds + local.run_margin_seconds > var.function_timeout
  ])
}

# Fails the plan, before anything changes, when the inputs do not fit together.
resource "terraform_data" "checks" {
  input = var.policy_sha256

  lifecycle {
    precondition {
      condition     = filesha256(var.policy_file) == var.policy_sha256
      error_message = "${var.policy_file} changed after the tfvars were generated: run scripts/aws_triggers.py (and scripts/package_aws.py) again."
    }
    precondition {
      condition     = length(setsubtract(var.member_regions, local.covered_regions)) == 0
      error_message = "The policy has members in ${join(", ", setsubtract(var.member_regions, local.covered_regions))}, where no SSM document or runner association is deployed: add a modules/regional instance for each and list it in additional_regions (docs/aws-deploy.md, Members in other regions)."
    }
    precondition {
      condition     = length(local.groups_that_cannot_start) == 0
      error_message = "The functions would refuse every run of ${join(", ", local.groups_that_cannot_start)}: max_freeze_seconds + ${local.run_margin_seconds} s exceeds function_timeout (${var.function_timeout} s)."
    }
    precondition {
      condition     = length(local.name) <= 48
      error_message = "<name_prefix>-<policy_name> is ${length(local.name)} characters; at most 48 fit AWS's name limits: use a shorter name_prefix."
    }
  }
}

# A warning, not an error: a run that outlasts the function is killed while it waits for its
# snapshots to complete; the next run of the group closes it (docs/aws-deploy.md, Long runs).
check "runs_fit_in_the_function_timeout" {
  assert {
    condition     = length(local.groups_that_may_be_cut_off) == 0
    error_message = "Runs of ${join(", ", local.groups_that_may_be_cut_off)} may outlast function_timeout (${var.function_timeout} s) while they wait for their snapshots: lower their durability_timeout_seconds to at most function_timeout - max_freeze_seconds - ${local.run_margin_seconds} (docs/aws-deploy.md, Long runs)."
  }
}
