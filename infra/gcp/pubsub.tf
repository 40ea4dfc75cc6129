# Cloud Scheduler publishes {"trigger": "<name>"} here; on_schedule is subscribed.
resource "google_pubsub_topic" "schedules" {
  name                       = "${var.name}-schedules"
  kms_key_name               = var.kms_key_name
  message_retention_duration = "86400s"
}

# Quiesce's CloudEvents (run started, succeeded, failed, ...).
resource "google_pubsub_topic" "events" {
  name                       = "${var.name}-events"
  kms_key_name               = var.kms_key_name
  message_retention_duration = "604800s"
}

# The monitoring notification channel publishes incidents here; on_alert is subscribed.
resource "google_pubsub_topic" "alerts" {
  name         = "${var.name}-alerts"
  kms_key_name = var.kms_key_name
}

# Cloud Deploy publishes to these fixed names: rollout operations and approvals.
resource "google_pubsub_topic" "clouddeploy_operations" {
  count        = var.create_clouddeploy_topic ? 1 : 0
  name         = "clouddeploy-operations"
  kms_key_name = var.kms_key_name
}

resource "google_pubsub_topic" "clouddeploy_approvals" {
  count        = var.create_clouddeploy_topic ? 1 : 0
  name         = "clouddeploy-approvals"
  kms_key_name = var.kms_key_name
}

resource "google_monitoring_notification_channel" "alerts" {
  display_name = "${var.name} alerts (Pub/Sub)"
  type         = "pubsub"
  labels = {
    topic = google_pubsub_topic.alerts.id
  }
}

# Cloud Monitoring's notification service agent publishes the incidents.
resource "google_pubsub_topic_iam_member" "monitoring_publishes_alerts" {
  topic  = google_pubsub_topic.alerts.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}
