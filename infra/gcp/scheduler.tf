resource "google_cloud_scheduler_job" "trigger" {
  for_each = local.schedule_triggers

  name      = "${var.name}-${each.key}"
  region    = var.region
  schedule  = each.value.schedule
  time_zone = each.value.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.schedules.id
    data       = base64encode(jsonencode({ trigger = each.key }))
  }
}
