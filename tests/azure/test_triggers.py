"""Azure's documented payloads (tests/azure/payloads) convert to the golden trigger events
beside them (payloads/expected), Event Grid events decoded by azure-functions' own converter
in both schemas give the same deploy event, and anything else is refused with a clear reason."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.event import TriggerEvent
from quiesce_azure.function_app import event_grid_payload
from quiesce_azure.triggers import (
    EVENT_GRID,
    convert,
    event_grid_event,
    timer_event,
    to_ncrontab,
)

from .deliveries import PAYLOADS, event, event_grid, load, timer

FIRED = datetime(2026, 11, 29, 4, 0, 0, 12345, tzinfo=UTC)
GOLDEN = sorted(p.name for p in (PAYLOADS / "expected").glob("*.json"))


def converted(name: str) -> list[TriggerEvent]:
    if name.startswith("timer"):
        return [timer_event(load(name), trigger="nightly", now=FIRED)]
    return convert(load(name))


def delivered(payload: str | dict[str, Any]) -> list[TriggerEvent]:
    """An Event Grid event as the deploy function converts it: decoded by azure-functions."""
    return event_grid_event(event_grid_payload(event_grid(payload)))


@pytest.mark.parametrize("name", GOLDEN)
def test_each_documented_payload_converts_to_its_golden_trigger_event(name: str) -> None:
    assert [e.model_dump(mode="json") for e in converted(name)] == load(f"expected/{name}")


def test_every_documented_payload_is_golden_or_refused() -> None:
    refused = {
        "alert_budget_fired.json",
        "arm_write_success_cloudevent.json",
        "arm_write_success_eventgrid.json",
        "storage_blob_created_cloudevent.json",
    }
    documented = {p.name for p in PAYLOADS.glob("*.json")}
    assert documented == set(GOLDEN) | refused
    for name in sorted(refused):
        with pytest.raises(UnsupportedEvent):
            convert(load(name))


# ------------------------------------------------------------------------------ alerts


@pytest.mark.parametrize(
    ("name", "state", "condition", "signal"),
    [
        ("alert_metric_fired.json", "Fired", "firing", "Metric"),
        ("alert_metric_resolved.json", "Resolved", "resolved", "Metric"),
        ("alert_log_fired.json", "Fired", "firing", "Log"),
        ("alert_log_resolved.json", "Resolved", "resolved", "Log"),
        ("alert_activity_log_fired.json", "Fired", "firing", "Activity Log"),
    ],
)
def test_an_alert_says_whether_it_fires_or_recovers_in_condition(
    name: str, state: str, condition: str, signal: str
) -> None:
    (alert,) = convert(load(name))
    assert alert.kind == "alert"
    assert (alert.attributes["state"], alert.attributes["condition"]) == (state, condition)
    assert alert.attributes["signal_type"] == signal


def test_a_resolved_log_alert_without_resolved_time_is_dated_when_it_fired() -> None:
    (resolved,) = convert(load("alert_log_resolved.json"))
    (fired,) = convert(load("alert_log_fired.json"))
    assert resolved.time == fired.time == datetime(2025, 4, 15, 18, 8, 3, 626000, tzinfo=UTC)
    assert resolved.id != fired.id
    assert resolved.id.endswith("@Resolved")


def test_a_resolved_metric_alert_is_dated_when_it_resolved() -> None:
    (resolved,) = convert(load("alert_metric_resolved.json"))
    assert resolved.time == datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC)


def test_a_monitor_condition_azure_may_add_later_is_other_not_firing() -> None:
    payload = load("alert_metric_fired.json")
    payload["data"]["essentials"]["monitorCondition"] = "Acknowledged"
    (alert,) = convert(payload)
    assert (alert.attributes["state"], alert.attributes["condition"]) == ("Acknowledged", "other")


def test_a_budget_alert_names_no_alert_rule_and_is_refused() -> None:
    with pytest.raises(UnsupportedEvent, match="lacks alertRule"):
        convert(load("alert_budget_fired.json"))


def test_extra_fields_in_a_payload_never_reach_the_trigger_event() -> None:
    payload = load("alert_metric_fired.json")
    payload["data"]["customProperties"] = {"hooks": {"pre": {"run": ["/bin/sh", "-c", "evil"]}}}
    payload["data"]["essentials"]["command"] = "curl evil | sh"
    (alert,) = convert(payload)
    dumped = json.dumps(alert.model_dump(mode="json"))
    assert "evil" not in dumped
    assert "hooks" not in dumped


# ------------------------------------------------------------------------------ Event Grid


def test_both_event_grid_schemas_decoded_by_azure_functions_give_the_same_deploy_event() -> None:
    (grid,) = delivered("arm_deployment_write_success_eventgrid.json")
    (cloud,) = delivered("arm_deployment_write_success_cloudevent.json")
    assert grid == cloud
    assert grid.kind == "deploy"
    assert grid.attributes == {
        "provider": "arm",
        "deployment": "orders-release-42",
        "resource_group": "shop-rg",
        "subscription": "8a2c1b4e-5f6d-4e3a-9b7c-1d2e3f4a5b6c",
        "state": "Succeeded",
        "operation": "Microsoft.Resources/deployments/write",
        "event_type": "Microsoft.Resources.ResourceWriteSuccess",
    }
    assert grid.time == datetime(2018, 7, 19, 18, 38, 4, 611735, tzinfo=UTC)
    assert delivered("arm_deployment_write_success_eventgrid.json") == converted(
        "arm_deployment_write_success_eventgrid.json"
    )


@pytest.mark.parametrize("event_type", sorted(EVENT_GRID))
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevent"])
def test_every_resource_event_type_of_a_deployment_converts_in_both_schemas(
    event_type: str, schema: str
) -> None:
    body = copy.deepcopy(event(f"arm_deployment_write_success_{schema}.json"))
    body["type" if schema == "cloudevent" else "eventType"] = event_type
    (deploy,) = delivered(body)
    assert deploy.attributes["event_type"] == event_type


@pytest.mark.parametrize(
    "name", ["arm_write_success_eventgrid.json", "arm_write_success_cloudevent.json"]
)
def test_a_documented_write_of_another_resource_is_refused_in_both_schemas(name: str) -> None:
    with pytest.raises(UnsupportedEvent, match=r"not an event about a Microsoft\.Resources/dep"):
        delivered(name)


def test_a_documented_blob_event_in_the_cloudevents_schema_is_refused_by_its_type() -> None:
    with pytest.raises(UnsupportedEvent, match=r"'Microsoft\.Storage\.BlobCreated'"):
        delivered("storage_blob_created_cloudevent.json")


def test_a_cloudevent_an_older_azure_functions_decoded_without_type_names_the_cause() -> None:
    """azure-functions before 1.25 decodes every event as an EventGridEvent, reading
    `eventType` and `eventTime`: a CloudEvents 1.0 event keeps only its id, subject and data."""
    body = event("arm_deployment_write_success_cloudevent.json")
    older = {
        "id": body["id"],
        "eventType": None,
        "subject": body["subject"],
        "topic": None,
        "eventTime": None,
        "dataVersion": None,
        "data": body["data"],
    }
    with pytest.raises(UnsupportedEvent, match=r"azure-functions 1\.25 or later"):
        event_grid_event(older)


def test_an_event_grid_batch_converts_every_event() -> None:
    batch = [
        event("arm_deployment_write_success_eventgrid.json"),
        event("arm_deployment_write_success_cloudevent.json"),
    ]
    assert [e.attributes["deployment"] for e in convert(batch)] == ["orders-release-42"] * 2


def _alert(mutate: Any) -> Any:
    payload = load("alert_metric_fired.json")
    mutate(payload)
    return payload


def _deploy(mutate: Any) -> Any:
    payload = event("arm_deployment_write_success_eventgrid.json")
    mutate(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["run", "/bin/sh"], "not a JSON object"),
        ({"command": "rm -rf /"}, "no converter for event type ''"),
        (_alert(lambda p: p.update({"schemaId": "AzureMonitorMetricAlert"})), "common alert"),
        (_alert(lambda p: p["data"].pop("essentials")), "essentials is not an object"),
        (_alert(lambda p: p["data"]["essentials"].pop("alertRule")), "lacks alertRule"),
        (_alert(lambda p: p["data"]["essentials"].pop("monitorCondition")), "monitorCondition"),
        (
            _alert(lambda p: p["data"]["essentials"].update({"firedDateTime": "yesterday"})),
            "not a timestamp",
        ),
        (_deploy(lambda p: p.update({"eventType": "Microsoft.Storage.BlobCreated"})), "no conv"),
        (_deploy(lambda p: p.pop("data")), "lacks data"),
        (_deploy(lambda p: p.update({"data": "not an object"})), "data is not an object"),
        (
            _deploy(lambda p: p["data"].update({"resourceUri": "/subscriptions/s/rg/vm"})),
            "not an event about a Microsoft.Resources/deployments",
        ),
    ],
)
def test_an_unsupported_or_malformed_event_is_refused_with_the_reason(
    payload: Any, message: str
) -> None:
    with pytest.raises(UnsupportedEvent, match=message):
        convert(payload)


# ------------------------------------------------------------------------------ timers


def test_a_documented_timer_firing_decoded_by_azure_functions_fires_its_schedule() -> None:
    request = timer()
    payload = {"IsPastDue": request.past_due, "ScheduleStatus": request.schedule_status}
    event_ = timer_event(payload, trigger="nightly", now=FIRED)
    assert (event_.kind, event_.trigger, event_.id) == (
        "schedule",
        "nightly",
        "nightly@2026-11-29T04:00Z",
    )
    assert event_.attributes == {
        "schedule": "nightly",
        "past_due": "false",
        "last": "2016-10-04T10:15:00+00:00",
    }


def test_a_timer_is_named_by_its_trigger_and_identified_by_the_minute_it_fired() -> None:
    first = timer_event(load("timer.json"), trigger="nightly", now=FIRED)
    again = timer_event(load("timer.json"), trigger="nightly", now=FIRED.replace(second=40))
    assert first.id == again.id == "nightly@2026-11-29T04:00Z"
    assert timer_event({}, trigger="hourly", now=FIRED).id == "hourly@2026-11-29T04:00Z"


def test_cron_is_converted_for_azure_functions() -> None:
    assert to_ncrontab("0 4 * * *") == "0 0 4 * * *"
    with pytest.raises(ValueError, match="needs 5 fields"):
        to_ncrontab("0 0 4 * * *")
