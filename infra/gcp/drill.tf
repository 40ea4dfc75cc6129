# Drills (triggers with `action: drill`): Cloud Scheduler calls the drill function over HTTP
# (OIDC, as the invoker account), which restores the group's newest point as isolated copies,
# verifies, measures and deletes them (quiesce.drill). It runs as its own account: the backup
# functions never get the rights to create or delete instances, and the drill account never
# gets the rights to snapshot or to command the members' own instances.
#
# Why HTTP: the core refuses a drill with less than 600 s left (front_door.DRILL_SECONDS), and
# event-driven 2nd gen functions stop at 540 s; HTTP functions run up to 3600 s.

locals {
  drill_triggers = {
    for t in try(local.policy.triggers, []) : t.name => {
      schedule  = t.schedule
      time_zone = try(t.timezone, "UTC")
    } if try(t.schedule, null) != null && try(t.action, "backup") == "drill"
  }
  drills = length(local.drill_triggers) > 0 ? toset(["drill"]) : toset([])

  # Permissions quiesce_gcp.restorer.GceRestorer declares, by scope (tests/gcp/test_drill_infra.py
  # checks each list is exactly the declared one).
  # scope "drill": project-wide reads and uses, for the drill account only.
  drill_permissions = [
    "compute.disks.get",
    "compute.disks.list",
    "compute.images.get",
    "compute.images.useReadOnly",
    "compute.instances.get",
    "compute.instances.getGuestAttributes",
    "compute.instances.list",
    "compute.regions.get",
    "compute.snapshots.useReadOnly",
    "compute.subnetworks.use",
    "compute.zoneOperations.get",
  ]
  # scope "restored": only on the disks and instances a restore makes (names qr-...).
  restored_permissions = [
    "compute.disks.create",
    "compute.disks.delete",
    "compute.disks.setLabels",
    "compute.disks.use",
    "compute.instances.create",
    "compute.instances.delete",
    "compute.instances.setLabels",
    "compute.instances.setMetadata",
    "compute.instances.setTags",
  ]
  # scope "inspection": only on the inspection instances named in var.inspection_instances.
  inspection_permissions = [
    "compute.instances.attachDisk",
    "compute.instances.detachDisk",
    "compute.instances.setMetadata",
  ]
  # quiesce_gcp.restorer.RESTORED_PREFIX
  restored_name_prefix = "qr-"
  inspection_projects  = toset([for i in var.inspection_instances : split("/", i)[1]])
}

resource "google_service_account" "drill" {
  account_id   = "${var.name}-drill"
  display_name = "Quiesce drills"
}

resource "google_project_iam_custom_role" "drill" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceDrill"
  title       = "Quiesce drills"
  description = "Reads what a restore launches from (snapshots, copies, instances, regions) and uses the isolated subnetwork."
  permissions = local.drill_permissions
}

resource "google_project_iam_member" "drill" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.drill[each.key].name
  member  = google_service_account.drill.member
}

resource "google_project_iam_custom_role" "restored" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceRestored"
  title       = "Quiesce restored copies"
  description = "Creates, commands and deletes the disks and instances a restore makes (names starting with qr-)."
  permissions = local.restored_permissions
}

resource "google_project_iam_member" "restored" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.restored[each.key].name
  member  = google_service_account.drill.member

  condition {
    title       = "quiesce-restored"
    description = "Only disks and instances named like a restore's"
    expression  = "(resource.type == \"compute.googleapis.com/Instance\" && resource.name.extract(\"/instances/{name}\").startsWith(\"${local.restored_name_prefix}\")) || (resource.type == \"compute.googleapis.com/Disk\" && resource.name.extract(\"/disks/{name}\").startsWith(\"${local.restored_name_prefix}\"))"
  }
}

resource "google_project_iam_custom_role" "inspection" {
  for_each = local.inspection_projects

  project     = each.key
  role_id     = "quiesceInspection"
  title       = "Quiesce inspection instances"
  description = "Attaches restored disks to an inspection instance, detaches them, and commands its agent."
  permissions = local.inspection_permissions
}

resource "google_project_iam_member" "inspection" {
  for_each = local.inspection_projects

  project = each.key
  role    = google_project_iam_custom_role.inspection[each.key].name
  member  = google_service_account.drill.member

  condition {
    title       = "quiesce-inspection"
    description = "Only the inspection instances named in var.inspection_instances"
    expression  = join(" || ", [for i in var.inspection_instances : "resource.name == \"${i}\"" if split("/", i)[1] == each.key])
  }
}

resource "google_project_iam_member" "drill_catalog" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.drill.member
}

resource "google_pubsub_topic_iam_member" "drill_events_publisher" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.drill.member
}

# The drill signs commands to the copies (each boots with its original's key, derived from the
# master key: quiesce_gcp.signing).
resource "google_secret_manager_secret_iam_member" "drill_read_master_key" {
  secret_id = google_secret_manager_secret.agent_master_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.drill.member
}

resource "google_cloudfunctions2_function" "drill" {
  for_each = local.drills

  name     = "${var.name}-drill"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "on_drill"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    max_instance_count             = 1
    available_memory               = "512M"
    timeout_seconds                = var.drill_timeout_seconds
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.drill.email
    environment_variables = merge(local.function_environment, {
      QUIESCE_FUNCTION_TIMEOUT_SECONDS = var.drill_timeout_seconds
    })
    secret_environment_variables {
      key        = "QUIESCE_AGENT_MASTER_KEY"
      project_id = var.project
      secret     = google_secret_manager_secret.agent_master_key.secret_id
      version    = google_secret_manager_secret_version.agent_master_key.version
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.drill_read_master_key]
}

resource "google_cloud_run_service_iam_member" "drill_invoker" {
  for_each = local.drills

  location = var.region
  service  = google_cloudfunctions2_function.drill[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

resource "google_cloud_scheduler_job" "drill" {
  for_each = local.drill_triggers

  name             = "${var.name}-${each.key}"
  region           = var.region
  schedule         = each.value.schedule
  time_zone        = each.value.time_zone
  attempt_deadline = "1800s"

  # A drill is not repeated by the scheduler: one that failed is recorded failed, and what it
  # left is deleted by its own cleanup or `quiesce restore-cleanup`.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.drill["drill"].url
    body        = base64encode(jsonencode({ trigger = each.key }))
    headers = {
      "Content-Type" = "application/json"
    }
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.drill["drill"].url
    }
  }
}
