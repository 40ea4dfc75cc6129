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

# Exactly what quiesce_gcp's adapters declare (tests/gcp/test_iam.py). A project custom role
# can only be granted in its own project: one per member project.
resource "google_project_iam_custom_role" "adapters" {
  for_each = local.member_projects

  project     = each.key
  role_id     = "quiesceAdapters"
  title       = "Quiesce adapters"
  description = "Compute Engine and Pub/Sub permissions declared by Quiesce's GCP adapters."
  permissions = local.adapter_permissions
}

resource "google_project_iam_member" "adapters" {
  for_each = local.member_projects

  project = each.key
  role    = google_project_iam_custom_role.adapters[each.key].name
  member  = google_service_account.functions.member
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
