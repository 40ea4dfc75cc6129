# Quiesce's own event bus, and the rules that turn deployments and alarms into runs.

# Run events (CloudEvents: quiesce.run.started, quiesce.run.completed, ...) are published here;
# add rules on this bus to notify people or start other work.
resource "aws_cloudwatch_event_bus" "quiesce" {
  name = local.event_bus_name
}

# AWS services publish to the default bus. One rule per trigger kind; its pattern (generated
# from the policy's triggers by scripts/aws_triggers.py) lets through only events that can fire
# one of them: alarms entering ALARM unless a trigger names `state` or `condition`, CodePipeline
# stage and action events only for triggers that name a stage (and an action). The function
# matches the triggers again.
resource "aws_cloudwatch_event_rule" "trigger" {
  for_each = var.event_rules

  name           = "${local.name}-${each.key}"
  description    = substr("Quiesce ${var.policy_name}: ${each.key} events for the triggers ${join(", ", each.value.triggers)}", 0, 512)
  event_bus_name = "default"
  event_pattern  = each.value.pattern
}

resource "aws_cloudwatch_event_target" "trigger" {
  for_each = var.event_rules

  rule           = aws_cloudwatch_event_rule.trigger[each.key].name
  event_bus_name = "default"
  target_id      = "quiesce-${each.key}"
  arn            = aws_lambda_function.quiesce[each.key].arn

  retry_policy {
    maximum_event_age_in_seconds = var.max_event_age_seconds
    maximum_retry_attempts       = 3
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letters.arn
  }
}

resource "aws_lambda_permission" "rule" {
  for_each = var.event_rules

  statement_id  = "quiesce-${each.key}-rule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.quiesce[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.trigger[each.key].arn
}

# Optional: CloudWatch alarm notifications through SNS.
resource "aws_sns_topic" "alarms" {
  count = var.create_alarm_topic ? 1 : 0

  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.quiesce.arn
}

resource "aws_sns_topic_policy" "alarms" {
  count = var.create_alarm_topic ? 1 : 0

  arn    = aws_sns_topic.alarms[0].arn
  policy = data.aws_iam_policy_document.alarm_topic[0].json
}

data "aws_iam_policy_document" "alarm_topic" {
  count = var.create_alarm_topic ? 1 : 0

  statement {
    sid       = "AccountManagesTheTopic"
    actions   = ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish"]
    resources = [aws_sns_topic.alarms[0].arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "AlarmsOfThisAccountPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms[0].arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:*"]
    }
  }
}

resource "aws_sns_topic_subscription" "alarms" {
  count = var.create_alarm_topic ? 1 : 0

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "lambda"
  endpoint  = aws_lambda_function.quiesce["alert"].arn
}

resource "aws_lambda_permission" "alarm_topic" {
  count = var.create_alarm_topic ? 1 : 0

  statement_id  = "quiesce-alarm-topic"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.quiesce["alert"].function_name
  principal     = "sns.amazonaws.com"
  source_arn    = aws_sns_topic.alarms[0].arn
}

# Optional: alarms whose action invokes the alert function directly.
resource "aws_lambda_permission" "alarm_action" {
  for_each = toset(var.alarm_action_arns)

  statement_id   = "quiesce-alarm-${substr(sha256(each.value), 0, 16)}"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.quiesce["alert"].function_name
  principal      = "lambda.alarms.cloudwatch.amazonaws.com"
  source_arn     = each.value
  source_account = local.account_id
}
