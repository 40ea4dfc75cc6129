data "google_project" "this" {
  project_id = var.project
}

locals {
  policy = yamldecode(file(var.policy_file))

  # One Cloud Scheduler job per schedule trigger, named after the trigger: backups here (to the
  # schedules topic), drills in drill.tf (to the drill function).
  schedule_triggers = {
    for t in try(local.policy.triggers, []) : t.name => {
      schedule  = t.schedule
      time_zone = try(t.timezone, "UTC")
    } if try(t.schedule, null) != null && try(t.action, "backup") == "backup"
  }

  gcp_members = flatten([
    for _, g in local.policy.groups : [for m in g.members : m if m.provider == "gcp"]
  ])
  member_projects = toset(concat([var.project], [for m in local.gcp_members : m.project]))
  # Managed services (quiesce_gcp.managed_spec): Cloud SQL and Filestore members.
  sql_members        = flatten([for _, g in local.policy.groups : [for m in g.members : m if m.provider == "gcp-sql"]])
  filestore_members  = flatten([for _, g in local.policy.groups : [for m in g.members : m if m.provider == "gcp-filestore"]])
  sql_projects       = toset([for m in local.sql_members : m.project])
  filestore_projects = toset([for m in local.filestore_members : m.project])
  # Where `quiesce restore --execute` may restore: every project of a member.
  restore_projects = setunion(local.member_projects, local.sql_projects, local.filestore_projects)

  # Permissions the adapters declare, by scope (quiesce_gcp.permissions.role_permissions with
  # scope=...); tests/gcp checks that each list is exactly the declared one.
  # scope "project": granted project-wide in every member project.
  adapter_permissions = [
    "compute.disks.createSnapshot",
    "compute.images.get",
    "compute.images.list",
    "compute.instances.get",
    "compute.instances.getGuestAttributes",
    "compute.instances.list",
    "compute.snapshots.create",
    "compute.snapshots.get",
    "compute.snapshots.list",
    "compute.zoneOperations.get",
    "pubsub.topics.publish",
  ]
  # scope "agent-instances": only on the agent members' instances (setMetadata is root there).
  agent_instance_permissions = [
    "compute.instances.setMetadata",
  ]
  # scope "quiesce-snapshots": only on snapshots named like Quiesce's.
  snapshot_permissions = [
    "compute.snapshots.delete",
    "compute.snapshots.setLabels",
    "compute.snapshots.useReadOnly",
  ]
  # scope "quiesce-images": a point's copies in other regions are images named q-c-...
  # (quiesce_gcp.copies): created, labelled and deleted on Quiesce's names only.
  image_permissions = [
    "compute.images.create",
    "compute.images.delete",
    "compute.images.setLabels",
  ]
  # The managed services' "project" permissions, granted only in the projects of such members:
  # Cloud SQL (CloudSqlInventory, CloudSqlSnapshotter) and Filestore (FilestoreInventory,
  # FilestoreSnapshotter). Filestore's resource names are not recognised by IAM Conditions, so
  # snapshot deletion cannot be scoped here: the adapter deletes only snapshots labelled
  # quiesce-managed=true and named with Quiesce's prefix.
  sql_permissions = [
    "cloudsql.instances.get",
  ]
  filestore_permissions = [
    "file.instances.get",
    "file.operations.get",
    "file.snapshots.create",
    "file.snapshots.delete",
    "file.snapshots.get",
    "file.snapshots.list",
  ]
  # scope "restore": what `quiesce restore --execute` calls (disks from snapshots, a Cloud SQL
  # clone at T, a Filestore revert). Never granted to the functions: a custom role
  # (output restore_roles) to grant to whoever restores.
  restore_permissions = [
    "cloudsql.instances.clone",
    "cloudsql.instances.get",
    "compute.disks.create",
    "compute.snapshots.get",
    "compute.snapshots.useReadOnly",
    "file.instances.revert",
    "file.snapshots.get",
  ]
  # quiesce_gcp.snapshots.SNAPSHOT_PREFIX: every snapshot Quiesce creates starts with it.
  snapshot_name_prefix = "q-"

  # The instances the agent channel writes commands to, as IAM resource names per project:
  # from the policy for members selected by name, from var.agent_instances for members
  # selected by labels.
  agent_members = [for m in local.gcp_members : m if try(m.hook_channel, "agent") == "agent"]
  agent_members_unnamed = [
    for m in local.agent_members : m.name
    if length(try(m.select.instances, [])) == 0 && length(lookup(var.agent_instances, m.name, [])) == 0
  ]
  agent_instance_names = {
    for p in local.member_projects : p => distinct(flatten([
      for m in local.agent_members : [
        for i in concat(try(m.select.instances, []), lookup(var.agent_instances, m.name, [])) :
        "projects/${p}/zones/${m.zone}/instances/${i}"
      ] if m.project == p
    ])) if length([for m in local.agent_members : m if m.project == p]) > 0
  }

  firestore_database = var.create_firestore_database ? google_firestore_database.catalog[0].name : var.firestore_database

  # What every function reads (quiesce_gcp.provider, policy_source, main).
  function_environment = {
    QUIESCE_POLICY             = var.policy_setting
    QUIESCE_PROJECT            = var.project
    QUIESCE_PUBSUB_TOPIC       = google_pubsub_topic.events.id
    QUIESCE_FIRESTORE_DATABASE = local.firestore_database
    # The code refuses a run that cannot fit the time left: it has no other way to know it.
    QUIESCE_FUNCTION_TIMEOUT_SECONDS = var.function_timeout_seconds
  }

  # The functions: entry point (quiesce_gcp/main.py) and the topic that starts it.
  functions = {
    schedule = { entry_point = "on_schedule", topic = google_pubsub_topic.schedules.id }
    deploy   = { entry_point = "on_deploy", topic = "projects/${var.project}/topics/${var.cloud_builds_topic}" }
    alert    = { entry_point = "on_alert", topic = google_pubsub_topic.alerts.id }
  }
}
