resource "google_firestore_database" "catalog" {
  count = var.create_firestore_database ? 1 : 0

  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
}

# Expired locks, trigger claims and cooldowns are deleted by a TTL policy on expire_at.
resource "google_firestore_field" "ttl" {
  for_each = toset(["locks", "triggers", "cooldowns"])

  database   = local.firestore_database
  collection = "quiesce-${each.key}"
  field      = "expire_at"
  ttl_config {}
  index_config {}
}
