# One customer managed key for what Quiesce stores: the state table, the dead-letter queue, the
# functions' logs and the alarm topic. The key policy lets the account's IAM policies decide who
# uses it, and lets the AWS services that write encrypted data on Quiesce's behalf use it only
# for Quiesce's own resources.

resource "aws_kms_key" "quiesce" {
  description             = "Quiesce ${var.policy_name}: state table, dead-letter queue, logs and alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "quiesce" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.quiesce.key_id
}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109:The account-root statement is the standard key policy statement that delegates access to IAM policies; without it the key becomes unmanageable.
  # checkov:skip=CKV_AWS_111:This is a key policy: its resource "*" means this key only, and the service statements are bound to this account and to Quiesce's log groups by conditions.
  # checkov:skip=CKV_AWS_356:Same reason: in a key policy "*" is the key the policy is attached to.
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsQuiesceLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${local.name}-*"]
    }
  }

  statement {
    sid       = "EventBridgeWritesUndeliveredEventsToTheDeadLetterQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = var.create_alarm_topic ? [1] : []

    content {
      sid       = "CloudWatchAlarmsPublishToTheAlarmTopic"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["cloudwatch.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}
