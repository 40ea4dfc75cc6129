"""The normalized trigger event every cloud event is converted into."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Attribute = Annotated[str, StringConstraints(max_length=256)]
#: What an event may start: a schedule's trigger, or the triggers `on: deploy` / `on: alert`.
Kind = Literal["schedule", "deploy", "alert"]


class TriggerEvent(BaseModel):
    """One event that may start runs: a schedule firing, a deployment, an alert.

    `id` is the idempotency key: the same event delivered twice starts nothing new. `time` is
    timezone-aware and in UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    source: str = Field(description="Where it came from, e.g. aws.codedeploy.", max_length=256)
    id: str = Field(min_length=1, max_length=256)
    time: datetime
    trigger: str | None = Field(
        default=None, description="For schedules: the name of the trigger that fired."
    )
    attributes: dict[str, Attribute] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time needs a time zone (converters read timestamps as UTC)")
        return value.astimezone(UTC)
