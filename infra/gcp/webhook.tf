# Optional (create_monitoring_webhook): on_alert_webhook, an HTTP function for a Cloud Monitoring
# webhook notification channel, beside the Pub/Sub channel of on_alert. Cloud Monitoring calls
# webhooks from the internet without a Google identity token, so the function is reachable by
# anyone; it turns away every request that does not carry the channel's secret (the basic auth
# password, compared in constant time) with 401/403 before it reads anything.

locals {
  webhook = var.create_monitoring_webhook ? toset(["alert"]) : toset([])
}

resource "google_secret_manager_secret" "webhook_token" {
  for_each = local.webhook

  secret_id = "${var.name}-webhook-token"
  replication {
    auto {}
  }
  # checkov:skip=CKV_GCP_128:Google-managed encryption; the secret is readable by the functions' account only.
}

resource "google_secret_manager_secret_version" "webhook_token" {
  for_each = local.webhook

  secret      = google_secret_manager_secret.webhook_token[each.key].id
  secret_data = var.monitoring_webhook_token

  lifecycle {
    precondition {
      condition     = var.monitoring_webhook_token != null
      error_message = "create_monitoring_webhook needs monitoring_webhook_token (openssl rand -hex 32)."
    }
  }
}

resource "google_secret_manager_secret_iam_member" "functions_read_webhook_token" {
  for_each = local.webhook

  secret_id = google_secret_manager_secret.webhook_token[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

resource "google_cloudfunctions2_function" "alert_webhook" {
  for_each = local.webhook

  name     = "${var.name}-alert-webhook"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "on_alert_webhook"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    max_instance_count             = 10
    available_memory               = "512M"
    timeout_seconds                = var.function_timeout_seconds
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_environment
    secret_environment_variables {
      key        = "QUIESCE_AGENT_MASTER_KEY"
      project_id = var.project
      secret     = google_secret_manager_secret.agent_master_key.secret_id
      version    = google_secret_manager_secret_version.agent_master_key.version
    }
    secret_environment_variables {
      key        = "QUIESCE_WEBHOOK_TOKEN"
      project_id = var.project
      secret     = google_secret_manager_secret.webhook_token[each.key].secret_id
      version    = google_secret_manager_secret_version.webhook_token[each.key].version
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.functions_read_webhook_token]
}

# Anyone may reach the function (Cloud Monitoring has no identity to present); the function
# itself refuses every request without the channel's secret.
resource "google_cloud_run_service_iam_member" "alert_webhook_public" {
  for_each = local.webhook

  location = var.region
  service  = google_cloudfunctions2_function.alert_webhook[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_monitoring_notification_channel" "webhook" {
  for_each = local.webhook

  display_name = "${var.name} alerts (webhook)"
  type         = "webhook_basicauth"
  labels = {
    url      = google_cloudfunctions2_function.alert_webhook[each.key].url
    username = "quiesce"
  }
  sensitive_labels {
    password = var.monitoring_webhook_token
  }
}
