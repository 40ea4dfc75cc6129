"""Lambda entry points: thin wrappers around the core's trigger front door
(quiesce.triggers.front_door), which converts the event with quiesce_aws.triggers, refuses what
the function does not serve or a run that cannot fit the remaining time, fires the policy's
triggers and answers `fired | ignored | refused`. One function per event kind, so a deploy
function can never be started by an alert.

Environment: QUIESCE_POLICY (see policy_source), QUIESCE_TABLE, QUIESCE_EVENT_BUS and the
settings of quiesce_aws.provider; POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE as
usual for powertools.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from quiesce.policy import Policy
from quiesce.ports import Backends
from quiesce.triggers.event import Kind
from quiesce.triggers.front_door import (
    RUN_MARGIN_SECONDS,
    Answer,
    Deadline,
    FrontDoor,
    Reporter,
)
from quiesce.triggers.router import Outcome
from quiesce_aws.policy_source import POLICY_ENV, load_policy_from
from quiesce_aws.provider import aws_backends
from quiesce_aws.triggers import convert

logger = Logger(service="quiesce")
tracer = Tracer(service="quiesce")
metrics = Metrics(namespace="Quiesce", service="quiesce")

__all__ = ["RUN_MARGIN_SECONDS", "alert_handler", "deploy_handler", "schedule_handler"]


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The policy, read once per container."""
    return load_policy_from(os.environ.get(POLICY_ENV), boto3.Session())


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and bus, built once per container and reused by warm invocations."""
    return aws_backends(policy())


class PowertoolsReporter(Reporter):
    """The front door's lines through the Powertools logger, and its metrics."""

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if level >= logging.ERROR:
            logger.error(message, extra=fields)
        else:
            logger.info(message, extra=fields)

    def fired(self, outcome: Outcome) -> None:
        super().fired(outcome)
        metrics.add_dimension(name="group", value=outcome.group)
        metrics.add_metric(name=f"Trigger_{outcome.action}", unit=MetricUnit.Count, value=1)
        if outcome.result is not None:
            metrics.add_metric(name=f"Run_{outcome.result.status}", unit=MetricUnit.Count, value=1)
            if outcome.result.freeze_window_ms is not None:
                metrics.add_metric(
                    name="FreezeWindow",
                    unit=MetricUnit.Milliseconds,
                    value=outcome.result.freeze_window_ms,
                )

    def answered(self, answer: Answer) -> None:
        super().answered(answer)
        metrics.add_metric(name=f"Event_{answer.status}", unit=MetricUnit.Count, value=1)


def serve(event: Any, context: LambdaContext, kind: Kind) -> dict[str, Any]:
    """The front door, with the time the Lambda context says is left."""
    left = Deadline(lambda: context.get_remaining_time_in_millis() / 1000, "the Lambda context")
    door = FrontDoor(policy, backends, PowertoolsReporter())
    return door.handle(event, kind, convert, left).as_json()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def schedule_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler → the schedule's trigger."""
    return serve(event, context, "schedule")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def deploy_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CodeDeploy / CodePipeline state changes on EventBridge → deploy triggers."""
    return serve(event, context, "deploy")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def alert_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CloudWatch alarms (EventBridge, SNS or alarm action) → alert triggers."""
    return serve(event, context, "alert")
