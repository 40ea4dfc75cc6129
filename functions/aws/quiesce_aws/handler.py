"""Lambda entry points: thin wrappers that convert the event, fire the policy's triggers and
report. One function per event kind, so a deploy function can never be started by an alert.

Environment: QUIESCE_POLICY (see policy_source), QUIESCE_TABLE, QUIESCE_EVENT_BUS and the
settings of quiesce_aws.provider; POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE as
usual for powertools.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from quiesce.policy import Policy
from quiesce.ports import Backends
from quiesce.triggers.router import Outcome, fire, route
from quiesce_aws.policy_source import POLICY_ENV, load_policy_from
from quiesce_aws.provider import aws_backends
from quiesce_aws.triggers import UnsupportedEvent, convert

logger = Logger(service="quiesce")
tracer = Tracer(service="quiesce")
metrics = Metrics(namespace="Quiesce", service="quiesce")

#: Seconds a run needs beyond the freeze: snapshots' calls, thaw, catalog and events.
RUN_MARGIN_SECONDS = 60


class RunDoesNotFit(Exception):
    """The function's remaining time cannot hold the group's freeze bound."""


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The policy, read once per container."""
    return load_policy_from(os.environ.get(POLICY_ENV), boto3.Session())


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and bus, built once per container and reused by warm invocations."""
    return aws_backends(policy())


def _check_time(policy: Policy, groups: set[str], context: LambdaContext) -> None:
    remaining = context.get_remaining_time_in_millis() / 1000
    for name in sorted(groups):
        needed = policy.groups[name].max_freeze_seconds + RUN_MARGIN_SECONDS
        if remaining < needed:
            raise RunDoesNotFit(
                f"group {name!r} needs at least {needed:g}s (max_freeze_seconds + "
                f"{RUN_MARGIN_SECONDS}s) but the function has {remaining:.0f}s left: raise the "
                "function's timeout"
            )


def _record(outcome: Outcome) -> None:
    dimensions = {"group": outcome.group}
    metrics.add_dimension(name="group", value=dimensions["group"])
    metrics.add_metric(name=f"Trigger_{outcome.action}", unit=MetricUnit.Count, value=1)
    if outcome.result is not None:
        metrics.add_metric(name=f"Run_{outcome.result.status}", unit=MetricUnit.Count, value=1)
        if outcome.result.freeze_window_ms is not None:
            metrics.add_metric(
                name="FreezeWindow",
                unit=MetricUnit.Milliseconds,
                value=outcome.result.freeze_window_ms,
            )


def handle(event: Any, context: LambdaContext, kinds: frozenset[str]) -> dict[str, Any]:
    try:
        trigger_events = convert(event)
    except UnsupportedEvent as exc:
        logger.error("event ignored", extra={"reason": str(exc)})
        metrics.add_metric(name="EventIgnored", unit=MetricUnit.Count, value=1)
        return {"status": "ignored", "reason": str(exc), "outcomes": []}
    loaded = policy()
    outcomes: list[dict[str, Any]] = []
    for trigger_event in trigger_events:
        if trigger_event.kind not in kinds:
            logger.error("event of the wrong kind", extra={"kind": trigger_event.kind})
            metrics.add_metric(name="EventIgnored", unit=MetricUnit.Count, value=1)
            continue
        _check_time(loaded, {t.group for t in route(loaded, trigger_event)}, context)
        logger.info(
            "trigger event",
            extra={"trigger_event": trigger_event.model_dump(mode="json")},
        )
        for outcome in fire(loaded, trigger_event, backends()):
            _record(outcome)
            logger.info(
                "trigger fired",
                extra={"outcome": outcome.model_dump(mode="json", exclude={"result"})},
            )
            outcomes.append(outcome.model_dump(mode="json"))
    return {"status": "handled", "outcomes": outcomes}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def schedule_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler → the schedule's trigger."""
    return handle(event, context, frozenset({"schedule"}))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def deploy_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CodeDeploy / CodePipeline state changes on EventBridge → deploy triggers."""
    return handle(event, context, frozenset({"deploy"}))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def alert_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CloudWatch alarms (EventBridge, SNS or alarm action) → alert triggers."""
    return handle(event, context, frozenset({"alert"}))
