# The functions' role. Two inline policies:
#
# - "adapters": exactly what the AWS adapters declare they call (their PERMISSIONS), scoped as
#   they declare it; tests/aws/test_permissions.py fails when this policy and the declarations
#   differ, so it is changed together with the adapters, never on its own.
# - "runtime": what Lambda itself needs to run the functions: their logs, the dead-letter
#   queue, X-Ray, and the key that encrypts the table and the queue.

resource "aws_iam_role" "functions" {
  name               = "${local.name}-functions"
  description        = "Quiesce ${var.policy_name}: the schedule, deploy and alert functions"
  assume_role_policy = data.aws_iam_policy_document.functions_trust.json
}

data "aws_iam_policy_document" "functions_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy" "functions_adapters" {
  name   = "quiesce-adapters"
  role   = aws_iam_role.functions.id
  policy = data.aws_iam_policy_document.adapters.json
}

data "aws_iam_policy_document" "adapters" {

  # Ec2Inventory.resolve, EbsSnapshotter.take/wait_durable/delete/find.
  statement {
    sid       = "DescribeInstancesAndSnapshots"
    actions   = ["ec2:DescribeInstances", "ec2:DescribeSnapshots"]
    resources = ["*"]
  }

  # EbsSnapshotter.take: CreateSnapshots needs the instance, which must carry the Quiesce
  # tag ...
  statement {
    sid       = "SnapshotOnlyQuiesceTaggedInstances"
    actions   = ["ec2:CreateSnapshots"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${var.instance_tag.key}"
      values   = [var.instance_tag.value]
    }
  }

  # ... and its volumes (a policy cannot tie a volume to its instance; every CreateSnapshots
  # call names the instance, so the condition above decides) ...
  statement {
    sid       = "SnapshotTheVolumesOfThoseInstances"
    actions   = ["ec2:CreateSnapshots"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]
  }

  # ... and creates only snapshots that carry quiesce:managed=true ...
  statement {
    sid       = "CreateOnlyQuiesceManagedSnapshots"
    actions   = ["ec2:CreateSnapshots"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # ... tagging them only as part of that call.
  statement {
    sid       = "TagSnapshotsOnlyWhileCreatingThem"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateSnapshots"]
    }
  }

  # EbsSnapshotter.delete (retention, failed runs, recovery): Quiesce's snapshots only.
  statement {
    sid       = "DeleteOnlyQuiesceManagedSnapshots"
    actions   = ["ec2:DeleteSnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # SsmHookRunner (the run-hook document) and EbsSnapshotter.take on Windows members (AWS's
  # VSS document): no other document can be sent ...
  statement {
    sid     = "SendOnlyQuiesceDocuments"
    actions = ["ssm:SendCommand"]
    resources = [
      "arn:${local.partition}:ssm:*:${local.account_id}:document/${local.run_hook_document}",
      "arn:${local.partition}:ssm:*::document/AWSEC2-CreateVssSnapshot",
    ]
  }

  # ... and only to instances that carry the Quiesce tag.
  statement {
    sid       = "SendOnlyToQuiesceTaggedInstances"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/${var.instance_tag.key}"
      values   = [var.instance_tag.value]
    }
  }

  statement {
    sid       = "FollowCommands"
    actions   = ["ssm:GetCommandInvocation", "ssm:ListCommandInvocations"]
    resources = ["*"]
  }

  # DynamoDbStateStore: the state table ...
  statement {
    sid = "StateTableItems"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:DeleteItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.state.arn]
  }

  # ... and its two indexes (runs and points by policy; the outbox in order).
  statement {
    sid     = "StateTableIndexes"
    actions = ["dynamodb:Query"]
    resources = [
      "${aws_dynamodb_table.state.arn}/index/gsi1",
      "${aws_dynamodb_table.state.arn}/index/lsi1",
    ]
  }

  # EventBridgePublisher: Quiesce's own bus.
  statement {
    sid       = "PublishToTheQuiesceBus"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.quiesce.arn]
  }
}

resource "aws_iam_role_policy" "functions_runtime" {
  name   = "lambda-runtime"
  role   = aws_iam_role.functions.id
  policy = data.aws_iam_policy_document.runtime.json
}

data "aws_iam_policy_document" "runtime" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.function : "${group.arn}:*"]
  }

  statement {
    sid       = "SendFailedInvocationsToTheDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letters.arn]
  }

  statement {
    sid       = "UseTheKeyForTheStateTable"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    resources = [aws_kms_key.quiesce.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${var.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "UseTheKeyForTheDeadLetterQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.quiesce.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${var.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = var.tracing ? [1] : []

    content {
      sid       = "SendTraces"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }
}
