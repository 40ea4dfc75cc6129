# What Quiesce needs in each region where members live: the SSM documents (SendCommand only
# finds documents of the instance's region), the association that installs the guest hook
# runner and the hook library on the region's tagged instances, and one association per hook allowlist that installs
# /etc/quiesce/hooks.json on its members' instances. Use it once per additional region, with a
# provider for that region (docs/aws-deploy.md, Members in other regions).

resource "aws_ssm_document" "run_hook" {
  name            = var.run_hook_document
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"
  content         = var.run_hook_content
}

resource "aws_ssm_document" "install_runner" {
  name            = var.install_runner_document
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"
  content         = var.install_runner_content
}

resource "aws_ssm_document" "install_hooks" {
  name            = var.install_hooks_document
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"
  content         = var.install_hooks_content
}

# Applied to every instance that carries the tag, when it gains the tag or registers with SSM,
# whenever the runner or the library changes (their URLs and hashes are parameters), and on the
# schedule, which also repairs a file someone changed.
resource "aws_ssm_association" "install_runner" {
  association_name    = "${var.name}-install-runner"
  name                = aws_ssm_document.install_runner.name
  document_version    = aws_ssm_document.install_runner.latest_version
  schedule_expression = var.association_schedule
  compliance_severity = "HIGH"
  max_concurrency     = "20%"
  max_errors          = "100%"

  parameters = {
    SourceUrl     = var.runner_url
    Sha256        = var.runner_sha256
    LibraryUrl    = var.library_url
    LibrarySha256 = var.library_sha256
  }

  targets {
    key    = "tag:${var.instance_tag.key}"
    values = [var.instance_tag.value]
  }
}

# One per allowlist: applied to the member's instances (its tags AND the Quiesce tag, or its
# instance ids) when they register, whenever the allowlist changes (its URL and hash are
# parameters), and on the schedule, which also repairs a file someone changed.
resource "aws_ssm_association" "install_hooks" {
  for_each = var.allowlists

  association_name    = "${var.name}-hooks-${each.key}"
  name                = aws_ssm_document.install_hooks.name
  document_version    = aws_ssm_document.install_hooks.latest_version
  schedule_expression = var.association_schedule
  compliance_severity = "HIGH"
  max_concurrency     = "20%"
  max_errors          = "100%"

  parameters = {
    SourceUrl = each.value.url
    Sha256    = each.value.sha256
  }

  dynamic "targets" {
    for_each = each.value.targets

    content {
      key    = targets.value.key
      values = targets.value.values
    }
  }
}
