# Plans the configuration against a mock AWS provider (no credentials, no network). Run from
# infra/aws with the variables of a generated tfvars file, e.g.:
#
#   terraform test -var-file=quiesce.auto.tfvars.json -var region=eu-central-1 \
#     -var package_file=../../dist/quiesce-aws.zip
#
# tests/aws/test_terraform.py runs it with the tfvars of a sample policy.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  # Policy documents are rendered by the provider; the mock returns a valid empty policy (the
  # statements themselves are checked by tests/aws/test_permissions.py).
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition  = "aws"
      dns_suffix = "amazonaws.com"
    }
  }
}

run "schedules_and_rules_come_from_the_generated_tfvars" {
  command = plan

  assert {
    condition     = length(aws_scheduler_schedule.trigger) == length(var.schedules)
    error_message = "one schedule per schedule trigger"
  }

  assert {
    condition = alltrue([
      for name, s in var.schedules :
      aws_scheduler_schedule.trigger[name].name == name &&
      aws_scheduler_schedule.trigger[name].schedule_expression == s.expression &&
      aws_scheduler_schedule.trigger[name].schedule_expression_timezone == s.timezone &&
      aws_scheduler_schedule.trigger[name].group_name == "${var.name_prefix}-${var.policy_name}"
    ])
    error_message = "a schedule has the trigger's name, cron expression and time zone, in the policy's group"
  }

  assert {
    condition = alltrue([
      for kind, rule in var.event_rules :
      aws_cloudwatch_event_rule.trigger[kind].event_pattern == rule.pattern &&
      aws_cloudwatch_event_rule.trigger[kind].event_bus_name == "default" &&
      aws_lambda_permission.rule[kind].principal == "events.amazonaws.com" &&
      aws_lambda_permission.rule[kind].function_name == "${var.name_prefix}-${var.policy_name}-${kind}"
    ])
    error_message = "deploy events go to the deploy function, alarms to the alert function"
  }
}

run "the_functions_and_the_runner_fit_the_code" {
  command = plan

  assert {
    condition = alltrue([
      for kind in ["schedule", "deploy", "alert"] :
      aws_lambda_function.quiesce[kind].handler == "quiesce_aws.handler.${kind}_handler" &&
      aws_lambda_function.quiesce[kind].runtime == "python3.12" &&
      aws_lambda_function.quiesce[kind].environment[0].variables["QUIESCE_POLICY"] == "policy.json" &&
      aws_lambda_function.quiesce[kind].environment[0].variables["QUIESCE_SSM_DOCUMENT"] == "Quiesce-RunHook" &&
      aws_lambda_function.quiesce[kind].environment[0].variables["QUIESCE_REGION"] == var.region
    ])
    error_message = "each function runs its handler with the policy, document and region"
  }

  assert {
    condition     = module.home_region.runner_targets == "tag:quiesce:enabled=true"
    error_message = "the runner is installed on the instances carrying the Quiesce tag"
  }

  assert {
    condition     = aws_s3_object.runner.key == "runner/${filesha256("${var.source_root}/shared/quiesce/guest/quiesce_guest.py")}/quiesce_guest.py"
    error_message = "the runner is stored under its own hash"
  }

  assert {
    condition     = strcontains(jsonencode(local.documents["run_hook"]), filesha256("${var.source_root}/shared/quiesce/guest/quiesce_guest.py"))
    error_message = "the run-hook document pins the runner's hash"
  }

  assert {
    condition     = alltrue([for c in aws_lambda_function_event_invoke_config.quiesce : c.maximum_retry_attempts == 2])
    error_message = "a run that could not start is retried (twice), by Lambda"
  }

  assert {
    condition     = alltrue([for g in aws_cloudwatch_log_group.function : g.retention_in_days == var.log_retention_days])
    error_message = "the log groups keep the configured retention"
  }
}

run "the_hook_library_is_stored_and_installed_pinned_by_its_hash" {
  command = plan

  assert {
    condition     = aws_s3_object.library.key == "library/${filesha256("${var.source_root}/shared/quiesce/hooklib/quiesce_hooks.py")}/quiesce_hooks.py"
    error_message = "the hook library is stored under its own hash"
  }

  assert {
    condition     = aws_s3_object.library.source_hash == filesha256("${var.source_root}/shared/quiesce/hooklib/quiesce_hooks.py")
    error_message = "the hook library object is re-uploaded whenever the file changes"
  }

  assert {
    condition     = local.documents["install_runner"]["parameters"]["LibrarySha256"]["default"] == filesha256("${var.source_root}/shared/quiesce/hooklib/quiesce_hooks.py")
    error_message = "the install document pins the hook library's hash"
  }

  assert {
    condition     = !strcontains(jsonencode(local.documents), "__HOOKS_SHA256__") && !strcontains(jsonencode(local.documents), "__RUNNER_SHA256__")
    error_message = "no placeholder is left in the documents"
  }

  assert {
    condition     = local.library_key == aws_s3_object.library.key && local.library_sha256 == aws_s3_object.library.source_hash
    error_message = "the association downloads the uploaded library object and pins its hash"
  }
}

run "each_hook_allowlist_is_stored_and_installed_pinned_by_its_hash" {
  command = plan

  assert {
    condition     = length(var.hook_allowlists) > 0 && length(aws_s3_object.allowlist) == length(var.hook_allowlists)
    error_message = "one S3 object per hook allowlist"
  }

  assert {
    condition = alltrue([
      for name, a in var.hook_allowlists :
      aws_s3_object.allowlist[name].content == a.content &&
      aws_s3_object.allowlist[name].key == "allowlists/${name}/${sha256(a.content)}/hooks.json" &&
      local.allowlists[name].sha256 == sha256(a.content)
    ])
    error_message = "each allowlist is stored under its own hash, which its association pins"
  }

  assert {
    condition = alltrue([
      for name, a in var.hook_allowlists :
      anytrue([for t in local.allowlists[name].targets : t.key == "tag:quiesce:enabled" && join(",", t.values) == "true"])
      if startswith(a.targets[0].key, "tag:")
    ])
    error_message = "an allowlist targeted by tags goes only to instances that also carry the Quiesce tag"
  }

  assert {
    condition     = strcontains(jsonencode(local.documents["run_hook"]), "--config")
    error_message = "the run-hook document runs the runner with the installed allowlist"
  }
}

run "the_alarm_topic_is_optional_and_feeds_the_alert_function" {
  command = plan

  variables {
    create_alarm_topic = true
  }

  assert {
    condition     = aws_sns_topic_subscription.alarms[0].protocol == "lambda"
    error_message = "the alarm topic delivers to the alert function"
  }

  assert {
    condition     = aws_lambda_permission.alarm_topic[0].principal == "sns.amazonaws.com"
    error_message = "SNS may invoke the alert function"
  }
}

run "a_policy_changed_after_the_tfvars_were_generated_is_refused" {
  command = plan

  variables {
    policy_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  }

  expect_failures = [terraform_data.checks]
}

run "members_in_a_region_without_documents_are_refused" {
  command = plan

  variables {
    member_regions = ["ap-southeast-2"]
  }

  expect_failures = [terraform_data.checks]
}

run "members_in_a_listed_additional_region_are_accepted" {
  command = plan

  variables {
    member_regions     = [var.region, "ap-southeast-2"]
    additional_regions = ["ap-southeast-2"]
  }
}

run "a_group_whose_freeze_does_not_fit_in_the_function_is_refused" {
  command = plan

  variables {
    groups = {
      slow = { max_freeze_seconds = 870, durability_timeout_seconds = 10 }
    }
  }

  expect_failures = [terraform_data.checks, check.runs_fit_in_the_function_timeout]
}

run "a_group_that_may_wait_longer_than_the_function_runs_is_warned_about" {
  command = plan

  variables {
    groups = {
      big = { max_freeze_seconds = 30, durability_timeout_seconds = 3600 }
    }
  }

  expect_failures = [check.runs_fit_in_the_function_timeout]
}

run "drills_have_their_own_function_role_and_schedules" {
  command = plan

  assert {
    condition = alltrue([
      for name, s in var.drill_schedules :
      aws_scheduler_schedule.drill[name].name == name &&
      aws_scheduler_schedule.drill[name].schedule_expression == s.expression &&
      aws_scheduler_schedule.drill[name].group_name == "${var.name_prefix}-${var.policy_name}"
    ]) && length(aws_scheduler_schedule.drill) == length(var.drill_schedules)
    error_message = "one drill schedule per drill trigger, named after it, in the policy's group"
  }

  assert {
    condition = (
      aws_lambda_function.drill.handler == "quiesce_aws.handler.schedule_handler" &&
      aws_lambda_function.drill.timeout == var.drill_timeout &&
      aws_lambda_function.drill.function_name == "${var.name_prefix}-${var.policy_name}-drill" &&
      aws_iam_role.drill.name == "${var.name_prefix}-${var.policy_name}-drill"
    )
    error_message = "the drill function runs the schedule front door with its own role and timeout"
  }

  assert {
    condition = tomap({
      for name, value in aws_lambda_function.drill.environment[0].variables :
      name => value if name != "QUIESCE_RESTORE_INSTANCE_PROFILE"
    }) == aws_lambda_function.quiesce["schedule"].environment[0].variables
    error_message = "the drill function reads the same policy, table, bus, document and region as the functions"
  }

  assert {
    condition     = aws_lambda_function_event_invoke_config.drill.maximum_retry_attempts == 0
    error_message = "a drill is not retried by Lambda"
  }
}

run "the_roles_restored_copies_may_be_given_are_role_names" {
  command = plan

  variables {
    restore_instance_roles = ["quiesce-app-instance", "service-role/ssm-managed-instance"]
  }
}

run "a_wildcard_among_the_roles_restored_copies_may_be_given_is_refused" {
  command = plan

  variables {
    restore_instance_roles = ["quiesce-*"]
  }

  expect_failures = [var.restore_instance_roles]
}
