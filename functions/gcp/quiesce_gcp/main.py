"""Cloud Functions (2nd gen) entry points: thin wrappers around the core's trigger front door
(quiesce.triggers.front_door), which converts the Pub/Sub CloudEvent with quiesce_gcp.triggers,
refuses what the function does not serve or a run that cannot fit its time, fires the policy's
triggers and answers `fired | ignored | refused` (logged). One function per event kind, so a
deploy function can never be started by an alert:

    on_schedule   Cloud Scheduler → the quiesce-schedules topic → schedule triggers
    on_deploy     Cloud Build (cloud-builds) and Cloud Deploy (clouddeploy-operations,
                  clouddeploy-approvals) notifications → deploy triggers
    on_alert      Cloud Monitoring Pub/Sub notification channel → alert triggers
    on_drill      Cloud Scheduler (HTTP, OIDC) → drill triggers only (quiesce_gcp.drill_http),
                  as the drill account, with its own longer timeout; answers the front
                  door's JSON (400 when refused)
    on_alert_webhook
                  Cloud Monitoring webhook notification channel (HTTP POST, basic auth or
                  ?token=, quiesce_gcp.webhook) → alert triggers; answers JSON: 200 with the
                  front door's answer, 400 with `error` for a refused body, 401/403 without
                  the channel's secret

An event that is malformed or of another kind, or whose run cannot fit the function's time, is
refused: logged at ERROR with the reason, and acknowledged (a redelivery could not change it),
so it runs nothing. Cloud Functions have no remaining-time API: the time left is the configured
timeout (QUIESCE_FUNCTION_TIMEOUT_SECONDS, which Terraform sets to the function's timeout; 60 s,
the platform's default, when unset) minus what has passed since the invocation began. Errors
while a run is started propagate, so Pub/Sub redelivers: the redelivery runs the backup when
the first attempt stopped before its quiesce, and reports that run otherwise (the claim belongs
to the run, quiesce.engine.claims).

Logs are Cloud Logging structured logs: one JSON object per line on stdout with `severity`,
`message` and the fields.

Environment: QUIESCE_POLICY (see policy_source), QUIESCE_FUNCTION_TIMEOUT_SECONDS and the
settings of quiesce_gcp.provider; on_alert_webhook also QUIESCE_WEBHOOK_TOKEN.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent

from quiesce.errors import QuiesceError
from quiesce.policy import Policy
from quiesce.ports import Backends
from quiesce.providers.registry import register
from quiesce.triggers.event import Kind
from quiesce.triggers.front_door import Converter, Deadline, FrontDoor, Reporter
from quiesce_gcp import webhook
from quiesce_gcp.drill_http import drill_converter
from quiesce_gcp.managed_spec import MANAGED_SPECS
from quiesce_gcp.policy_source import POLICY_ENV, load_policy_from
from quiesce_gcp.spec import SPEC
from quiesce_gcp.triggers import convert, convert_webhook

# The function's source carries no package metadata: register the provider's spec; the adapters
# and their Google Cloud clients are imported when a run first needs its backends.
register(SPEC)
for _managed in MANAGED_SPECS.values():  # Cloud SQL and Filestore members
    register(_managed)

#: The function's configured timeout in seconds (Terraform sets it from the function's).
TIMEOUT_ENV = "QUIESCE_FUNCTION_TIMEOUT_SECONDS"
#: Cloud Functions' timeout when none is configured.
DEFAULT_TIMEOUT_SECONDS = 60


def log(severity: str, message: str, **fields: Any) -> None:
    """Writes one Cloud Logging structured entry (a JSON line on stdout)."""
    entry = {"severity": severity, "message": message, **fields}
    sys.stdout.write(json.dumps(entry, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class CloudLoggingFormatter(logging.Formatter):
    """Formats standard logging records as Cloud Logging structured entries."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
        }
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def _install_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    for name in ("quiesce", "quiesce_gcp"):
        logger = logging.getLogger(name)
        if not any(isinstance(h.formatter, CloudLoggingFormatter) for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


_install_logging()


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The policy, read once per instance."""
    return load_policy_from(os.environ.get(POLICY_ENV))


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and topic, built once per instance and reused by warm invocations."""
    from quiesce_gcp.provider import gcp_backends

    return gcp_backends(policy())


def as_mapping(cloud_event: CloudEvent) -> dict[str, Any]:
    """The CloudEvent as its structured-mode JSON: attributes plus `data`."""
    event: dict[str, Any] = dict(cloud_event.get_attributes())
    data = cloud_event.get_data()
    if isinstance(data, bytes | bytearray):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    event["data"] = data
    return event


class CloudLoggingReporter(Reporter):
    """The front door's lines as Cloud Logging structured entries."""

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        log(logging.getLevelName(level), message, **fields)


def deadline(env: Mapping[str, str] | None = None) -> Deadline:
    """The configured timeout, counted from now (the invocation's start)."""
    env = os.environ if env is None else env
    value = env.get(TIMEOUT_ENV)
    if value is None:
        return Deadline.after(
            DEFAULT_TIMEOUT_SECONDS,
            f"{TIMEOUT_ENV} unset: Cloud Functions' default timeout of "
            f"{DEFAULT_TIMEOUT_SECONDS}s assumed",
        )
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise QuiesceError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds above 0")
    return Deadline.after(seconds, f"timeout {TIMEOUT_ENV}={value}s")


def serve(event: object, kind: Kind, converter: Converter = convert) -> dict[str, Any]:
    """The front door, with the time the function's timeout leaves from now."""
    door = FrontDoor(policy, backends, CloudLoggingReporter())
    return door.handle(event, kind, converter, deadline()).as_json()


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> flask.Response:
    return flask.Response(
        json.dumps(body), status=status, mimetype="application/json", headers=dict(headers or {})
    )


@functions_framework.cloud_event
def on_schedule(cloud_event: CloudEvent) -> None:
    """Cloud Scheduler messages → the named schedule trigger."""
    serve(as_mapping(cloud_event), "schedule")


@functions_framework.cloud_event
def on_deploy(cloud_event: CloudEvent) -> None:
    """Cloud Build and Cloud Deploy notifications → deploy triggers."""
    serve(as_mapping(cloud_event), "deploy")


@functions_framework.cloud_event
def on_alert(cloud_event: CloudEvent) -> None:
    """Cloud Monitoring incidents → alert triggers."""
    serve(as_mapping(cloud_event), "alert")


@functions_framework.http
def on_alert_webhook(request: flask.Request) -> flask.Response:
    """Cloud Monitoring webhook notifications → alert triggers. Without the channel's secret:
    401/403, nothing read. A refused body gets 400 with the reason as `error`."""
    denied = webhook.authenticate(
        request.headers.get("Authorization"),
        request.args.get(webhook.TOKEN_PARAMETER),
        os.environ.get(webhook.TOKEN_ENV),
    )
    if denied is not None:
        log(
            "ERROR" if denied.status == 403 else "WARNING",
            "webhook request denied",
            status=denied.status,
            reason=denied.detail,
        )
        challenge = {"WWW-Authenticate": webhook.CHALLENGE} if denied.status == 401 else {}
        return _json(denied.status, {"error": denied.error}, challenge)
    answer = serve(request.get_data(), "alert", convert_webhook)
    if answer["status"] == "refused":
        return _json(400, {"error": answer["reason"], **answer})
    return _json(200, answer)


@functions_framework.http
def on_drill(request: flask.Request) -> flask.Response:
    """Cloud Scheduler's call naming a drill trigger → the drill (never a backup)."""
    answer = serve(request.get_data(), "schedule", drill_converter(policy(), dict(request.headers)))
    if answer["status"] == "refused":
        return _json(400, {"error": answer["reason"], **answer})
    return _json(200, answer)
