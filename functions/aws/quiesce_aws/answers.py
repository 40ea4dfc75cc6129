"""Values read from what AWS answers: the region in an ARN, and a timestamp made aware."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def arn_region(arn: str, service: str | None = None) -> str | None:
    """The region of an ARN (arn:partition:service:region:account:resource); None when it
    has none, is no ARN, or (with `service`) is another service's."""
    parts = arn.split(":")
    if len(parts) <= 5 or not parts[3]:
        return None
    if service is not None and parts[2] != service:
        return None
    return parts[3]


def aware(value: Any) -> datetime | None:
    """A timestamp of an answer with its time zone (boto3's are UTC); None if it is none."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
