"""The drill function's request: Cloud Scheduler's HTTP call (infra/gcp/drill.tf) naming a
drill trigger, `{"trigger": "<name>"}`, turned into a schedule event.

Cloud Scheduler sends the job's name and the time the run was scheduled for as the headers
`X-CloudScheduler-JobName` and `X-CloudScheduler-ScheduleTime`: together they are the event's
id, so a call delivered twice for the same scheduled time is the same drill (the core claims it
once). The function serves drill triggers only: a body naming a backup trigger is refused, so
the drill account (which can launch machines, not snapshot them) never runs a backup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime

from quiesce.policy.model import Policy
from quiesce.record import utcnow
from quiesce.triggers.convert import UnsupportedEvent, identifier, text, timestamp
from quiesce.triggers.event import TriggerEvent

JOB_HEADER = "X-CloudScheduler-JobName"
TIME_HEADER = "X-CloudScheduler-ScheduleTime"


def drill_converter(
    policy: Policy,
    headers: Mapping[str, str],
    *,
    now: Callable[[], datetime] = utcnow,
) -> Callable[[object], list[TriggerEvent]]:
    """A converter of the request body, given the request's headers and the policy."""

    def convert(body: object) -> list[TriggerEvent]:
        if isinstance(body, bytes | bytearray | str):
            try:
                body = json.loads(body)
            except ValueError:
                raise UnsupportedEvent("the body is not JSON") from None
        if not isinstance(body, Mapping) or not isinstance(body.get("trigger"), str):
            raise UnsupportedEvent('expected {"trigger": "<name of a drill trigger>"}')
        name = body["trigger"]
        trigger = next((t for t in policy.triggers if t.name == name), None)
        if trigger is None or trigger.action != "drill":
            raise UnsupportedEvent(
                f"trigger {name!r} is not a drill trigger of policy {policy.name!r}: the drill "
                "function runs drills only"
            )
        job = text(headers.get(JOB_HEADER))
        scheduled = text(headers.get(TIME_HEADER))
        when = timestamp(scheduled) if scheduled else now()
        return [
            TriggerEvent(
                kind="schedule",
                source="gcp.scheduler.http",
                id=identifier(f"{job or name}:{scheduled or when.isoformat()}"),
                time=when,
                trigger=name,
                attributes={"job": job} if job else {},
            )
        ]

    return convert
