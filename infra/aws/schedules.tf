# One EventBridge Scheduler schedule per schedule trigger, in a group named for the policy. The
# schedule function reads the trigger's name from the schedule's ARN
# (...:schedule/<group>/<trigger>), so each schedule is named exactly like its trigger.

resource "aws_scheduler_schedule_group" "quiesce" {
  name = local.schedule_group_name
}

resource "aws_scheduler_schedule" "trigger" {
  # checkov:skip=CKV_AWS_297:A schedule carries no input to encrypt (the function gets only the schedule's ARN and time); a customer managed key would also have to be decryptable by the scheduler role, which may do nothing but invoke the function.
  for_each = var.schedules

  name        = each.key
  group_name  = aws_scheduler_schedule_group.quiesce.name
  description = each.value.description != "" ? each.value.description : "Quiesce ${var.policy_name}: trigger ${each.key}"

  schedule_expression          = each.value.expression
  schedule_expression_timezone = each.value.timezone
  state                        = "ENABLED"

  # A backup starts at the chosen time, not somewhere in a window.
  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.quiesce["schedule"].arn
    role_arn = aws_iam_role.scheduler.arn

    retry_policy {
      maximum_event_age_in_seconds = var.max_event_age_seconds
      maximum_retry_attempts       = 3
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.name}-scheduler"
  description        = "EventBridge Scheduler: invokes the Quiesce ${var.policy_name} schedule function, nothing else"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
}

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:scheduler:${var.region}:${local.account_id}:schedule/${local.schedule_group_name}/*"]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-schedule-function"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeTheScheduleFunctionOnly"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.quiesce["schedule"].arn]
  }
}
