"""The policy's `triggers:` section: what may start a run of which group."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quiesce.triggers.cron import validate_cron
from quiesce.triggers.event import Kind

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: The default minimum interval between event-started runs of a group (per event kind): a
#: burst of alerts, or a pipeline's several deployments, backs the group up once.
DEFAULT_COOLDOWN_MINUTES = 15.0


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
    action: Literal["backup", "drill"] = Field(
        default="backup",
        description=(
            "`backup`: run the group. `drill` (schedules only): restore the group's latest "
            "recovery point into isolation (its `restore:` site, or a copy's), run the verify "
            "hooks, measure the recovery time, and delete everything the drill created."
        ),
        examples=["drill"],
    )
    region: str | None = Field(
        default=None,
        max_length=64,
        description="For a drill: the region of the group's copy to restore (default: the "
        "group's own recovery points).",
        examples=["eu-west-1"],
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Every key must match the event's attribute of that name (shell-style wildcards: "
            "`*`, `?`, `[...]`). Deploy attributes: application, deployment_group, pipeline, "
            "stage, action, state, provider; a trigger that does not name `stage` fires on "
            "pipeline-level events only, one that does not name `action` not on actions' "
            "events. Alert attributes: alarm, state, condition (firing, "
            "resolved, other), previous_state, severity, suppressed, provider; a trigger that "
            "names neither `state` nor `condition` fires only while the alert fires, and never "
            "on an alert whose actions are suppressed unless it names `suppressed`."
        ),
        examples=[{"alarm": "orders-db-*", "state": "ALARM"}],
    )
    cooldown_minutes: float | None = Field(
        default=None,
        ge=0,
        description=(
            "The shortest time between two runs of the group started by events of this "
            "trigger's kind (alert or deploy): an event within it is answered `cooldown`. Only "
            "a run that began its quiesce starts the interval. Default for alert and deploy "
            f"triggers: {DEFAULT_COOLDOWN_MINUTES:g}; 0 turns it off. Schedules have none "
            "unless given."
        ),
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
        if self.action == "drill" and self.schedule is None:
            raise ValueError("action: drill is for schedules (a drill is planned, not an alarm)")
        if self.region is not None and self.action != "drill":
            raise ValueError("region is for drills (action: drill)")
        return self

    @property
    def kind(self) -> Kind:
        return "schedule" if self.on is None else self.on

    @property
    def cooldown_seconds(self) -> float:
        """The interval in force: the given one, else the default for event triggers."""
        if self.cooldown_minutes is not None:
            return self.cooldown_minutes * 60
        return 0.0 if self.on is None else DEFAULT_COOLDOWN_MINUTES * 60
