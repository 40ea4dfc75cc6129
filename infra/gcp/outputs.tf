output "functions" {
  description = "The Cloud Functions by kind."
  value       = { for k, f in google_cloudfunctions2_function.quiesce : k => f.name }
}

output "events_topic" {
  description = "Quiesce's CloudEvents: subscribe to this topic."
  value       = google_pubsub_topic.events.id
}

output "notification_channel" {
  description = "Add this channel to the alert policies that may fire alert triggers."
  value       = google_monitoring_notification_channel.alerts.id
}

output "guest_bucket" {
  description = "Pass it to scripts/gcp_os_policy.py --bucket."
  value       = google_storage_bucket.guest.name
}

output "functions_service_account" {
  description = "The functions' identity."
  value       = google_service_account.functions.email
}

output "webhook_notification_channel" {
  description = "With create_monitoring_webhook: the webhook channel (on_alert_webhook) to add to alert policies instead of, or beside, notification_channel."
  value       = one([for c in google_monitoring_notification_channel.webhook : c.id])
}

output "alert_webhook_url" {
  description = "With create_monitoring_webhook: on_alert_webhook's URL."
  value       = one([for f in google_cloudfunctions2_function.alert_webhook : f.url])
}

output "restore_roles" {
  description = "Per project, the custom role `quiesce restore --execute` needs; grant it to whoever restores (the functions never get it)."
  value       = { for p, r in google_project_iam_custom_role.restore : p => r.name }
}

output "drill_service_account" {
  description = "The drill function's identity (launches, verifies and deletes restored copies)."
  value       = google_service_account.drill.email
}
