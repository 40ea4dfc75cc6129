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
  # DynamoDbStateStore and EventBridgePublisher, after the statements below.
  override_policy_documents = [data.aws_iam_policy_document.state_and_events.json]

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

  # EbsSnapshotter.copy_to_region (a group's `copies:`): CopySnapshot, called in the
  # destination region, of Quiesce's snapshots only ...
  statement {
    sid       = "CopyOnlyQuiesceManagedSnapshots"
    actions   = ["ec2:CopySnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # ... making only replicas that carry quiesce:managed=true ...
  statement {
    sid       = "CopyIntoQuiesceManagedSnapshots"
    actions   = ["ec2:CopySnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # ... tagged in the same call ...
  statement {
    sid       = "TagCopiesOnlyWhileCopying"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CopySnapshot"]
    }
  }

  # ... and encrypted with a copy's customer managed key (copies[].key), or read from an
  # encrypted source, through EC2 only (each key's policy must also allow this role).
  statement {
    sid = "UseKeysOfCopiesThroughEc2"
    actions = [
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncrypt*",
    ]
    resources = ["arn:${local.partition}:kms:*:${local.account_id}:key/*"]

    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["ec2.*.amazonaws.com"]
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

  # RdsInventory.resolve, RdsSnapshotter (aws-rds members): read the databases ...
  statement {
    sid       = "RdsDescribeInstances"
    actions   = ["rds:DescribeDBInstances"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:db:*"]
  }

  statement {
    sid       = "RdsDescribeClusters"
    actions   = ["rds:DescribeDBClusters"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:cluster:*"]
  }

  # ... snapshot them (method: snapshot) ...
  statement {
    sid       = "RdsSnapshotInstances"
    actions   = ["rds:CreateDBSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:db:*"]
  }

  statement {
    sid       = "RdsSnapshotClusters"
    actions   = ["rds:CreateDBClusterSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:cluster:*"]
  }

  # ... creating (and tagging) only snapshots that carry quiesce:managed=true ...
  statement {
    sid       = "RdsCreateOnlyQuiesceManagedSnapshots"
    actions   = ["rds:AddTagsToResource", "rds:CreateDBSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:snapshot:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/quiesce:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "RdsCreateOnlyQuiesceManagedClusterSnapshots"
    actions   = ["rds:AddTagsToResource", "rds:CreateDBClusterSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:cluster-snapshot:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/quiesce:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "RdsReadSnapshots"
    actions   = ["rds:DescribeDBSnapshots", "rds:ListTagsForResource"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:snapshot:*"]
  }

  statement {
    sid       = "RdsReadClusterSnapshots"
    actions   = ["rds:DescribeDBClusterSnapshots", "rds:ListTagsForResource"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:cluster-snapshot:*"]
  }

  # ... and deleting only those (an automated backup is never Quiesce's: the code also
  # refuses any snapshot whose type is not manual).
  statement {
    sid       = "RdsDeleteOnlyQuiesceManagedSnapshots"
    actions   = ["rds:DeleteDBSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:snapshot:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "RdsDeleteOnlyQuiesceManagedClusterSnapshots"
    actions   = ["rds:DeleteDBClusterSnapshot"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:cluster-snapshot:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  # EfsInventory.resolve, EfsBackupSnapshotter (aws-efs members, through AWS Backup): start
  # on-demand jobs into the account's vaults ...
  statement {
    sid       = "EfsDescribeFileSystems"
    actions   = ["elasticfilesystem:DescribeFileSystems"]
    resources = ["arn:${local.partition}:elasticfilesystem:*:${local.account_id}:file-system/*"]
  }

  statement {
    sid       = "BackupStartJobs"
    actions   = ["backup:ListRecoveryPointsByBackupVault", "backup:StartBackupJob"]
    resources = ["arn:${local.partition}:backup:*:${local.account_id}:backup-vault:*"]
  }

  # ... with the member's backup role, passed to AWS Backup only ...
  statement {
    sid       = "BackupPassTheBackupRole"
    actions   = ["iam:PassRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/*"]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["backup.amazonaws.com"]
    }
  }

  statement {
    sid       = "BackupFollowJobs"
    actions   = ["backup:DescribeBackupJob"]
    resources = ["*"]
  }

  statement {
    sid       = "BackupReadRecoveryPoints"
    actions   = ["backup:DescribeRecoveryPoint", "backup:ListTags"]
    resources = ["arn:${local.partition}:backup:*:${local.account_id}:recovery-point:*"]
  }

  # ... and delete only their own recovery points (the code also refuses one a backup plan made).
  statement {
    sid       = "BackupDeleteOnlyQuiesceManagedRecoveryPoints"
    actions   = ["backup:DeleteRecoveryPoint"]
    resources = ["arn:${local.partition}:backup:*:${local.account_id}:recovery-point:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }
}

# The state table and the bus, for every role whose code runs DynamoDbStateStore and
# EventBridgePublisher: the functions' ("adapters") and the drill function's ("drill"), which
# append these statements through override_policy_documents.
data "aws_iam_policy_document" "state_and_events" {
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

# What whoever runs `quiesce restore --in-cloud --execute` needs (the adapters' RESTORE_PERMISSIONS).
# The functions never restore, so no role here gets it: attach the `restore_policy_json` output to
# the operators' role (tests/aws/test_restore_permissions.py keeps it equal to the declarations).
data "aws_iam_policy_document" "restore" {
  # EbsSnapshotter.check, before anything is created: is each snapshot still there, completed?
  statement {
    sid       = "ReadSnapshotsToRestore"
    actions   = ["ec2:DescribeSnapshots"]
    resources = ["*"]
  }

  # EfsBackupSnapshotter.check: is the recovery point still there, completed?
  statement {
    sid       = "ReadRecoveryPointsToRestore"
    actions   = ["backup:DescribeRecoveryPoint"]
    resources = ["arn:${local.partition}:backup:*:${local.account_id}:recovery-point:*"]
  }

  # EbsSnapshotter: a volume from each of Quiesce's snapshots, tagged as restored.
  statement {
    sid       = "CreateVolumesFromQuiesceSnapshots"
    actions   = ["ec2:CreateVolume"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quiesce:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "CreateOnlyRestoredVolumes"
    actions   = ["ec2:CreateVolume"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restored-from"
      values   = ["*"]
    }
  }

  statement {
    sid       = "TagVolumesOnlyWhileCreatingThem"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateVolume"]
    }
  }

  # RdsSnapshotter.check, before anything is created: the source database and its restore
  # window (T still in it), or the source snapshot.
  statement {
    sid = "ReadRestoreSources"
    actions = [
      "rds:DescribeDBInstances",
      "rds:DescribeDBClusters",
      "rds:DescribeDBInstanceAutomatedBackups",
      "rds:DescribeDBSnapshots",
      "rds:DescribeDBClusterSnapshots",
    ]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:*"]
  }

  # RdsSnapshotter: restores to T or from a snapshot, and an Aurora cluster's writer.
  statement {
    sid = "RestoreDatabases"
    actions = [
      "rds:CreateDBInstance",
      "rds:RestoreDBClusterFromSnapshot",
      "rds:RestoreDBClusterToPointInTime",
      "rds:RestoreDBInstanceFromDBSnapshot",
      "rds:RestoreDBInstanceToPointInTime",
    ]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:*"]
  }

  statement {
    sid       = "TagRestoredDatabases"
    actions   = ["rds:AddTagsToResource"]
    resources = ["arn:${local.partition}:rds:*:${local.account_id}:*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/quiesce:restored-from"
      values   = ["*"]
    }
  }

  # EfsBackupSnapshotter: a new file system from a recovery point.
  statement {
    sid       = "RestoreFileSystems"
    actions   = ["backup:StartRestoreJob"]
    resources = ["arn:${local.partition}:backup:*:${local.account_id}:recovery-point:*"]
  }

  statement {
    sid       = "PassTheBackupRoleToRestore"
    actions   = ["iam:PassRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/*"]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["backup.amazonaws.com"]
    }
  }
}
