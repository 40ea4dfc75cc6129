# The catalog: runs, recovery points, group locks, trigger claims, cooldowns and the outbox, in
# one table (the key design is documented in functions/aws/quiesce_aws/state.py). Locks, trigger
# claims and cooldowns expire through the ttl attribute.

resource "aws_dynamodb_table" "state" {
  name                        = "${local.name}-state"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "gsi1pk"
    type = "S"
  }

  attribute {
    name = "gsi1sk"
    type = "S"
  }

  attribute {
    name = "lsi1sk"
    type = "S"
  }

  # Runs and recovery points by policy, newest first.
  global_secondary_index {
    name               = "gsi1"
    hash_key           = "gsi1pk"
    range_key          = "gsi1sk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["grp"]
  }

  # The outbox in the order its events came.
  local_secondary_index {
    name            = "lsi1"
    range_key       = "lsi1sk"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.quiesce.arn
  }
}
