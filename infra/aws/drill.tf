# Drills: a function of its own, started by the drill triggers' schedules, that restores a
# group's newest recovery point into isolation (in its own region, or a copy's), runs the
# verify hooks on the copies, measures the recovery time and deletes everything it made.
#
# It has its own role. The backup functions' role never gets RunInstances, RegisterImage or
# TerminateInstances; the drill role never gets CreateSnapshots, DeleteSnapshot on Quiesce's
# snapshots, or SendCommand to the production instances. Its "drill" policy is exactly what the
# adapters a drill runs declare (Ec2Restorer, the state store, the bus, DescribeSnapshots for
# the copies' states); tests/aws/test_drill_permissions.py keeps the two equal. Everything it
# creates must carry quiesce:restore, everything it deletes must carry it already.

locals {
  drill_function_name = "${local.name}-drill"
}

resource "aws_cloudwatch_log_group" "drill" {
  name              = "/aws/lambda/${local.drill_function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.quiesce.arn
}

resource "aws_iam_role" "drill" {
  name               = "${local.name}-drill"
  description        = "Quiesce ${var.policy_name}: the drill function (restores into isolation, verifies, deletes what it made)"
  assume_role_policy = data.aws_iam_policy_document.functions_trust.json
}

resource "aws_iam_role_policy" "drill" {
  name   = "quiesce-drill"
  role   = aws_iam_role.drill.id
  policy = data.aws_iam_policy_document.drill.json
}

data "aws_iam_policy_document" "drill" {
  # DynamoDbStateStore (the points, on which drills are recorded; trigger claims; the outbox)
  # and EventBridgePublisher (quiesce.drill.completed / quiesce.drill.failed), after the
  # statements below.
  override_policy_documents = [data.aws_iam_policy_document.state_and_events.json]

  # Ec2Restorer, and the copies' states (EbsSnapshotter.states): read-only calls without
  # resource-level permissions.
  statement {
    sid = "DescribeWhatDrillsRestoreAndMake"
    actions = [
      "ec2:DescribeImages",
      "ec2:DescribeInstances",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSnapshots",
      "ec2:DescribeVolumes",
      "ssm:DescribeInstanceInformation",
      "ssm:GetCommandInvocation",
      "ssm:ListCommandInvocations",
    ]
    resources = ["*"]
  }

  # Images, copies and inspection volumes only from Quiesce's snapshots ...
  statement {
    sid       = "RestoreOnlyFromQuiesceSnapshots"
    actions   = ["ec2:CreateVolume", "ec2:RegisterImage", "ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # ... registering only images tagged as a restore's ...
  statement {
    sid       = "RegisterOnlyRestoreImages"
    actions   = ["ec2:RegisterImage"]
    resources = ["arn:${local.partition}:ec2:*::image/*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restore"
      values   = ["*"]
    }
  }

  # ... launching only from those images ...
  statement {
    sid       = "LaunchOnlyFromRestoreImages"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:*::image/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  # ... instances and volumes tagged as a restore's ...
  statement {
    sid     = "LaunchOnlyTaggedCopies"
    actions = ["ec2:RunInstances"]
    resources = [
      "arn:${local.partition}:ec2:*:${local.account_id}:instance/*",
      "arn:${local.partition}:ec2:*:${local.account_id}:volume/*",
    ]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restore"
      values   = ["*"]
    }
  }

  # ... whose network interface is tagged and has no public IP ...
  statement {
    sid       = "LaunchWithoutPublicIp"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:network-interface/*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restore"
      values   = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "ec2:AssociatePublicIpAddress"
      values   = ["false"]
    }
  }

  # ... into the restore sites' subnets and security groups only (the policy's `restore:`
  # sites, written by scripts/aws_triggers.py).
  dynamic "statement" {
    for_each = length(var.restore_subnets) > 0 ? [1] : []

    content {
      sid       = "LaunchIntoTheRestoreSubnets"
      actions   = ["ec2:RunInstances"]
      resources = [for subnet in var.restore_subnets : "arn:${local.partition}:ec2:*:${local.account_id}:subnet/${subnet}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.restore_security_groups) > 0 ? [1] : []

    content {
      sid       = "LaunchWithTheRestoreSecurityGroups"
      actions   = ["ec2:RunInstances"]
      resources = [for group in var.restore_security_groups : "arn:${local.partition}:ec2:*:${local.account_id}:security-group/${group}"]
    }
  }

  # The copies get the original's instance profile (their SSM agent registers with it), or
  # restore_instance_profile's: the roles named in restore_instance_roles only, to EC2 only.
  dynamic "statement" {
    for_each = length(var.restore_instance_roles) > 0 ? [1] : []

    content {
      sid       = "PassTheCopiesRolesToEc2"
      actions   = ["iam:PassRole"]
      resources = [for role in var.restore_instance_roles : "arn:${local.partition}:iam::${local.account_id}:role/${role}"]

      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ec2.amazonaws.com"]
      }
    }
  }

  # Without restore_instance_roles: any role of the account, to EC2 only.
  dynamic "statement" {
    for_each = length(var.restore_instance_roles) > 0 ? [] : [1]

    content {
      sid       = "PassInstanceProfileRolesToEc2"
      actions   = ["iam:PassRole"]
      resources = ["arn:${local.partition}:iam::${local.account_id}:role/*"]

      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ec2.amazonaws.com"]
      }
    }
  }

  # Tags only as part of the calls that create what they tag.
  statement {
    sid     = "TagOnlyWhileCreating"
    actions = ["ec2:CreateTags"]
    resources = [
      "arn:${local.partition}:ec2:*::image/*",
      "arn:${local.partition}:ec2:*:${local.account_id}:instance/*",
      "arn:${local.partition}:ec2:*:${local.account_id}:volume/*",
      "arn:${local.partition}:ec2:*:${local.account_id}:network-interface/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateVolume", "RegisterImage", "RunInstances"]
    }
  }

  # inspect_on: volumes tagged as a restore's, attached to (and detached from) instances tagged
  # quiesce:inspection=true only.
  statement {
    sid       = "CreateOnlyRestoreVolumes"
    actions   = ["ec2:CreateVolume"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "AttachAndDetachOnlyRestoreVolumes"
    actions   = ["ec2:AttachVolume", "ec2:DetachVolume"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "AttachOnlyToInspectionInstances"
    actions   = ["ec2:AttachVolume", "ec2:DetachVolume"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:inspection"
      values   = ["true"]
    }
  }

  # Cleanup: only what carries quiesce:restore (one statement per kind of resource).
  statement {
    sid       = "TerminateOnlyRestoredCopies"
    actions   = ["ec2:TerminateInstances"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "DeregisterOnlyRestoreImages"
    actions   = ["ec2:DeregisterImage"]
    resources = ["arn:${local.partition}:ec2:*::image/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "DeleteOnlyRestoreVolumes"
    actions   = ["ec2:DeleteVolume"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "DeleteOnlyRestoreNetworkInterfaces"
    actions   = ["ec2:DeleteNetworkInterface"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:network-interface/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  # Never a point's snapshot: those carry no quiesce:restore.
  statement {
    sid       = "DeleteOnlyRestoreSnapshots"
    actions   = ["ec2:DeleteSnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  # Verify hooks: the run-hook document, to the copies and inspection instances only.
  statement {
    sid       = "VerifyWithTheRunHookDocument"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ssm:*:${local.account_id}:document/${local.run_hook_document}"]
  }

  statement {
    sid       = "VerifyOnlyOnRestoredCopies"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringLike"
      variable = "ssm:resourceTag/quiesce:restore"
      values   = ["*"]
    }
  }

  statement {
    sid       = "VerifyOnInspectionInstances"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/quiesce:inspection"
      values   = ["true"]
    }
  }
}

resource "aws_iam_role_policy" "drill_runtime" {
  name   = "lambda-runtime"
  role   = aws_iam_role.drill.id
  policy = data.aws_iam_policy_document.drill_runtime.json
}

# The functions' runtime policy (iam.tf: the dead-letter queue, the key, X-Ray), with the drill
# function's own log group in place of theirs (same sid, so it replaces their statement).
data "aws_iam_policy_document" "drill_runtime" {
  source_policy_documents = [data.aws_iam_policy_document.runtime.json]

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.drill.arn}:*"]
  }
}

resource "aws_lambda_function" "drill" {
  # checkov:skip=CKV_AWS_173:The environment holds only resource names (table, bus, document, policy file, instance profile), no secrets.
  # checkov:skip=CKV_AWS_115:Concurrency follows var.reserved_concurrency like the other functions.
  # checkov:skip=CKV_AWS_272:Code signing follows var.code_signing_config_arn like the other functions.
  # checkov:skip=CKV_AWS_117:A VPC follows var.vpc_config like the other functions.
  function_name = local.drill_function_name
  description   = "Quiesce ${var.policy_name}: drills a group on a drill schedule (restore into isolation, verify, measure, delete)"
  role          = aws_iam_role.drill.arn
  # The schedule front door: the router runs a drill trigger's drill (quiesce.drill).
  handler       = "quiesce_aws.handler.schedule_handler"
  runtime       = var.runtime
  architectures = [var.architecture]
  timeout       = var.drill_timeout
  memory_size   = var.function_memory

  filename         = local.package_file
  source_code_hash = filebase64sha256(local.package_file)

  reserved_concurrent_executions = var.reserved_concurrency == null ? -1 : var.reserved_concurrency
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = merge(
      local.function_environment,
      var.restore_instance_profile == null ? {} : {
        QUIESCE_RESTORE_INSTANCE_PROFILE = var.restore_instance_profile
      },
    )
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dead_letters.arn
  }

  tracing_config {
    mode = var.tracing ? "Active" : "PassThrough"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.drill.name
  }

  dynamic "vpc_config" {
    for_each = var.vpc_config == null ? [] : [var.vpc_config]

    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  depends_on = [
    aws_iam_role_policy.drill,
    aws_iam_role_policy.drill_runtime,
    terraform_data.checks,
    terraform_data.drill_checks,
  ]
}

# A drill is not retried by Lambda: one that failed has recorded its verdict, and one cut off by
# the timeout leaves its resources for `quiesce restore-cleanup <label>` (the label is in the
# log); the next scheduled drill starts afresh.
resource "aws_lambda_function_event_invoke_config" "drill" {
  function_name                = aws_lambda_function.drill.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = var.max_event_age_seconds
}

# One schedule per drill trigger, in the policy's schedule group, named like its trigger (the
# front door reads the trigger's name from the schedule's ARN).
resource "aws_scheduler_schedule" "drill" {
  # checkov:skip=CKV_AWS_297:A schedule carries no input to encrypt (the function gets only the schedule's ARN and time).
  for_each = var.drill_schedules

  name        = each.key
  group_name  = aws_scheduler_schedule_group.quiesce.name
  description = each.value.description != "" ? each.value.description : "Quiesce ${var.policy_name}: drill ${each.key}"

  schedule_expression          = each.value.expression
  schedule_expression_timezone = each.value.timezone
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.drill.arn
    role_arn = aws_iam_role.drill_scheduler.arn

    retry_policy {
      maximum_event_age_in_seconds = var.max_event_age_seconds
      maximum_retry_attempts       = 3
    }
  }
}

resource "aws_iam_role" "drill_scheduler" {
  name               = "${local.name}-drill-scheduler"
  description        = "EventBridge Scheduler: invokes the Quiesce ${var.policy_name} drill function, nothing else"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
}

resource "aws_iam_role_policy" "drill_scheduler" {
  name   = "invoke-drill-function"
  role   = aws_iam_role.drill_scheduler.id
  policy = data.aws_iam_policy_document.drill_scheduler.json
}

data "aws_iam_policy_document" "drill_scheduler" {
  statement {
    sid       = "InvokeTheDrillFunctionOnly"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.drill.arn]
  }
}

resource "terraform_data" "drill_checks" {
  input = var.policy_sha256

  lifecycle {
    precondition {
      condition     = length(setsubtract(var.drill_regions, local.covered_regions)) == 0
      error_message = "Drills restore in ${join(", ", setsubtract(var.drill_regions, local.covered_regions))}, where no run-hook document is deployed for the verify hooks: add a modules/regional instance for each and list it in additional_regions (docs/aws-deploy.md, Drills)."
    }
    precondition {
      condition     = length(var.drill_schedules) == 0 || var.drill_timeout >= 600
      error_message = "A drill needs at least 600 s (launching copies, waiting for their SSM agents, verifying, deleting): raise drill_timeout (at most 900, Lambda's limit)."
    }
  }
}
