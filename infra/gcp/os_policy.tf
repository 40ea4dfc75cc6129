# The guest runner, the hook library and the agent, under content-addressed names
# (scripts/gcp_os_policy.py pins the same SHA-256 in the exec resources that install them).
resource "google_storage_bucket" "guest" {
  name                        = "${var.project}-${var.name}-guest"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  # checkov:skip=CKV_GCP_62:Three small read-only program files; Cloud Audit Logs record access.
}

locals {
  # The guest runner and the hook library are the core's; the agent is GCP's own.
  guest_files = {
    "quiesce_guest.py" = "${path.module}/../../shared/quiesce/guest/quiesce_guest.py"
    "quiesce_hooks.py" = "${path.module}/../../shared/quiesce/hooklib/quiesce_hooks.py"
    "quiesce_agent.py" = "${path.module}/../../functions/gcp/quiesce_gcp/quiesce_agent.py"
  }
}

resource "google_storage_bucket_object" "guest" {
  for_each = local.guest_files

  name   = "quiesce/${filesha256(each.value)}/${each.key}"
  bucket = google_storage_bucket.guest.name
  source = each.value
}

resource "google_storage_bucket_iam_member" "members_read_guest" {
  for_each = toset(var.member_service_accounts)

  bucket = google_storage_bucket.guest.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${each.key}"
}

resource "google_os_config_os_policy_assignment" "quiesce" {
  for_each = var.os_policy_assignments

  name        = each.key
  project     = each.value.project
  location    = each.value.location
  description = each.value.description

  instance_filter {
    all = false
    dynamic "inclusion_labels" {
      for_each = each.value.instance_filter.inclusion_labels
      content {
        labels = inclusion_labels.value.labels
      }
    }
  }

  dynamic "os_policies" {
    for_each = each.value.os_policies
    content {
      id                            = os_policies.value.id
      description                   = os_policies.value.description
      mode                          = os_policies.value.mode
      allow_no_resource_group_match = os_policies.value.allow_no_resource_group_match

      dynamic "resource_groups" {
        for_each = os_policies.value.resource_groups
        content {
          dynamic "resources" {
            for_each = resource_groups.value.resources
            content {
              id = resources.value.id

              dynamic "file" {
                for_each = try([resources.value.file], [])
                content {
                  path        = file.value.path
                  state       = file.value.state
                  permissions = file.value.permissions
                  content     = try(file.value.content, null)

                  dynamic "file" {
                    for_each = try([file.value.file.gcs], [])
                    content {
                      gcs {
                        bucket = file.value.bucket
                        object = file.value.object
                      }
                    }
                  }
                }
              }

              dynamic "exec" {
                for_each = try([resources.value.exec], [])
                content {
                  validate {
                    interpreter = exec.value.validate.interpreter
                    script      = exec.value.validate.script
                  }
                  enforce {
                    interpreter = exec.value.enforce.interpreter
                    script      = exec.value.enforce.script
                  }
                }
              }
            }
          }
        }
      }
    }
  }

  rollout {
    disruption_budget {
      percent = each.value.rollout.disruption_budget.percent
    }
    min_wait_duration = each.value.rollout.min_wait_duration
  }

  depends_on = [google_storage_bucket_object.guest]
}

# One assignment per agent instance: its own signing key (root, 0600), targeted by the label
# quiesce-instance=<name>. The keys are in var.agent_key_assignments (sensitive).
resource "google_os_config_os_policy_assignment" "agent_key" {
  for_each = toset(nonsensitive(keys(var.agent_key_assignments)))

  name        = each.key
  project     = nonsensitive(var.agent_key_assignments[each.key].project)
  location    = nonsensitive(var.agent_key_assignments[each.key].location)
  description = "Quiesce agent signing key of ${nonsensitive(var.agent_key_assignments[each.key].instance)}"

  instance_filter {
    all = false
    inclusion_labels {
      labels = { "quiesce-instance" = nonsensitive(var.agent_key_assignments[each.key].instance) }
    }
  }

  os_policies {
    id                            = "quiesce-agent-key"
    description                   = "the agent's signing key"
    mode                          = "ENFORCEMENT"
    allow_no_resource_group_match = false

    resource_groups {
      resources {
        id = "agent-key"
        file {
          path        = "/etc/quiesce/agent.key"
          state       = "CONTENTS_MATCH"
          permissions = "600"
          content     = "${var.agent_key_assignments[each.key].key}\n"
        }
      }
    }
  }

  rollout {
    disruption_budget {
      percent = 100
    }
    min_wait_duration = "0s"
  }
}
