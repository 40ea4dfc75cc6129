# The three functions (one package, one role), their log groups and the dead-letter queue.

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.quiesce.arn
}

# Invocations that failed (a run that raised, a run that did not fit in the timeout) and events
# EventBridge could not deliver land here; nothing is retried automatically, because a late
# retry would freeze the application at a time nobody chose.
resource "aws_sqs_queue" "dead_letters" {
  name                      = "${local.name}-dead-letters"
  kms_master_key_id         = aws_kms_key.quiesce.arn
  message_retention_seconds = 1209600 # 14 days, the most SQS keeps
}

resource "aws_sqs_queue_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id
  policy    = data.aws_iam_policy_document.dead_letters.json
}

data "aws_iam_policy_document" "dead_letters" {
  dynamic "statement" {
    for_each = length(var.event_rules) > 0 ? [1] : []

    content {
      sid       = "EventBridgeRulesSendUndeliverableEvents"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.dead_letters.arn]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [for rule in aws_cloudwatch_event_rule.trigger : rule.arn]
      }
    }
  }

  statement {
    sid       = "DenyUnencryptedTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dead_letters.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# What every function (these three and the drill's) reads from its environment: the bundled
# policy, the table, the bus, the run-hook document, the region, and Powertools' settings.
locals {
  function_environment = {
    QUIESCE_POLICY               = "policy.json"
    QUIESCE_TABLE                = aws_dynamodb_table.state.name
    QUIESCE_EVENT_BUS            = aws_cloudwatch_event_bus.quiesce.name
    QUIESCE_SSM_DOCUMENT         = local.run_hook_document
    QUIESCE_REGION               = var.region
    POWERTOOLS_SERVICE_NAME      = "quiesce"
    POWERTOOLS_METRICS_NAMESPACE = "Quiesce"
    POWERTOOLS_LOG_LEVEL         = var.log_level
  }
}

resource "aws_lambda_function" "quiesce" {
  # checkov:skip=CKV_AWS_173:The environment holds only resource names (table, bus, document, policy file), no secrets; Lambda encrypts it at rest with an AWS-owned key.
  #
  # Optional, off by default (checkov cannot see that): a VPC (var.vpc_config; the functions
  # call only AWS APIs and would need NAT or interface endpoints), code signing
  # (var.code_signing_config_arn; package_aws.py does not sign), reserved concurrency
  # (var.reserved_concurrency; -1 = none reserved, because reserving fails in accounts with a
  # small concurrency quota, and a group's lock already keeps one run per group).
  for_each = local.functions

  function_name = local.function_names[each.key]
  description   = each.value.description
  role          = aws_iam_role.functions.arn
  handler       = each.value.handler
  runtime       = var.runtime
  architectures = [var.architecture]
  timeout       = var.function_timeout
  memory_size   = var.function_memory

  filename         = local.package_file
  source_code_hash = filebase64sha256(local.package_file)

  reserved_concurrent_executions = var.reserved_concurrency == null ? -1 : var.reserved_concurrency
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = local.function_environment
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dead_letters.arn
  }

  tracing_config {
    mode = var.tracing ? "Active" : "PassThrough"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  dynamic "vpc_config" {
    for_each = var.vpc_config == null ? [] : [var.vpc_config]

    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  depends_on = [
    aws_iam_role_policy.functions_runtime,
    aws_iam_role_policy.functions_adapters,
    terraform_data.checks,
  ]
}

# Asynchronous invocations (schedules, rules, SNS) are retried by Lambda, and only Lambda retries
# a function error: a function raises only when its run could not start (a throttled table, a
# timeout, before anything was frozen), and the retry takes the trigger over and runs. A retry
# of a run that began its quiesce starts nothing. Lambda retries after about 1 and 3 minutes;
# the second is past the claim's 120 s grace for a run that died before its first save.
resource "aws_lambda_function_event_invoke_config" "quiesce" {
  for_each = aws_lambda_function.quiesce

  function_name                = each.value.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = var.max_event_age_seconds
}
