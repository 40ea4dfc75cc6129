# The functions run as this account: the adapters' custom role in every member project, the
# Firestore catalog, and publishing on the events topic.
resource "google_service_account" "functions" {
  account_id   = "${var.name}-functions"
  display_name = "Quiesce functions"
}

# Pub/Sub (Eventarc) calls the functions as this account; it can do nothing else.
resource "google_service_account" "invoker" {
  account_id   = "${var.name}-invoker"
  display_name = "Quiesce function triggers"
}

# Exactly what quiesce_gcp's adapters declare, split by where each permission may be used
# (tests/gcp/test_iam.py). A project custom role can only be granted in its own project: one
# set per member project.
resource "google_project_iam_custom_role" "adapters" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceAdapters"
  title       = "Quiesce adapters"
  description = "Compute Engine and Pub/Sub permissions Quiesce's GCP adapters use project-wide."
  permissions = local.adapter_permissions
}

resource "google_project_iam_member" "adapters" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.adapters[each.key].name
  member  = google_service_account.functions.member
}

# setMetadata lets its holder run anything as root on an instance: granted only on the agent
# members' instances, named one by one in an IAM condition.
resource "google_project_iam_custom_role" "agent_instances" {
  for_each = local.agent_instance_names

  project     = each.key
  role_id     = "quiesceAgentInstances"
  title       = "Quiesce agent commands"
  description = "Writes Quiesce's signed agent command into a member instance's metadata."
  permissions = local.agent_instance_permissions
}

resource "google_project_iam_member" "agent_instances" {
  for_each = local.agent_instance_names

  project = each.key
  role    = google_project_iam_custom_role.agent_instances[each.key].name
  member  = google_service_account.functions.member

  condition {
    title       = "quiesce-agent-instances"
    description = "Only the policy's agent member instances"
    expression  = join(" || ", [for n in each.value : "resource.name == \"${n}\""])
  }

  lifecycle {
    precondition {
      condition     = length(local.agent_members_unnamed) == 0
      error_message = "These agent members select instances by labels: list their instances in var.agent_instances (member => names) so setMetadata can be granted on them only: ${join(", ", local.agent_members_unnamed)}"
    }
  }
}

# Deleting and relabelling snapshots: only those named like Quiesce's (q-...).
resource "google_project_iam_custom_role" "snapshots" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceSnapshots"
  title       = "Quiesce snapshots"
  description = "Labels and deletes the snapshots Quiesce creates (names starting with q-)."
  permissions = local.snapshot_permissions
}

resource "google_project_iam_member" "snapshots" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.snapshots[each.key].name
  member  = google_service_account.functions.member

  condition {
    title       = "quiesce-snapshots"
    description = "Only snapshots named like Quiesce's"
    expression  = "resource.type == \"compute.googleapis.com/Snapshot\" && resource.name.startsWith(\"projects/${each.key}/global/snapshots/${local.snapshot_name_prefix}\")"
  }
}

# A point's copies in other regions (images): created and deleted only on Quiesce's names.
resource "google_project_iam_custom_role" "images" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceImages"
  title       = "Quiesce copies"
  description = "Creates, labels and deletes the images that copy Quiesce's snapshots to other regions (names starting with q-)."
  permissions = local.image_permissions
}

resource "google_project_iam_member" "images" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.images[each.key].name
  member  = google_service_account.functions.member

  condition {
    title       = "quiesce-images"
    description = "Only images named like Quiesce's copies"
    expression  = "resource.type == \"compute.googleapis.com/Image\" && resource.name.startsWith(\"projects/${each.key}/global/images/${local.snapshot_name_prefix}\")"
  }
}

# Cloud SQL members: reading the instance and its latest recovery time. Nothing is created.
resource "google_project_iam_custom_role" "cloudsql" {
  for_each = local.sql_projects

  project     = each.key
  role_id     = "quiesceCloudSql"
  title       = "Quiesce Cloud SQL members"
  description = "Reads Cloud SQL instances and their latest recovery time (point-in-time recovery)."
  permissions = local.sql_permissions
}

resource "google_project_iam_member" "cloudsql" {
  for_each = local.sql_projects

  project = each.key
  role    = google_project_iam_custom_role.cloudsql[each.key].name
  member  = google_service_account.functions.member
}

# Filestore members: instance snapshots (created, listed and deleted; deletion limited in code
# to Quiesce's labelled snapshots: IAM Conditions do not know Filestore's resource names).
resource "google_project_iam_custom_role" "filestore" {
  for_each = local.filestore_projects

  project     = each.key
  role_id     = "quiesceFilestore"
  title       = "Quiesce Filestore members"
  description = "Creates, lists and deletes Quiesce's Filestore instance snapshots."
  permissions = local.filestore_permissions
}

resource "google_project_iam_member" "filestore" {
  for_each = local.filestore_projects

  project = each.key
  role    = google_project_iam_custom_role.filestore[each.key].name
  member  = google_service_account.functions.member
}

# Restoring a recovery point in the cloud (quiesce restore --execute): a role to grant to the
# people or pipelines that restore. Bound to nobody here, and never to the functions.
resource "google_project_iam_custom_role" "restore" {
  for_each = local.restore_projects

  project     = each.key
  role_id     = "quiesceRestore"
  title       = "Quiesce restore"
  description = "Restores Quiesce recovery points: disks from snapshots, Cloud SQL clones at T, Filestore reverts."
  permissions = local.restore_permissions
}

resource "google_project_iam_member" "catalog" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.functions.member
}

resource "google_pubsub_topic_iam_member" "events_publisher" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.functions.member
}

resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = local.functions

  location = var.region
  service  = google_cloudfunctions2_function.quiesce[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# The agent master key: the functions read it (QUIESCE_AGENT_MASTER_KEY) to sign commands and
# verify answers; scripts/gcp_os_policy.py derives each VM's own key from the same value.
resource "google_secret_manager_secret" "agent_master_key" {
  secret_id = "${var.name}-agent-master-key"
  replication {
    auto {}
  }
  # checkov:skip=CKV_GCP_128:Google-managed encryption; the secret is readable by the functions' account only.
}

resource "google_secret_manager_secret_version" "agent_master_key" {
  secret      = google_secret_manager_secret.agent_master_key.id
  secret_data = var.agent_master_key
}

resource "google_secret_manager_secret_iam_member" "functions_read_master_key" {
  secret_id = google_secret_manager_secret.agent_master_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}
