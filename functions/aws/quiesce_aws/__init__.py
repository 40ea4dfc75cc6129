"""Quiesce on AWS: adapters for the core's ports (SSM Run Command hooks, EBS snapshots,
EventBridge events, DynamoDB state) and the Lambda entry points."""
