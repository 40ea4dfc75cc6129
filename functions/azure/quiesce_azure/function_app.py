"""The Function App (Python v2 programming model): thin functions around the core's trigger
front door (quiesce.triggers.front_door), which converts the event with quiesce_azure.triggers,
refuses what the function does not serve or a run that cannot fit its time, fires the policy's
triggers and answers `fired | ignored | refused` (logged; the alert endpoint's HTTP body).

The time a run has is the app's `functionTimeout` (the app setting
`AzureFunctionsJobHost__functionTimeout`, which overrides host.json; else host.json in the app's
root; Flex Consumption's default of 30 minutes when neither names one) from the start of the
invocation.

* one timer function per schedule trigger of the bundled policy, named `schedule-<trigger>`,
  on `to_ncrontab(trigger.schedule)`; the policy is read at import to know them (see
  policy_source). The same package runs as two apps with two identities (QUIESCE_APP): the
  backup app (`backup`, the default) registers the backup schedules, the drill app (`drill`)
  only the drill schedules (`action: drill`), so only the drill identity may launch VMs. A
  trigger whose `timezone` is neither UTC nor the app's WEBSITE_TIME_ZONE is
  not registered (Azure evaluates every timer in that one zone) and an error names it.
* `deploy_events`: an Event Grid trigger for Resource Manager deployment events, in the Event
  Grid schema (`func.EventGridEvent`) or the CloudEvents 1.0 schema (`func.CloudEvent`).
* `monitor_alerts`: an HTTP trigger (POST /api/alerts, function key) for Azure Monitor alerts
  in the common alert schema; a refused payload gets 400 and a JSON error, and runs nothing.

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
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.functions as func

from quiesce.errors import PolicyError, QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.providers.registry import register
from quiesce.record import utcnow
from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.event import Kind, TriggerEvent
from quiesce.triggers.front_door import Converter, Deadline, FrontDoor, Reporter
from quiesce.triggers.model import Trigger
from quiesce_azure.policy_source import app_root, load_policy
from quiesce_azure.spec import SPEC
from quiesce_azure.triggers import convert, event_grid_event, timer_event, to_ncrontab

# The app is built by copying sources (no package metadata): register the provider's spec, so
# the policy read below accepts its members. The adapters and the Azure SDK clients they use
# are imported when a run first needs its backends, not at the worker's start.
register(SPEC)

log = logging.getLogger("quiesce.azure")

app = func.FunctionApp()

#: The app's time zone for timers (WEBSITE_TIME_ZONE); UTC when unset.
TIME_ZONE_ENV = "WEBSITE_TIME_ZONE"
#: Flex Consumption's functionTimeout when host.json names none.
DEFAULT_TIMEOUT_SECONDS = 1800
#: The app setting that overrides host.json's functionTimeout (the drill app sets it longer).
TIMEOUT_ENV = "AzureFunctionsJobHost__functionTimeout"
#: Which schedules this app serves: "backup" (default) or "drill" (the drill app).
APP_ENV = "QUIESCE_APP"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):([0-5]?\d):([0-5]?\d(?:\.\d+)?)$")


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The bundled policy, read once per worker."""
    return load_policy()


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and bus, built once per worker and reused by warm invocations."""
    from quiesce_azure.provider import azure_backends

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


class AzureReporter(Reporter):
    """The front door's lines through `emit` (JSON text and custom dimensions)."""

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        emit(level, message, **fields)


def function_timeout(env: Mapping[str, str] | None = None) -> tuple[float | None, str]:
    """The app's functionTimeout in seconds (None: unbounded, "-1") and where it comes from."""
    env = os.environ if env is None else env
    host = app_root(env) / "host.json"
    if env.get(TIMEOUT_ENV):
        value, host = env[TIMEOUT_ENV], Path(f"app setting {TIMEOUT_ENV}")
    else:
        try:
            value = json.loads(host.read_text(encoding="utf-8")).get("functionTimeout")
        except FileNotFoundError:
            value = None
        except (OSError, ValueError, AttributeError) as exc:
            raise QuiesceError(f"{host}: cannot read functionTimeout: {exc}") from None
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS, (
            f"{host} names no functionTimeout: Flex Consumption's default of "
            f"{DEFAULT_TIMEOUT_SECONDS}s assumed"
        )
    if str(value).strip() == "-1":
        return None, f"{host}: functionTimeout -1 (unbounded)"
    match = _TIMESPAN.match(str(value).strip())
    if match is None:
        raise QuiesceError(f"{host}: functionTimeout {value!r} is not a timespan like 00:30:00")
    days, hours, minutes, seconds = match.groups()
    total = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)
    return total, f"{host}: functionTimeout {value}"


def serve(payload: object, kind: Kind, convert: Converter) -> dict[str, Any]:
    """The front door, with the time the app's functionTimeout leaves from now."""
    door = FrontDoor(policy, backends, AzureReporter())
    return door.handle(payload, kind, convert, Deadline.after(*function_timeout())).as_json()


# ------------------------------------------------------------------------------ timers


def run_schedule(trigger: str, timer: func.TimerRequest) -> dict[str, Any]:
    payload = {
        "IsPastDue": timer.past_due,
        # the abstract TimerRequest declares only past_due; the worker's class has these too
        "ScheduleStatus": getattr(timer, "schedule_status", None) or {},
        "Schedule": getattr(timer, "schedule", None) or {},
    }

    def fired(timer_payload: Mapping[str, Any]) -> list[TriggerEvent]:
        return [timer_event(timer_payload, trigger=trigger, now=utcnow())]

    return serve(payload, "schedule", fired)


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
    drills = os.environ.get(APP_ENV, "backup") == "drill"
    for trigger in loaded.triggers if loaded else []:
        if trigger.schedule is None or (trigger.action == "drill") != drills:
            continue  # the other app's schedule
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


def _iso(moment: object) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else None


def event_grid_payload(event: object) -> dict[str, Any]:
    """The event in the schema Event Grid delivered it in. azure-functions decodes an event in
    the CloudEvents 1.0 schema (it has `specversion`) into `func.CloudEvent` (1.25 and later)
    and one in the Event Grid schema into `func.EventGridEvent`; both get here."""
    get_json = getattr(event, "get_json", None)
    data = get_json() if callable(get_json) else None
    version = getattr(event, "specversion", None)
    if version:
        return {
            "specversion": version,
            "id": getattr(event, "id", None),
            "type": getattr(event, "type", None),
            "source": getattr(event, "source", None),
            "subject": getattr(event, "subject", None),
            "time": _iso(getattr(event, "time", None)),
            "data": data,
        }
    return {
        "id": getattr(event, "id", None),
        "eventType": getattr(event, "event_type", None),
        "subject": getattr(event, "subject", None),
        "topic": getattr(event, "topic", None),
        "eventTime": _iso(getattr(event, "event_time", None)),
        "dataVersion": getattr(event, "data_version", None),
        "data": data,
    }


@app.function_name(name="deploy_events")
@app.event_grid_trigger(arg_name="event")
def deploy_events(event: func.EventGridEvent) -> None:
    """Resource Manager deployment events, in the Event Grid or the CloudEvents 1.0 schema →
    deploy triggers. A malformed event is logged and dropped (Event Grid would only redeliver
    it); failures to run raise, so it redelivers. (The worker accepts one class as the
    annotation and hands over whichever class the event decoded to.)"""
    serve(event_grid_payload(event), "deploy", event_grid_event)


# ------------------------------------------------------------------------------ alerts


def _json(status: int, body: Mapping[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", charset="utf-8"
    )


def alert_body(req: func.HttpRequest) -> list[TriggerEvent]:
    """The request's JSON body, converted."""
    try:
        payload = req.get_json()
    except ValueError:
        raise UnsupportedEvent("the body is not JSON") from None
    return convert(payload)


@app.function_name(name="monitor_alerts")
@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def monitor_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor alerts (action group webhook, common alert schema) → alert triggers. A
    refused alert gets 400 (an action group does not retry it) with the reason as `error`."""
    answer = serve(req, "alert", alert_body)
    if answer["status"] == "refused":
        return _json(400, {"error": answer["reason"], **answer})
    return _json(200, answer)
