"""Azure's documented payloads (tests/azure/payloads, sources in SOURCES.md), delivered the way
the Functions host delivers them: Event Grid events and timer firings decoded by azure-functions'
own trigger converters from the JSON the host passes, alerts as the HTTP request's body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter

PAYLOADS = Path(__file__).resolve().parent / "payloads"


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def event(name: str) -> Any:
    """One Event Grid event of a payload file (the host splits a documented array)."""
    payload = load(name)
    return payload[0] if isinstance(payload, list) else payload


def event_grid(payload: Any) -> Any:
    """What the Event Grid trigger hands the function for one event (a payload file's name or
    the event itself): `func.EventGridEvent` or, for CloudEvents 1.0, `func.CloudEvent`."""
    body = event(payload) if isinstance(payload, str) else payload
    return EventGridEventInConverter.decode(Datum(json.dumps(body), "json"), trigger_metadata={})


def timer(name: str = "timer.json") -> func.TimerRequest:
    """What a timer trigger hands the function, decoded from the timer object's JSON."""
    raw = (PAYLOADS / name).read_text()
    decoded: func.TimerRequest = TimerRequestConverter.decode(
        Datum(raw, "json"), trigger_metadata={}
    )
    return decoded


def alert_request(body: bytes | Any) -> func.HttpRequest:
    """An action group's POST to the alert function (a payload file's name, an object, or raw
    bytes as the body)."""
    if isinstance(body, str):
        body = (PAYLOADS / body).read_bytes()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return func.HttpRequest(
        "POST",
        "https://quiesce.azurewebsites.net/api/alerts",
        headers={"Content-Type": "application/json"},
        body=body,
    )
