output "run_hook_document_arn" {
  description = "ARN of the run-hook document in this region."
  value       = aws_ssm_document.run_hook.arn
}

output "install_runner_document_arn" {
  description = "ARN of the install-runner document in this region."
  value       = aws_ssm_document.install_runner.arn
}

output "association_id" {
  description = "The runner installation association in this region."
  value       = aws_ssm_association.install_runner.association_id
}

output "runner_targets" {
  description = "The instances the runner and the hook library are installed on (tag:<key>=<value>)."
  value       = "tag:${var.instance_tag.key}=${var.instance_tag.value}"
}

output "install_hooks_document_arn" {
  description = "ARN of the install-hooks document in this region."
  value       = aws_ssm_document.install_hooks.arn
}

output "allowlist_associations" {
  description = "The hook allowlist associations in this region, by allowlist name."
  value       = { for name, a in aws_ssm_association.install_hooks : name => a.association_id }
}
