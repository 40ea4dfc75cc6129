"""Cloud Functions (2nd gen) entry points: thin wrappers that convert the Pub/Sub CloudEvent,
fire the policy's triggers and log what came of it. One function per event kind, so a deploy
function can never be started by an alert:

    on_schedule   Cloud Scheduler → the quiesce-schedules topic → schedule triggers
    on_deploy     Cloud Build (cloud-builds) and Cloud Deploy (clouddeploy-operations,
                  clouddeploy-approvals) notifications → deploy triggers
    on_alert      Cloud Monitoring Pub/Sub notification channel → alert triggers

An event that is malformed or of another kind is refused: logged at ERROR with the reason, and
acknowledged (a redelivery could not change it), so it runs nothing. Errors while a run is
started propagate, so Pub/Sub redelivers; the message id keeps a redelivery from running twice.

Logs are Cloud Logging structured logs: one JSON object per line on stdout with `severity`,
`message` and the fields.

Environment: QUIESCE_POLICY (see policy_source) and the settings of quiesce_gcp.provider.
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

import functions_framework
from cloudevents.http import CloudEvent

from quiesce.policy import Policy
from quiesce.ports import Backends
from quiesce.triggers.router import fire
from quiesce_gcp.policy_source import POLICY_ENV, load_policy_from
from quiesce_gcp.provider import gcp_backends
from quiesce_gcp.triggers import UnsupportedEvent, convert


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


def handle(event: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Converts, checks the kind, fires. Returns a summary (also logged)."""
    try:
        trigger_events = convert(event)
    except UnsupportedEvent as exc:
        log("ERROR", f"event refused: {exc}", reason=str(exc), event_id=event.get("id"))
        return {"status": "refused", "reason": str(exc), "outcomes": []}
    loaded = policy()
    outcomes: list[dict[str, Any]] = []
    refused: list[str] = []
    for trigger_event in trigger_events:
        if trigger_event.kind != kind:
            reason = (
                f"a {trigger_event.kind} event ({trigger_event.source}) reached the {kind} "
                "function: it accepts only its own kind"
            )
            log("ERROR", f"event refused: {reason}", reason=reason, event_id=trigger_event.id)
            refused.append(reason)
            continue
        log("INFO", "trigger event", trigger_event=trigger_event.model_dump(mode="json"))
        fired = fire(loaded, trigger_event, backends())
        if not fired:
            log("INFO", "the event fires no trigger", event_id=trigger_event.id)
        for outcome in fired:
            summary = outcome.model_dump(mode="json")
            log(
                "ERROR" if outcome.result and outcome.result.status == "failed" else "INFO",
                f"trigger {outcome.trigger}: {outcome.action}",
                outcome=summary,
            )
            outcomes.append(summary)
    if refused and not outcomes:
        return {"status": "refused", "reason": "; ".join(refused), "outcomes": []}
    return {"status": "handled", "outcomes": outcomes}


@functions_framework.cloud_event
def on_schedule(cloud_event: CloudEvent) -> None:
    """Cloud Scheduler messages → the named schedule trigger."""
    handle(as_mapping(cloud_event), "schedule")


@functions_framework.cloud_event
def on_deploy(cloud_event: CloudEvent) -> None:
    """Cloud Build and Cloud Deploy notifications → deploy triggers."""
    handle(as_mapping(cloud_event), "deploy")


@functions_framework.cloud_event
def on_alert(cloud_event: CloudEvent) -> None:
    """Cloud Monitoring incidents → alert triggers."""
    handle(as_mapping(cloud_event), "alert")
