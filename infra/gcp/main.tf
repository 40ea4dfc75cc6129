data "google_project" "this" {
  project_id = var.project
}

locals {
  policy = yamldecode(file(var.policy_file))

  # One Cloud Scheduler job per schedule trigger, named after the trigger.
  schedule_triggers = {
    for t in try(local.policy.triggers, []) : t.name => {
      schedule  = t.schedule
      time_zone = try(t.timezone, "UTC")
    } if try(t.schedule, null) != null
  }

  gcp_members = flatten([
    for _, g in local.policy.groups : [for m in g.members : m if m.provider == "gcp"]
  ])
  member_projects = toset(concat([var.project], [for m in local.gcp_members : m.project]))

  # Permissions the adapters declare (quiesce_gcp.permissions.role_permissions); tests/gcp
  # checks that this list is exactly the declared one.
  adapter_permissions = [
    "compute.disks.createSnapshot",
    "compute.instances.get",
    "compute.instances.getGuestAttributes",
    "compute.instances.list",
    "compute.instances.setMetadata",
    "compute.snapshots.create",
    "compute.snapshots.delete",
    "compute.snapshots.get",
    "compute.snapshots.list",
    "compute.snapshots.setLabels",
    "compute.zoneOperations.get",
    "pubsub.topics.publish",
  ]

  firestore_database = var.create_firestore_database ? google_firestore_database.catalog[0].name : var.firestore_database

  # The functions: entry point (quiesce_gcp/main.py) and the topic that starts it.
  functions = {
    schedule = { entry_point = "on_schedule", topic = google_pubsub_topic.schedules.id }
    deploy   = { entry_point = "on_deploy", topic = "projects/${var.project}/topics/${var.cloud_builds_topic}" }
    alert    = { entry_point = "on_alert", topic = google_pubsub_topic.alerts.id }
  }
}
