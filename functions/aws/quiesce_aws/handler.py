"""Lambda entry points: thin wrappers around the core's trigger front door
(quiesce.triggers.front_door), which converts the event with quiesce_aws.triggers, refuses what
the function does not serve or a run that cannot fit the remaining time, fires the policy's
triggers and answers `fired | ignored | refused`. One function per event kind, so a deploy
function can never be started by an alert.

Environment: QUIESCE_POLICY (see policy_source), QUIESCE_TABLE, QUIESCE_EVENT_BUS and the
settings of quiesce_aws.provider; POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE as
usual for powertools.

Cold start: the module imports only what every invocation needs (the front door, the event
converter, the powertools logger and metrics). boto3, the adapters and their clients are
imported when a run first needs its backends; the policy is read and validated on the first
invocation. Tracing (`tracing_enabled`): the powertools Tracer, and with it the X-Ray SDK, is
created only in Lambda, when POWERTOOLS_TRACE_DISABLED is not true and the package carries
aws_xray_sdk (scripts/package_aws.py --with-tracing); otherwise the handlers are not wrapped
and X-Ray, if the function's tracing is active, still records each invocation's segment.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

from quiesce.triggers.front_door import (
    RUN_MARGIN_SECONDS,
    Answer,
    Deadline,
    FrontDoor,
    Reporter,
)
from quiesce_aws.policy_source import POLICY_ENV, load_policy_from
from quiesce_aws.triggers import convert

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from quiesce.policy import Policy
    from quiesce.ports import Backends
    from quiesce.triggers.event import Kind
    from quiesce.triggers.router import Outcome

F = TypeVar("F", bound=Callable[..., Any])

#: powertools' switch for its tracer, and the values it reads as true.
TRACE_DISABLED_ENV = "POWERTOOLS_TRACE_DISABLED"
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing, as powertools reads it: in Lambda
    (AWS_LAMBDA_FUNCTION_NAME set) and POWERTOOLS_TRACE_DISABLED not true."""
    env = os.environ if env is None else env
    if env.get(TRACE_DISABLED_ENV, "").strip().lower() in _TRUE:
        return False
    return bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the handlers are traced with X-Ray: tracing is requested and aws_xray_sdk is
    installed (the zip carries it when built with --with-tracing)."""
    return tracing_requested(env) and importlib.util.find_spec("aws_xray_sdk") is not None


def make_tracer(env: Mapping[str, str] | None = None) -> Tracer | None:
    """The powertools Tracer when tracing is on (see tracing_enabled), else None."""
    if not tracing_enabled(env):
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service="quiesce")


logger = Logger(service="quiesce")
metrics = Metrics(namespace="Quiesce", service="quiesce")
tracer = make_tracer()
if tracer is None and tracing_requested():
    logger.info(
        "the handlers are not traced: aws_xray_sdk is not in the package (build it with "
        "scripts/package_aws.py --with-tracing); X-Ray still records each invocation's segment "
        "when the function's tracing is active"
    )


def traced(handler: F) -> F:
    """The handler, captured by the tracer when there is one."""
    if tracer is None:
        return handler
    return cast(F, tracer.capture_lambda_handler(handler))


__all__ = ["RUN_MARGIN_SECONDS", "alert_handler", "deploy_handler", "schedule_handler"]


@lru_cache(maxsize=1)
def policy() -> Policy:
    """The policy, read once per container."""
    return load_policy_from(os.environ.get(POLICY_ENV))


@lru_cache(maxsize=1)
def backends() -> Backends:
    """Clients, catalog and bus, built once per container and reused by warm invocations."""
    from quiesce_aws.provider import aws_backends

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
@traced
@metrics.log_metrics
def schedule_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler → the schedule's trigger."""
    return serve(event, context, "schedule")


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def deploy_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CodeDeploy / CodePipeline state changes on EventBridge → deploy triggers."""
    return serve(event, context, "deploy")


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def alert_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CloudWatch alarms (EventBridge, SNS or alarm action) → alert triggers."""
    return serve(event, context, "alert")
