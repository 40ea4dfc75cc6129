output "function_names" {
  description = "The functions, by the kind of event that starts them."
  value       = { for kind, fn in aws_lambda_function.quiesce : kind => fn.function_name }
}

output "function_role_arn" {
  description = "The functions' role."
  value       = aws_iam_role.functions.arn
}

output "state_table" {
  description = "The DynamoDB table holding runs, recovery points, locks and the outbox."
  value       = aws_dynamodb_table.state.name
}

output "event_bus_arn" {
  description = "The bus Quiesce publishes its run events to."
  value       = aws_cloudwatch_event_bus.quiesce.arn
}

output "schedule_group" {
  description = "The EventBridge Scheduler group of the policy's schedules."
  value       = aws_scheduler_schedule_group.quiesce.name
}

output "schedules" {
  description = "The schedules, by trigger name: expression and time zone."
  value       = { for name, s in aws_scheduler_schedule.trigger : name => "${s.schedule_expression} ${s.schedule_expression_timezone}" }
}

output "dead_letter_queue_url" {
  description = "Failed invocations and undeliverable events."
  value       = aws_sqs_queue.dead_letters.id
}

output "run_hook_document" {
  description = "The SSM document the functions send hooks with."
  value       = local.run_hook_document
}

output "runner_bucket" {
  description = "The bucket the instances download the guest hook runner from."
  value       = aws_s3_bucket.runner.bucket
}

output "library_sha256" {
  description = "SHA-256 of the hook library (quiesce_hooks.py) the install document pins."
  value       = local.library_sha256
}

output "runner_sha256" {
  description = "SHA-256 of the guest hook runner the documents pin."
  value       = local.runner_sha256
}

output "allowlists" {
  description = "The hook allowlists, by name: region, S3 URL, SHA-256 and State Manager targets. Pass those of another region to its modules/regional instance (docs/aws-deploy.md)."
  value       = local.allowlists
}

output "instance_tag" {
  description = "Tag the EC2 instances Quiesce may run hooks on."
  value       = "${var.instance_tag.key}=${var.instance_tag.value}"
}

output "alarm_topic_arn" {
  description = "The SNS topic for alarm notifications (create_alarm_topic)."
  value       = var.create_alarm_topic ? aws_sns_topic.alarms[0].arn : null
}

output "kms_key_arn" {
  description = "The key encrypting the state table, the dead-letter queue, the logs and the alarm topic."
  value       = aws_kms_key.quiesce.arn
}

output "restore_policy_json" {
  description = "The IAM policy `quiesce restore --in-cloud --execute` needs (EBS volumes, RDS restores, EFS restore jobs): attach it to whoever restores; the functions never do."
  value       = data.aws_iam_policy_document.restore.json
}

output "drill_function_name" {
  description = "The drill function (started by the drill triggers' schedules)."
  value       = aws_lambda_function.drill.function_name
}

output "drill_role_arn" {
  description = "The drill function's role: restores into isolation and deletes only what carries quiesce:restore."
  value       = aws_iam_role.drill.arn
}

output "drill_schedules" {
  description = "The drill schedules, by trigger name: expression and time zone."
  value       = { for name, s in aws_scheduler_schedule.drill : name => "${s.schedule_expression} ${s.schedule_expression_timezone}" }
}

output "drill_policy_json" {
  description = "The drill role's policy, for operators who run `quiesce drill`, `quiesce restore --in-cloud --launch` or `quiesce restore-cleanup` themselves."
  value       = data.aws_iam_policy_document.drill.json
}
