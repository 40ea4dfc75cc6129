# Hooks: the guest hook runner, the hook library and the members' hook allowlists in S3, and in
# every member region the SSM documents, the State Manager association that installs the runner
# and the library on every instance carrying the Quiesce tag, and one association per allowlist
# that installs /etc/quiesce/hooks.json on the member's instances (modules/regional). The
# documents pin the runner's SHA-256 (an instance whose runner is not exactly this file refuses
# to run hooks) and the library's, the associations pin each allowlist's SHA-256.

locals {
  runner_sha256 = filesha256(local.runner_file)
  runner_key    = "runner/${local.runner_sha256}/quiesce_guest.py"
  runner_url    = "https://${aws_s3_bucket.runner.bucket}.s3.${var.region}.${data.aws_partition.current.dns_suffix}/${local.runner_key}"

  library_sha256 = filesha256(local.library_file)
  library_key    = "library/${local.library_sha256}/quiesce_hooks.py"
  library_url    = "https://${aws_s3_bucket.runner.bucket}.s3.${var.region}.${data.aws_partition.current.dns_suffix}/${local.library_key}"

  # ssm_document.yaml holds the documents; the runner's and the library's hashes replace their
  # placeholders.
  document_text = replace(file(local.document_file), "__RUNNER_SHA256__", local.runner_sha256)
  documents     = yamldecode(replace(local.document_text, "__HOOKS_SHA256__", local.library_sha256))

  run_hook_document       = "${var.ssm_document_prefix}-RunHook"
  install_runner_document = "${var.ssm_document_prefix}-InstallRunner"
  install_hooks_document  = "${var.ssm_document_prefix}-InstallHooks"

  # Each allowlist is stored under its own hash; tag-targeted ones also require the Quiesce tag
  # (State Manager ANDs tag targets), so an allowlist only lands where hooks may be sent.
  allowlists = {
    for name, a in var.hook_allowlists : name => {
      region = a.region
      key    = "allowlists/${name}/${sha256(a.content)}/hooks.json"
      sha256 = sha256(a.content)
      url    = "https://${aws_s3_bucket.runner.bucket}.s3.${var.region}.${data.aws_partition.current.dns_suffix}/allowlists/${name}/${sha256(a.content)}/hooks.json"
      targets = concat(
        a.targets,
        startswith(a.targets[0].key, "tag:") ? [{ key = "tag:${var.instance_tag.key}", values = [var.instance_tag.value] }] : [],
      )
    }
  }
}

resource "aws_s3_bucket" "runner" {
  # checkov:skip=CKV_AWS_18:The bucket holds one small public-source file read by the account's instances; CloudTrail data events are the place to audit reads if needed.
  # checkov:skip=CKV_AWS_144:The runner is re-uploaded by every apply from the source tree; a replica would add nothing a re-apply cannot restore.
  # checkov:skip=CKV_AWS_145:The runner is open source and integrity-pinned by SHA-256 in the documents; SSE-S3 lets every instance role read it without a grant on a customer managed key.
  # checkov:skip=CKV2_AWS_62:Nothing needs to react to uploads of the runner.
  bucket_prefix = "${substr(replace(local.name, "_", "-"), 0, 29)}-runner-"
  # Only runner versions live here, and every apply uploads the current one again.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "runner" {
  bucket                  = aws_s3_bucket.runner.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "runner" {
  bucket = aws_s3_bucket.runner.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "runner" {
  bucket = aws_s3_bucket.runner.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "runner" {
  bucket = aws_s3_bucket.runner.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "runner" {
  bucket = aws_s3_bucket.runner.id

  rule {
    id     = "expire-replaced-runners"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# The instances download the runner with their own credentials (aws:downloadContent): any
# principal of this account may read the runner objects, nothing else; TLS only.
resource "aws_s3_bucket_policy" "runner" {
  bucket = aws_s3_bucket.runner.id
  policy = data.aws_iam_policy_document.runner_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.runner]
}

data "aws_iam_policy_document" "runner_bucket" {
  statement {
    sid     = "InstancesOfThisAccountReadTheRunnerLibraryAndAllowlists"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.runner.arn}/runner/*",
      "${aws_s3_bucket.runner.arn}/library/*",
      "${aws_s3_bucket.runner.arn}/allowlists/*",
    ]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyUnencryptedTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.runner.arn, "${aws_s3_bucket.runner.arn}/*"]

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

resource "aws_s3_object" "runner" {
  bucket       = aws_s3_bucket.runner.id
  key          = local.runner_key
  source       = local.runner_file
  source_hash  = local.runner_sha256
  content_type = "text/x-python"
}

# The hook library (docs/databases.md), stored under its own hash like the runner.
resource "aws_s3_object" "library" {
  bucket       = aws_s3_bucket.runner.id
  key          = local.library_key
  source       = local.library_file
  source_hash  = local.library_sha256
  content_type = "text/x-python"
}

# The allowlists hold hook argv and plain env values (never secrets: those are env_files, read
# on the instance); every principal of the account may read them, like the runner.
resource "aws_s3_object" "allowlist" {
  for_each = var.hook_allowlists

  bucket       = aws_s3_bucket.runner.id
  key          = local.allowlists[each.key].key
  content      = each.value.content
  content_type = "application/json"
}

module "home_region" {
  source = "./modules/regional"

  name                    = local.name
  run_hook_document       = local.run_hook_document
  install_runner_document = local.install_runner_document
  run_hook_content        = jsonencode(local.documents["run_hook"])
  install_runner_content  = jsonencode(local.documents["install_runner"])
  install_hooks_document  = local.install_hooks_document
  install_hooks_content   = jsonencode(local.documents["install_hooks"])
  runner_url              = local.runner_url
  runner_sha256           = local.runner_sha256
  library_url             = local.library_url
  library_sha256          = local.library_sha256
  allowlists              = { for name, a in local.allowlists : name => a if a.region == var.region }
  instance_tag            = var.instance_tag
  association_schedule    = var.runner_association_schedule

  depends_on = [aws_s3_object.runner, aws_s3_object.library, aws_s3_object.allowlist, aws_s3_bucket_policy.runner]
}
