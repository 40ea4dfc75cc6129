"""A Pub/Sub redelivery after a transient failure runs the backup exactly once, through the real
entry point (on_schedule, via functions-framework's test client) on the GCP adapters: the
catalog in the Firestore emulator, the real Compute client against the fake Compute API, the
real guest agent on each VM.

The fault is injected on the wire: a gRPC interceptor on the Firestore client's channel answers
the first write of the group's lock (the Commit creating its document in `<prefix>-locks`)
DEADLINE_EXCEEDED without passing it on, as Firestore does when it cannot answer in time. That
is after the trigger claim; the client does not retry a Commit on it, the entry point fails
(HTTP 500, so Pub/Sub would redeliver), the attempt is recorded as failed before any quiesce.
The same message delivered again takes the trigger over and backs the group up: one recovery
point, one run that succeeded."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from quiesce.ports import Backends
from quiesce.providers.memory import MemoryEventBus
from quiesce.record import RunStatus
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.state import FirestoreStateStore

from . import pubsub
from .conftest import Fleet
from .emulators import PROJECT, FirestoreEmulator, firestore_emulator, unique_prefix
from .scheduled_app import scheduled_app
from .test_engine_run import backends

__all__ = ["firestore_emulator"]

COMMIT = "/google.firestore.v1.Firestore/Commit"


class TimedOut(grpc.RpcError, grpc.Call, grpc.Future):  # type: ignore[misc]
    """The failed call the interceptor hands back: what grpc raises for DEADLINE_EXCEEDED."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Any:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return None

    def done(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class FailLockWriteOnce(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Answers the first Commit that writes a document in `<prefix>-locks` with
    DEADLINE_EXCEEDED (the write never reaches the emulator); every other call goes through."""

    def __init__(self, prefix: str) -> None:
        self.collection = f"/{prefix}-locks/"
        self.armed = True
        self.failed: list[str] = []
        self.lock = threading.Lock()

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        if client_call_details.method == COMMIT:
            documents = [w.update.name or w.delete for w in request.writes]
            with self.lock:
                hit = self.armed and any(self.collection in d for d in documents)
                if hit:
                    self.armed = False
                    self.failed += documents
            if hit:
                return TimedOut()
        return continuation(client_call_details, request)


class InterceptedClient(firestore.Client):
    """The emulator's client with an interceptor on its gRPC channel (the wire, not the store)."""

    interceptor: grpc.UnaryUnaryClientInterceptor

    def _emulator_channel(self, transport: Any) -> Any:
        channel = super()._emulator_channel(transport)  # type: ignore[no-untyped-call]
        return grpc.intercept_channel(channel, self.interceptor)


def test_a_redelivery_after_a_failed_lock_write_backs_up_exactly_once(
    firestore_emulator: FirestoreEmulator,
    fleet: Fleet,
    clients: GcpClients,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    app_main: None,
) -> None:
    app, main, policy = scheduled_app(fleet, tmp_path, monkeypatch)
    prefix = unique_prefix("redeliver")
    fault = FailLockWriteOnce(prefix)
    client = InterceptedClient(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    client.interceptor = fault
    state = FirestoreStateStore(client, prefix)
    wired = Backends(backends(policy, clients).providers, state, MemoryEventBus())
    monkeypatch.setattr(main, "backends", lambda: wired)
    message = pubsub.message_published(
        "quiesce-schedules", data={"trigger": "nightly"}, message_id="7310246853915527"
    )

    def deliver() -> Any:
        return app.test_client().post(
            "/", json=message, headers={"Content-Type": "application/cloudevents+json"}
        )

    first = deliver()

    assert first.status_code == 500, "the entry point failed: Pub/Sub delivers again"
    assert fault.failed, "the lock write failed"
    assert fleet.hook_lines() == [], "nothing was quiesced"
    (failed,) = state.list_runs("shop")
    assert failed.status is RunStatus.FAILED
    assert not failed.began_quiesce
    assert failed.trigger_id == "gcp.scheduler:7310246853915527:nightly"
    assert state.list_points("shop") == []

    again = deliver()

    assert again.status_code == 200, again.get_data(as_text=True)
    runs = state.list_runs("shop")
    assert len(runs) == 2
    (succeeded,) = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert succeeded.replaces == failed.run_id
    assert succeeded.trigger_id == failed.trigger_id
    (point,) = state.list_points("shop")
    assert succeeded.recovery_point == point.id
    assert sorted(fleet.hook_lines()) == ["post app", "post db", "pre app", "pre db"]

    # and a third delivery of the same message reports that run, running nothing
    third = deliver()
    assert third.status_code == 200
    assert len(state.list_runs("shop")) == 2
    assert len(state.list_points("shop")) == 1
    assert len(fleet.hook_lines()) == 4
