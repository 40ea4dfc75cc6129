"""The policy's `triggers:` section: what may start a run of which group."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quiesce.triggers.cron import validate_cron
from quiesce.triggers.event import Kind

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Trigger(BaseModel):
    """A schedule, a deployment or an alert that starts a run of one group.

    A trigger event only selects a trigger: it never carries hooks, scripts or commands.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(
        pattern=NAME_PATTERN, description="The trigger's name, unique.", examples=["nightly"]
    )
    group: str = Field(description="The group it backs up.", examples=["orders"])
    schedule: str | None = Field(
        default=None,
        description="Five-field cron (minute hour day-of-month month day-of-week).",
        examples=["0 4 * * *"],
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone the schedule is read in.",
        examples=["Europe/Berlin"],
    )
    on: Literal["deploy", "alert"] | None = Field(
        default=None,
        description="Event kind that fires it: `deploy` (a deployment event) or `alert`.",
        examples=["deploy"],
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Every key must match the event's attribute of that name (shell-style wildcards: "
            "`*`, `?`, `[...]`). Deploy attributes: application, deployment_group, pipeline, "
            "stage, state, provider. Alert attributes: alarm, state, previous_state, "
            "severity, provider."
        ),
        examples=[{"alarm": "orders-db-*", "state": "ALARM"}],
    )
    cooldown_minutes: float | None = Field(
        default=None,
        gt=0,
        description="After firing, the trigger ignores events for this long.",
        examples=[60],
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.schedule is None) == (self.on is None):
            raise ValueError("give exactly one of schedule or on")
        if self.schedule is not None and self.match:
            raise ValueError("match is for event triggers (on: deploy | alert), not schedules")
        return self

    @property
    def kind(self) -> Kind:
        return "schedule" if self.on is None else self.on
