"""The Function App (Python v2 programming model): thin functions that convert an event, fire
the policy's triggers (quiesce.triggers.router.fire) and log what happened.

* one timer function per schedule trigger of the bundled policy, named `schedule-<trigger>`,
  on `to_ncrontab(trigger.schedule)`; the policy is read at import to know them (see
  policy_source). A trigger whose `timezone` is neither UTC nor the app's WEBSITE_TIME_ZONE is
  not registered (Azure evaluates every timer in that one zone) and an error names it.
* `deploy_events`: an Event Grid trigger for Resource Manager deployment events.
* `monitor_alerts`: an HTTP trigger (POST /api/alerts, function key) for Azure Monitor alerts
  in the common alert schema; a malformed payload gets 400 and a JSON error, and runs nothing.

One function per event kind: a deploy function can never be started by an alert. Logs are JSON
lines, and each record carries its fields in `extra` too (flat `quiesce.*` keys), which
Application Insights stores as customDimensions when the worker's OpenTelemetry export is on
(PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true).

The Functions host loads `function_app.py` from the app's root: that file holds one line,
`from quiesce_azure.function_app import app  # noqa: F401`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import azure.functions as func

from quiesce.errors import PolicyError
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import utcnow
from quiesce.triggers.cron import to_ncrontab
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.model import Trigger
from quiesce.triggers.router import fire
from quiesce_azure.policy_source import load_policy
from quiesce_azure.provider import azure_backends
from quiesce_azure.triggers import UnsupportedEvent, convert, timer_event

log = logging.getLogger("quiesce.azure")

app = func.FunctionApp()

#: The app's time zone for timers (WEBSITE_TIME_ZONE); UTC when unset.
TIME_ZONE_ENV = "WEBSITE_TIME_ZONE"


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The bundled policy, read once per worker."""
    return load_policy()


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and bus, built once per worker and reused by warm invocations."""
    return azure_backends(policy())


def emit(level: int, message: str, **fields: Any) -> None:
    """One structured log line: JSON text, and the same fields as custom dimensions."""
    flat = {
        f"quiesce.{key}": value
        if isinstance(value, str | int | float | bool)
        else json.dumps(value)
        for key, value in fields.items()
    }
    log.log(level, json.dumps({"message": message, **fields}, default=str), extra=flat)


def handle(trigger_events: list[TriggerEvent], kinds: frozenset[str]) -> list[dict[str, Any]]:
    """Fires every event of the expected kinds; returns the outcomes (JSON-ready)."""
    loaded = policy()
    outcomes: list[dict[str, Any]] = []
    for event in trigger_events:
        if event.kind not in kinds:
            emit(logging.ERROR, "event of the wrong kind", kind=event.kind, expected=sorted(kinds))
            continue
        emit(logging.INFO, "trigger event", trigger_event=event.model_dump(mode="json"))
        for outcome in fire(loaded, event, backends()):
            result = outcome.result
            emit(
                logging.INFO,
                "trigger fired",
                trigger=outcome.trigger,
                group=outcome.group,
                action=outcome.action,
                detail=outcome.detail,
                run_id=result.run_id if result else "",
                status=str(result.status) if result else "",
                freeze_window_ms=(result.freeze_window_ms or 0.0) if result else 0.0,
            )
            outcomes.append(outcome.model_dump(mode="json"))
    return outcomes


# ------------------------------------------------------------------------------ timers


def run_schedule(trigger: str, timer: func.TimerRequest) -> list[dict[str, Any]]:
    payload = {
        "IsPastDue": timer.past_due,
        # the abstract TimerRequest declares only past_due; the worker's class has these too
        "ScheduleStatus": getattr(timer, "schedule_status", None) or {},
        "Schedule": getattr(timer, "schedule", None) or {},
    }
    return handle([timer_event(payload, trigger=trigger, now=utcnow())], frozenset({"schedule"}))


def schedule_function_name(trigger: Trigger) -> str:
    return f"schedule-{trigger.name}"


def _schedule_function(trigger: str) -> Callable[[func.TimerRequest], None]:
    def schedule(timer: func.TimerRequest) -> None:
        run_schedule(trigger, timer)

    return schedule


def register_schedules(target: func.FunctionApp, loaded: Policy | None) -> dict[str, Any]:
    """One timer function per schedule trigger; returns them by trigger name."""
    registered: dict[str, Any] = {}
    zone = os.environ.get(TIME_ZONE_ENV) or "UTC"
    for trigger in loaded.triggers if loaded else []:
        if trigger.schedule is None:
            continue
        if trigger.timezone not in ("UTC", zone):
            emit(
                logging.ERROR,
                "schedule trigger not registered: Azure runs every timer of an app in "
                f"{TIME_ZONE_ENV} ({zone}), not in the trigger's time zone",
                trigger=trigger.name,
                timezone=trigger.timezone,
            )
            continue
        timed = target.timer_trigger(arg_name="timer", schedule=to_ncrontab(trigger.schedule))
        named = target.function_name(name=schedule_function_name(trigger))
        registered[trigger.name] = named(timed(_schedule_function(trigger.name)))
    return registered


def _policy_at_import() -> Policy | None:
    try:
        return policy()
    except PolicyError as exc:
        # Every invocation fails with the same error; the app itself still starts, so the
        # error reaches the logs instead of an empty function list.
        emit(
            logging.ERROR, "the policy cannot be loaded: no schedule is registered", error=str(exc)
        )
        return None


SCHEDULES = register_schedules(app, _policy_at_import())


# ------------------------------------------------------------------------------ Event Grid


def event_grid_payload(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema's fields, as the trigger hands them over."""
    return {
        "id": event.id,
        "eventType": event.event_type,
        "subject": event.subject,
        "topic": event.topic,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


@app.function_name(name="deploy_events")
@app.event_grid_trigger(arg_name="event")
def deploy_events(event: func.EventGridEvent) -> None:
    """Resource Manager deployment events → deploy triggers. A malformed event is logged and
    dropped (Event Grid would only redeliver it); failures to run raise, so it redelivers."""
    try:
        converted = convert(event_grid_payload(event))
    except UnsupportedEvent as exc:
        emit(logging.ERROR, "event ignored", reason=str(exc), event_id=event.id)
        return
    handle(converted, frozenset({"deploy"}))


# ------------------------------------------------------------------------------ alerts


def _json(status: int, body: Mapping[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", charset="utf-8"
    )


@app.function_name(name="monitor_alerts")
@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def monitor_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor alerts (action group webhook, common alert schema) → alert triggers."""
    try:
        payload = req.get_json()
    except ValueError:
        return _json(400, {"error": "the body is not JSON"})
    try:
        converted = convert(payload)
    except UnsupportedEvent as exc:
        emit(logging.ERROR, "alert refused", reason=str(exc))
        return _json(400, {"error": str(exc)})
    wrong = sorted({e.kind for e in converted} - {"alert"})
    if wrong or not converted:
        reason = f"this endpoint takes Azure Monitor alerts, not {', '.join(wrong) or 'nothing'}"
        emit(logging.ERROR, "alert refused", reason=reason)
        return _json(400, {"error": reason})
    return _json(200, {"status": "handled", "outcomes": handle(converted, frozenset({"alert"}))})
