resource "google_storage_bucket" "source" {
  name                        = "${var.project}-${var.name}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  # checkov:skip=CKV_GCP_62:The bucket holds only function source archives; Cloud Audit Logs record access.
}

resource "google_storage_bucket_object" "source" {
  name   = "functions/${filesha256(var.function_source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.function_source_zip
}

resource "google_cloudfunctions2_function" "quiesce" {
  for_each = local.functions

  name     = "${var.name}-${each.key}"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = each.value.entry_point
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
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_environment
    secret_environment_variables {
      key        = "QUIESCE_AGENT_MASTER_KEY"
      project_id = var.project
      secret     = google_secret_manager_secret.agent_master_key.secret_id
      version    = google_secret_manager_secret_version.agent_master_key.version
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = each.value.topic
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.invoker.email
  }
}

# on_deploy also takes Cloud Deploy notifications: rollout operations (a second trigger on its
# service) and approvals (a third).
resource "google_eventarc_trigger" "clouddeploy" {
  name            = "${var.name}-clouddeploy"
  location        = var.region
  service_account = google_service_account.invoker.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = "projects/${var.project}/topics/clouddeploy-operations"
    }
  }

  destination {
    cloud_run_service {
      service = google_cloudfunctions2_function.quiesce["deploy"].service_config[0].service
      region  = var.region
    }
  }

  depends_on = [google_pubsub_topic.clouddeploy_operations]
}

resource "google_eventarc_trigger" "clouddeploy_approvals" {
  name            = "${var.name}-clouddeploy-approvals"
  location        = var.region
  service_account = google_service_account.invoker.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = "projects/${var.project}/topics/clouddeploy-approvals"
    }
  }

  destination {
    cloud_run_service {
      service = google_cloudfunctions2_function.quiesce["deploy"].service_config[0].service
      region  = var.region
    }
  }

  depends_on = [google_pubsub_topic.clouddeploy_approvals]
}
