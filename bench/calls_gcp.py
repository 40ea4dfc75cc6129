"""Requests of one GCP group run, counted on the project's fakes and emulators, against the floor.

The GCP backends the Cloud Functions run with (`quiesce_gcp.provider.gcp_provider` with its
default pacing, the Firestore catalog, the Pub/Sub publisher) back up a group of N VMs (one
member selected by label, a boot and a data disk each, agent hooks) through `run_group` with a
trigger id, as an entry point does. The group is backed up once first (not counted), then again
with new backends (a new process: no cache carried over), and that second run is counted: the
steady state of a group backed up on a schedule.

Compute Engine is the tests' wire-level fake (tests/gcp/fake_compute.py: the real
google-cloud-compute REST clients over HTTP, every request recorded at the server). Each VM
has a fake metadata server and the real guest agent (quiesce_gcp/quiesce_agent.py) running the
real guest hook runner on hook scripts, as in tests/gcp/test_engine_run.py: the agent hears the
signed command through the metadata server's long poll and answers in a signed guest
attribute. The catalog is the real Firestore emulator and the events go to the real Pub/Sub
emulator; both are counted at the client, once per gRPC call (a streamed query or read is one
call), by an interceptor on the channel. The fake moves a snapshot from CREATING to UPLOADING
to READY on successive reads of it (a GET or a list that shows it): that is the fake's clock,
so the floor counts the reads it asks for. The agents answer when their hooks have run; how
many reads that takes depends on time, so the hook reads are the one count here that varies
from run to run. The row's `answers` says why, per hook phase: how many reads the counted run
made and how long the agents took to answer (from the command's setMetadata to the answer's
guest attribute, as the fake saw them). On this machine every VM's agent and hook runner shares
the same 2 CPUs, so at 100 VMs answers take seconds, not the fraction of a second a VM of its
own takes, and the pacing reads a pending answer again every poll interval meanwhile.

Floor of one run of N VMs (S = 2N snapshots), one member in one project and zone:

    per VM      each hook (pre, post): instances.get 1 (the metadata items and their
                fingerprint, which setMetadata needs: it replaces every item, and our own pre
                write changes the fingerprint the post needs), setMetadata 1 (its operation is
                done at once in the fake), getGuestAttributes 1 (the answer, read once) = 3
                createSnapshot 1 per disk
    per member  instances.list 1 (the selection by label)
    per run     snapshots.list: the orphan sweep 1, the point in time 2 (the fake shows a
                snapshot CREATING, then UPLOADING) and durability 1 (READY), each per 500
                snapshots (a page); images.list 1: the orphan sweep's look for copies (a copy
                is an image, global to the project)
                Pub/Sub: Publish 1 per 1,000 events (3 per VM + 2 per run)
                Firestore: 1 Commit each for the trigger claim (a create), the lock (a create:
                the last run released it) and its release (a delete conditional on the lock's
                update time), 1 per run-record save the engine makes (each a phase
                docs/engine.md's fault matrix recovers from), 1 for the recovery point with its
                run (a batch), 1 per outbox item (one per save carrying events) and 1 per 500
                published items (their removal); RunQuery 1 per outbox flush (at the start and
                at the finish) + 1 for abandoned runs; 1 read to settle the recovery point
                and 1 per earlier recovery point the orphan sweep finds (is it still
                recorded?)

Usage (through bench/api_calls.py, or alone): python bench/calls_gcp.py [--sizes 1,10,100]
"""

from __future__ import annotations

import atexit
import itertools
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "bench"):  # the fakes and emulators live in tests/gcp
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from calls_common import calls_row, group_policy  # noqa: E402
from catalog_work import bound_inputs, count_catalog_work  # noqa: E402

PROJECT = "quiesce-test"
ZONE = "europe-west1-b"
_emulators: dict[str, str] = {}
_lock = threading.Lock()
_names = itertools.count()


def _started(name: str, start: Any) -> str:
    """One emulator of each kind for the process (stopped at exit), started on first use."""
    with _lock:
        if name not in _emulators:
            import pytest

            log = (
                Path(tempfile.mkdtemp(prefix=f"quiesce-bench-{name.replace('/', '')}-"))
                / "emulator.log"
            )
            running = start(log)
            try:
                found = next(running)
            except pytest.skip.Exception as exc:  # no gcloud, Java or emulator component
                raise RuntimeError(f"the {name} emulator cannot run here: {exc}") from None
            _emulators[name] = found if isinstance(found, str) else found.host
            atexit.register(running.close)
        return _emulators[name]


class CallCounter:
    """A gRPC client interceptor counting each call by its method's name."""

    def __init__(self, service: str) -> None:
        import grpc

        self.service = service
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        counter = self

        class Interceptor(
            grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
            grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
            grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
            grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
        ):
            def _count(self, details: Any) -> None:
                with counter._lock:
                    counter.calls[f"{service} {details.method.rsplit('/', 1)[-1]}"] += 1

            def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                self._count(details)
                return continuation(details, request)

            def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
                self._count(details)
                return continuation(details, request)

            def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
                self._count(details)
                return continuation(details, requests)

            def intercept_stream_stream(
                self, continuation: Any, details: Any, requests: Any
            ) -> Any:
                self._count(details)
                return continuation(details, requests)

        self.interceptor = Interceptor()

    def channel(self, channel: Any) -> Any:
        import grpc

        return grpc.intercept_channel(channel, self.interceptor)


def _firestore(counter: CallCounter | None) -> Any:
    """A Firestore client on the emulator, its calls counted when `counter` is given."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    class CountedClient(firestore.Client):  # type: ignore[misc]
        def _emulator_channel(self, transport: Any) -> Any:
            channel = super()._emulator_channel(transport)
            return counter.channel(channel) if counter is not None else channel

    return CountedClient(project=PROJECT, credentials=AnonymousCredentials())


def _publisher(host: str, counter: CallCounter) -> Any:
    """A PublisherClient on the emulator, its calls counted (quiesce_gcp.events sends one
    Publish request per batch of its own)."""
    import grpc
    from google.cloud.pubsub_v1 import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = counter.channel(grpc.insecure_channel(host))
    return PublisherClient(transport=PublisherGrpcTransport(channel=channel))


#: Compute Engine request paths, as the operation names the table shows.
_COMPUTE = [
    (r"/instances$", "instances.list"),
    (r"/instances/[^/]+$", "instances.get"),
    (r"/instances/[^/]+/setMetadata$", "instances.setMetadata"),
    (r"/instances/[^/]+/getGuestAttributes$", "instances.getGuestAttributes"),
    (r"/disks/[^/]+/createSnapshot$", "disks.createSnapshot"),
    (r"/global/snapshots$", "snapshots.list"),
    (r"/global/snapshots/[^/]+$", "snapshots.get"),
    (r"/global/images$", "images.list"),
    (r"/zones/[^/]+/operations/[^/]+$", "zoneOperations.get"),
    (r"/global/operations/[^/]+$", "globalOperations.get"),
]


def compute_operation(method: str, path: str) -> str:
    for pattern, name in _COMPUTE:
        if re.search(pattern, path):
            if name == "snapshots.get" and method == "DELETE":
                name = "snapshots.delete"
            return f"Compute {name}"
    return f"Compute {method} {path}"


def _policy(hooks: dict[str, Any]) -> Any:
    return group_policy(
        {
            "name": "app",
            "provider": "gcp",
            "project": PROJECT,
            "zone": ZONE,
            "select": {"labels": {"role": "app"}},
            "hooks": hooks,
        }
    )


def floor(
    size: int,
    *,
    events: int,
    saves: int,
    points: int,
    outbox_items: int,
    flushes: int,
    earlier_points: int = 1,
) -> dict[str, int]:
    """The floor by operation (see the module docstring), from what the run had to do; the
    catalog held `earlier_points` recovery points before (the uncounted first run's)."""
    members, disks = 1, 2
    pages = math.ceil(size * disks / 500)
    return {
        "Compute instances.list": members,
        "Compute instances.get": 2 * size,
        "Compute instances.setMetadata": 2 * size,
        "Compute instances.getGuestAttributes": 2 * size,
        "Compute disks.createSnapshot": disks * size,
        "Compute snapshots.list": 1 + 3 * pages,
        "Compute images.list": 1,
        "PubSub Publish": math.ceil(events / 1000),
        # claim, lock, release; each save; a point with its run; each outbox item; removal
        "Firestore Commit": 3 + saves + points + outbox_items + math.ceil(outbox_items / 500),
        "Firestore BatchGetDocuments": points + earlier_points,  # settle; the sweep's check
        "Firestore RunQuery": 1 + flushes,
    }


FLOOR_NOTE = (
    "per VM: each hook (pre, post) instances.get 1, setMetadata 1, getGuestAttributes 1 (the "
    "answer read once); createSnapshot 1 per disk; per member: instances.list 1; per run: "
    "snapshots.list 1 and images.list 1 for the orphan sweep + snapshots.list 3 per 500 "
    "snapshots (the fake shows each CREATING, UPLOADING, READY on successive reads: 2 to fix "
    "the point in time, 1 for durability); Pub/Sub: 1 Publish per 1,000 events; Firestore: "
    "1 Commit each for the trigger claim, the lock and its release (a create, a create, a "
    "conditional delete), per run-record save, for the point with its run, per outbox item "
    "and per 500 published items, 1 query per outbox flush + 1 for abandoned runs, 1 read to "
    "settle the point + 1 per earlier point the orphan sweep finds"
)


class AnswerTimes:
    """When the fake saw each command written, each answer written and each answer read, per
    VM (monotonic seconds): its request log and journal, timed as they are appended."""

    def __init__(self, compute: Any) -> None:
        self.events: list[tuple[float, str, str]] = []  # (when, instance, write|answer|read)
        self._lock = threading.Lock()
        times = self

        class TimedRequests(list):  # type: ignore[type-arg]
            def append(self, item: tuple[str, str]) -> None:
                super().append(item)
                _, path = item
                if path.endswith("/getGuestAttributes"):
                    times.seen(path.split("/")[-2], "read")

        compute.requests = TimedRequests(compute.requests)
        note = compute.note

        def timed_note(line: str) -> None:
            words = line.split()
            if len(words) >= 2 and words[0] == "setMetadata":
                self.seen(words[1], "write")
            elif len(words) >= 2 and words[0] == "answer":
                self.seen(words[1], "answer")
            note(line)

        compute.note = timed_note

    def seen(self, instance: str, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic(), instance, what))

    def summary(self, since: float) -> dict[str, dict[str, Any]]:
        """Per phase (a VM's first command after `since` is its pre hook, the second its post
        hook): hooks, reads, and the answers' delays in seconds (min, median, max)."""
        by_vm: dict[str, list[tuple[float, str]]] = {}
        with self._lock:
            for when, instance, what in self.events:
                if when >= since:
                    by_vm.setdefault(instance, []).append((when, what))
        phases: dict[str, dict[str, Any]] = {}
        for events in by_vm.values():
            writes = [i for i, (_, what) in enumerate(events) if what == "write"]
            for phase, (start, end) in zip(
                ("pre", "post"), itertools.pairwise([*writes, len(events)]), strict=False
            ):
                written = events[start][0]
                segment = events[start:end]
                entry = phases.setdefault(phase, {"hooks": 0, "reads": 0, "delays": []})
                entry["hooks"] += 1
                entry["reads"] += sum(1 for _, what in segment if what == "read")
                answered = [when for when, what in segment if what == "answer"]
                if answered:
                    entry["delays"].append(answered[0] - written)
        for entry in phases.values():
            delays = sorted(entry.pop("delays"))
            entry["answer_delay_s"] = (
                [round(delays[0], 2), round(statistics.median(delays), 2), round(delays[-1], 2)]
                if delays
                else None
            )
        return phases


def measure(size: int) -> dict[str, Any]:
    """Backs up a group of `size` VMs once on the fakes; requests by operation and the floor."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1

    from quiesce.engine import run_group
    from quiesce.record import RunStatus
    from quiesce_gcp.clients import GcpClients
    from quiesce_gcp.events import PubSubPublisher
    from quiesce_gcp.provider import gcp_backends, gcp_provider
    from tests.gcp.conftest import Fleet
    from tests.gcp.emulators import start_firestore_emulator, start_pubsub_emulator
    from tests.gcp.fake_compute import FakeCompute

    _started("Firestore", start_firestore_emulator)
    pubsub = _started("Pub/Sub", start_pubsub_emulator)
    name = f"bench{size}x{next(_names)}"
    topic = f"projects/{PROJECT}/topics/{name}"
    admin = pubsub_v1.PublisherClient(transport=_plain_transport(pubsub), batch_settings=())
    admin.create_topic(name=topic)

    compute = FakeCompute().start()
    answers = AnswerTimes(compute)
    agents: list[subprocess.Popen[bytes]] = []
    root = Path(tempfile.mkdtemp(prefix="quiesce-bench-gcp-"))
    fleet = Fleet(compute, root)
    try:
        policy = _policy(fleet.hooks("app"))
        for n in range(size):
            vm = fleet.add(
                f"app-{n:03d}", policy, labels={"role": "app"}, data_disks=1, agent=False
            )
            agents.append(_agent_process(vm))

        def run(trigger: str, firestore: CallCounter | None, bus: CallCounter) -> Any:
            """One run with backends of its own (a new process's: no cache carried over)."""
            clients = GcpClients(AnonymousCredentials(), compute_endpoint=compute.url)  # type: ignore[no-untyped-call]
            backends = gcp_backends(
                policy,
                env={"QUIESCE_PROJECT": PROJECT, "QUIESCE_FIRESTORE_PREFIX": name},
                firestore_client=_firestore(firestore),
                provider=gcp_provider(
                    policy, clients=clients, default_project=PROJECT, agent_keys=fleet.keys
                ),
                bus=PubSubPublisher(topic, client=_publisher(pubsub, bus)),
            )
            did = count_catalog_work(backends.state)
            record = run_group(policy, "orders", backends, trigger_id=trigger)
            if record.status is not RunStatus.SUCCEEDED:
                raise RuntimeError(f"the bench run did not succeed: {record.errors}")
            return did

        run(f"bench-{size}-first", None, CallCounter("PubSub"))  # not counted

        with compute.lock:
            first = len(compute.requests)
        counted_from = time.monotonic()
        firestore, bus = CallCounter("Firestore"), CallCounter("PubSub")
        did = run(f"bench-{size}", firestore, bus)
        with compute.lock:
            requests = Counter(compute_operation(m, p) for m, p in compute.requests[first:])
    finally:
        for process in agents:
            process.kill()  # a SIGTERM would wait for the agent's long poll to end
        for process in agents:
            process.wait(timeout=30)
        for vm in fleet.vms.values():
            vm.stop()
        compute.stop()
        admin.delete_topic(topic=topic)
        shutil.rmtree(root, ignore_errors=True)
    calls = dict(sorted((requests + firestore.calls + bus.calls).items()))
    bound = floor(size, **bound_inputs(did))
    row = calls_row("gcp", size, calls, bound, FLOOR_NOTE)
    row["answers"] = answers.summary(counted_from)
    return row


def _agent_process(vm: Any) -> subprocess.Popen[bytes]:
    """The VM's guest agent as its own process, as it runs on a VM (a service of its own, not a
    thread of the orchestrator's process), on the VM's fake metadata server."""
    from quiesce_gcp import quiesce_agent

    return subprocess.Popen(
        [
            sys.executable,
            "-I",
            quiesce_agent.__file__,
            "--config",
            str(vm.config_path),
            "--metadata-url",
            vm.metadata.url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _plain_transport(host: str) -> Any:
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return PublisherGrpcTransport(channel=grpc.insecure_channel(host))


if __name__ == "__main__":
    from api_calls import main

    raise SystemExit(main(["--clouds", "gcp", *sys.argv[1:]]))
