"""A wire-level fake of the ARM Compute API (and an Event Grid topic) for the Azure adapters.

A stdlib ThreadingHTTPServer on 127.0.0.1:0 that keeps VMs, run commands, restore point
collections, restore points and snapshots in memory and answers the REST calls the real
azure-mgmt-compute client makes, with ARM's long-running-operation shapes: a PUT answers
200/201/202 with `Azure-AsyncOperation` and `Location` headers, the operation then reports
InProgress (`lro_polls` times) and Succeeded, or {"status": "Failed", "error": {...}}.

What a run command does on the VM is `guest(vm_name, parameters) -> (executionState, exitCode,
output, error)`: by default the runner's JSON result for a succeeded hook. Tests can make it
fail, time out, answer 429 with Retry-After, reset a connection after carrying a request out, or
fail a restore point. The Event Grid topic is `/api/events` on the same server.

For group restores and drills it also keeps managed disks (from a snapshot or a disk restore
point, refused while the source's copy to its region is still running), network interfaces
(Microsoft.Network, in the subnet and NSG asked), VMs created with attached disks (provisioning,
then a VM agent that reports Ready only after `agent_polls` instance view reads; Run Command is
refused until then), cross-region copies of restore points (`sourceRestorePoint`) and of
incremental snapshots (`createOption: CopyStart`), each replicating for `region_copy_polls`
reads. `resources()` lists every VM, NIC, disk, snapshot and restore point it holds, so a
test can assert that nothing was left behind.

Every request is recorded as it arrives (`requests`: method and path; `request_log`: with its
query too), so tests can count exactly what a client sent (`count`).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-orders"
LOCATION = "westeurope"

Guest = Callable[[str, dict[str, str]], tuple[str, int, str, str]]


class FakeCredential:
    """A TokenCredential: any token will do."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


def succeeded_output(params: dict[str, str]) -> str:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "status": "succeeded",
            "code": "Succeeded",
            "message": f"{params.get('QUIESCE_PHASE')} ok",
            "exit_code": 0,
            "attempts": 1,
            "started_at": now,
            "ended_at": now,
        }
    )


def default_guest(vm: str, params: dict[str, str]) -> tuple[str, int, str, str]:
    return "Succeeded", 0, "some log line\n" + succeeded_output(params) + "\n", ""


@dataclass
class Operation:
    polls_left: int
    status: str = "Succeeded"
    error: dict[str, Any] | None = None
    on_done: Callable[[], None] | None = None


@dataclass
class Throttle:
    method: str
    pattern: str
    count: int
    retry_after: str


@dataclass
class HookCallSeen:
    at: float
    vm: str
    name: str
    params: dict[str, str]
    script: str
    timeout: int
    protected: dict[str, str] = field(default_factory=dict)
    body: str = ""  # the PUT's JSON body, as the client sent it


@dataclass
class FakeArm:
    lro_polls: int = 1
    guest: Guest = default_guest
    vms: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    run_commands: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    collections: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    points: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    throttles: list[Throttle] = field(default_factory=list)
    drops: list[Throttle] = field(default_factory=list)
    fail_restore_points: set[str] = field(default_factory=set)
    #: VMs whose run command operations end Failed (the script has run: its view is there).
    fail_run_command_operations: set[str] = field(default_factory=set)
    hook_calls: list[HookCallSeen] = field(default_factory=list)
    deleted_run_commands: list[str] = field(default_factory=list)
    created: list[tuple[float, str, str]] = field(default_factory=list)  # (at, kind, id)
    requests: list[tuple[str, str]] = field(default_factory=list)
    request_log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    event_batches: list[list[dict[str, Any]]] = field(default_factory=list)
    fail_event_batches: int = 0
    event_key: str = "topic-key"
    snapshot_copy_polls: int = 1  # GETs before an incremental snapshot reaches 100 %
    #: Reads (`$expand=instanceView` for restore points, any GET for snapshots) before a copy
    #: to another region is complete.
    region_copy_polls: int = 2
    #: Instance view reads of a new VM before its VM agent reports Ready.
    agent_polls: int = 1
    #: managed disks by the path they were created at (as sent)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    nics: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: VM names (or `quiesce:restore` labels) whose create ends Failed (the VM stays, Failed).
    fail_vm_creates: set[str] = field(default_factory=set)
    #: VM names whose VM agent never becomes Ready.
    silent_agents: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(
                    self.command, self.path, dict(self.headers.items()), body
                )
                if fake._dropped(self.command, self.path):
                    # Reset the connection: the request was carried out, its answer is lost.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def events_endpoint(self) -> str:
        return f"{self.base_url}/api/events"

    # ------------------------------------------------------------------------------ setup

    def add_vm(
        self,
        name: str,
        *,
        rg: str = RG,
        sub: str = SUB,
        tags: dict[str, str] | None = None,
        os: str = "Linux",
        data_disks: int = 1,
        vm_size: str = "Standard_D2s_v5",
        location: str = LOCATION,
    ) -> dict[str, Any]:
        prefix = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
        vm = {
            "id": f"{prefix}/virtualMachines/{name}",
            "name": name,
            "type": "Microsoft.Compute/virtualMachines",
            "location": location,
            "tags": dict(tags or {}),
            "properties": {
                "provisioningState": "Succeeded",
                "hardwareProfile": {"vmSize": vm_size},
                "storageProfile": {
                    "osDisk": {
                        "osType": os,
                        "name": f"{name}-os",
                        "createOption": "FromImage",
                        "managedDisk": {"id": f"{prefix}/disks/{name}-os"},
                    },
                    "dataDisks": [
                        {
                            "lun": lun,
                            "name": f"{name}-data{lun}",
                            "createOption": "Attach",
                            "managedDisk": {"id": f"{prefix}/disks/{name}-data{lun}"},
                        }
                        for lun in reversed(range(data_disks))
                    ],
                },
            },
        }
        with self.lock:
            self.vms[(sub.lower(), rg.lower(), name.lower())] = vm
        return vm

    def throttle(self, method: str, pattern: str, count: int = 1, retry_after: str = "3") -> None:
        """Answer the next `count` matching requests with 429 and Retry-After."""
        with self.lock:
            self.throttles.append(Throttle(method, pattern, count, retry_after))

    def drop(self, method: str, pattern: str, count: int = 1) -> None:
        """Reset the connection of the next `count` matching requests after carrying them out."""
        with self.lock:
            self.drops.append(Throttle(method, pattern, count, ""))

    def _dropped(self, method: str, path: str) -> bool:
        with self.lock:
            for drop in self.drops:
                if drop.count > 0 and drop.method == method and re.search(drop.pattern, path):
                    drop.count -= 1
                    return True
        return False

    def count(self, method: str, pattern: str, **query: str) -> int:
        """How many `method` requests had a path matching `pattern` (re.search) and carried
        the given query parameters (e.g. `**{"$expand": "instanceView"}`)."""
        with self.lock:
            return sum(
                1
                for m, path, q in self.request_log
                if m == method
                and re.search(pattern, path)
                and all(q.get(k) == v for k, v in query.items())
            )

    def hook_calls_of(self, phase: str) -> list[HookCallSeen]:
        return [c for c in self.hook_calls if c.params.get("QUIESCE_PHASE") == phase]

    # ------------------------------------------------------------------------------ routing

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(raw_path)
        path = url.path.rstrip("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append((method, path))
            self.request_log.append((method, path, query))
            for throttle in self.throttles:
                if (
                    throttle.count > 0
                    and throttle.method == method
                    and re.search(throttle.pattern, path)
                ):
                    throttle.count -= 1
                    return (
                        429,
                        {"Retry-After": throttle.retry_after},
                        {"error": {"code": "TooManyRequests", "message": "throttled"}},
                    )
        if path == "/api/events":
            return self._events(headers, body)
        if not {k.lower() for k in headers} & {"authorization"}:
            return 401, {}, {"error": {"code": "AuthenticationFailed", "message": "no token"}}
        payload = json.loads(body) if body else {}
        if m := re.fullmatch(r"/operations/([^/]+)", path):
            return self._operation(m[1])
        if m := re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Network/"
            r"networkInterfaces(?:/([^/]+))?",
            path,
            re.IGNORECASE,
        ):
            with self.lock:
                return self._nics(method, m[1].lower(), m[2].lower(), m[3], payload, path)
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/(.*)",
            path,
            re.IGNORECASE,
        )
        if not m:
            return self.route_other(method, path, query, headers, payload)
        sub, rg, rest = m[1].lower(), m[2].lower(), m[3]
        prefix = path[: len(path) - len(rest)]
        parts = rest.split("/")
        kind = parts[0].lower()
        with self.lock:
            if kind == "virtualmachines":
                return self._vms(method, sub, rg, parts, payload, query, prefix)
            if kind == "restorepointcollections":
                return self._collections(method, sub, rg, parts, payload, query, prefix)
            if kind == "snapshots":
                return self._snapshots(method, sub, rg, parts, payload, prefix)
            if kind == "disks":
                return self._disks(method, sub, rg, parts, payload, prefix)
            return self.route_other(method, path, query, headers, payload)

    def route_other(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        payload: dict[str, Any],
    ) -> tuple[int, dict[str, str], Any]:
        """Another resource type's request (authenticated, logged, throttled as any other):
        fakes of other services (fake_data.py) answer here."""
        return _not_found(path)

    # ------------------------------------------------------------------------------ LROs

    def _lro(
        self,
        status: int,
        resource: dict[str, Any] | None,
        *,
        final: str = "Succeeded",
        error: dict[str, Any] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        op_id = uuid.uuid4().hex
        self.operations[op_id] = Operation(self.lro_polls, final, error, on_done)
        url = f"{self.base_url}/operations/{op_id}?api-version=2026-04-01"
        return status, {"Azure-AsyncOperation": url, "Location": url}, resource

    def _operation(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            op = self.operations.get(op_id)
            if op is None:
                return _not_found(op_id)
            if op.polls_left > 0:
                op.polls_left -= 1
                return 200, {}, {"name": op_id, "status": "InProgress"}
            if op.on_done is not None:
                op.on_done()
                op.on_done = None
            answer: dict[str, Any] = {"name": op_id, "status": op.status}
            if op.error is not None:
                answer["error"] = op.error
            return 200, {}, answer

    # ------------------------------------------------------------------------------ VMs

    def _vms(
        self,
        method: str,
        sub: str,
        rg: str,
        parts: list[str],
        payload: dict[str, Any],
        query: dict[str, str],
        prefix: str,
    ) -> tuple[int, dict[str, str], Any]:
        if len(parts) == 1 and method == "GET":
            found = [_public(v) for (s, r, _), v in sorted(self.vms.items()) if (s, r) == (sub, rg)]
            return 200, {}, {"value": found}
        if len(parts) == 2 and method == "PUT":
            return self._put_vm(sub, rg, parts[1], payload, prefix)
        vm = self.vms.get((sub, rg, parts[1].lower()))
        if vm is None:
            return _not_found(parts[1], "ResourceNotFound")
        if len(parts) == 2 and method == "GET":
            return 200, {}, _public(vm)
        if len(parts) == 2 and method == "DELETE":
            return self._delete_vm(sub, rg, vm)
        if len(parts) == 3 and parts[2].lower() == "instanceview" and method == "GET":
            return 200, {}, self._instance_view(vm)
        if len(parts) == 4 and parts[2].lower() == "runcommands" and not self._agent_ready(vm):
            return (
                409,
                {},
                {
                    "error": {
                        "code": "OperationNotAllowed",
                        "message": f"the VM agent of {vm['name']} is not ready",
                    }
                },
            )
        if len(parts) == 4 and parts[2].lower() == "runcommands":
            return self._run_command(method, sub, rg, vm, parts[3], payload, query)
        return _not_found("/".join(parts))

    def _put_vm(
        self, sub: str, rg: str, name: str, payload: dict[str, Any], prefix: str
    ) -> tuple[int, dict[str, str], Any]:
        """Creates a VM from attached disks (or updates one: its data disks), as ARM does: the
        NIC and every disk must exist in the VM's region, and a disk may be attached to one VM
        only."""
        key = (sub, rg, name.lower())
        existing = self.vms.get(key)
        props = payload.get("properties") or {}
        location = payload.get("location") or (existing or {}).get("location")
        vm_id = f"{prefix}virtualMachines/{name}"
        storage = props.get("storageProfile") or {}
        wanted = [storage.get("osDisk")] if storage.get("osDisk") else []
        wanted += storage.get("dataDisks") or []
        for entry in wanted:
            disk_id = ((entry or {}).get("managedDisk") or {}).get("id", "")
            disk = self._find_disk(disk_id)
            if disk is None:
                if existing is not None:
                    continue  # the original VM's own disks are not modelled as resources
                return _bad_request("NotFound", f"disk {disk_id} was not found")
            if disk.get("location") != location:
                return _bad_request(
                    "BadRequest", f"disk {disk_id} is in {disk.get('location')}, not {location}"
                )
            owner = disk.get("managedBy")
            if owner and owner.lower() != vm_id.lower():
                return (
                    409,
                    {},
                    {
                        "error": {
                            "code": "Conflict",
                            "message": f"disk {disk_id} is attached to {owner}",
                        }
                    },
                )
        nic_ids = [
            n.get("id", "")
            for n in (props.get("networkProfile") or {}).get("networkInterfaces") or []
        ]
        for nic_id in nic_ids:
            nic = self._find_nic(nic_id)
            if nic is None:
                return _bad_request("NotFound", f"network interface {nic_id} was not found")
        if existing is not None:
            vm = existing
            merged = dict(vm["properties"].get("storageProfile") or {})
            if "dataDisks" in storage:
                merged["dataDisks"] = storage["dataDisks"]
            vm["properties"]["storageProfile"] = merged
            if payload.get("tags") is not None:
                vm["tags"] = payload["tags"]
        else:
            vm = {
                "id": vm_id,
                "name": name,
                "type": "Microsoft.Compute/virtualMachines",
                "location": location,
                "zones": payload.get("zones"),
                "tags": payload.get("tags", {}),
                "properties": {**props, "provisioningState": "Creating"},
                "_agent_polls": self.agent_polls,
                "_provision_polls": self.lro_polls,
            }
            self.vms[key] = vm
            self.created.append((time.monotonic(), "vm", vm_id))
        attached = set()
        for entry in wanted:
            disk = self._find_disk(((entry or {}).get("managedDisk") or {}).get("id", ""))
            if disk is not None:
                disk["managedBy"] = vm["id"]
                attached.add(disk["id"].lower())
        for disk in self.disks.values():  # detached by the update
            if (disk.get("managedBy") or "").lower() == vm_id.lower() and (
                disk["id"].lower() not in attached
            ):
                disk["managedBy"] = None
        for nic_id in nic_ids:
            found = self._find_nic(nic_id)
            if found is not None:
                found["properties"]["virtualMachine"] = {"id": vm["id"]}
        if self._fails(vm):

            def failed() -> None:
                vm["properties"]["provisioningState"] = "Failed"

            return self._lro(
                201,
                _public(vm),
                final="Failed",
                error={"code": "AllocationFailed", "message": f"no capacity for {name}"},
                on_done=failed,
            )

        def made() -> None:
            vm["properties"]["provisioningState"] = "Succeeded"

        return self._lro(200 if existing is not None else 201, _public(vm), on_done=made)

    def _delete_vm(self, sub: str, rg: str, vm: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        """Deletes the VM once the operation ends: its disks are detached (not deleted) and its
        NICs freed, as ARM does by default."""
        vm["properties"]["provisioningState"] = "Deleting"

        def gone() -> None:
            self.vms.pop((sub, rg, vm["name"].lower()), None)
            for disk in self.disks.values():
                if (disk.get("managedBy") or "").lower() == vm["id"].lower():
                    disk["managedBy"] = None
            for nic in self.nics.values():
                owner = (nic["properties"].get("virtualMachine") or {}).get("id", "")
                if owner.lower() == vm["id"].lower():
                    nic["properties"].pop("virtualMachine", None)
            for key in [k for k in self.run_commands if k[:3] == (sub, rg, vm["name"].lower())]:
                self.run_commands.pop(key)

        return self._lro(202, None, on_done=gone)

    def _fails(self, vm: dict[str, Any]) -> bool:
        label = (vm.get("tags") or {}).get("quiesce:restore")
        return bool({vm["name"].lower(), label} & self.fail_vm_creates)

    def _agent_ready(self, vm: dict[str, Any]) -> bool:
        return "_agent_polls" not in vm or (
            vm["_agent_polls"] <= 0 and vm["name"].lower() not in self.silent_agents
        )

    def _instance_view(self, vm: dict[str, Any]) -> dict[str, Any]:
        """The VM's instance view; each read of a provisioned VM brings its agent closer to
        Ready (`agent_polls`)."""
        state = vm["properties"].get("provisioningState", "Succeeded")
        if state == "Creating":  # provisioning goes on whether or not its operation is polled
            vm["_provision_polls"] -= 1
            if vm["_provision_polls"] < 0:
                failed = self._fails(vm)
                state = vm["properties"]["provisioningState"] = "Failed" if failed else "Succeeded"
        if state == "Succeeded" and vm.get("_agent_polls", 0) > 0:
            vm["_agent_polls"] -= 1
        ready = state == "Succeeded" and self._agent_ready(vm)
        agent = (
            {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready"}
            if ready
            else {
                "code": "ProvisioningState/Unavailable",
                "level": "Warning",
                "displayStatus": "Not Ready",
                "message": "VM status blob is found but not yet populated.",
            }
        )
        return {
            "vmAgent": {"vmAgentVersion": "2.13.1.1", "statuses": [agent]},
            "statuses": [
                {"code": f"ProvisioningState/{state.lower()}", "level": "Info"},
                {"code": "PowerState/running" if state == "Succeeded" else "PowerState/starting"},
            ],
        }

    def _run_command(
        self,
        method: str,
        sub: str,
        rg: str,
        vm: dict[str, Any],
        name: str,
        payload: dict[str, Any],
        query: dict[str, str],
    ) -> tuple[int, dict[str, str], Any]:
        key = (sub, rg, vm["name"].lower(), name.lower())
        if method == "PUT":
            props = payload.get("properties", {})
            params = {p["name"]: p["value"] for p in props.get("parameters", [])}
            protected = {p["name"]: p["value"] for p in props.get("protectedParameters", [])}
            seen = HookCallSeen(
                time.monotonic(),
                vm["name"],
                name,
                params,
                props.get("source", {}).get("script", ""),
                int(props.get("timeoutInSeconds", 0)),
                protected=protected,
                body=json.dumps(payload, sort_keys=True),
            )
            self.hook_calls.append(seen)
            state, exit_code, output, error = self.guest(vm["name"], seen.params)
            now = datetime.now(UTC).isoformat()
            resource: dict[str, Any] = {
                "id": f"{vm['id']}/runCommands/{name}",
                "name": name,
                "type": "Microsoft.Compute/virtualMachines/runCommands",
                "location": payload.get("location"),
                "properties": {
                    "source": props.get("source"),
                    "parameters": props.get("parameters", []),
                    "timeoutInSeconds": props.get("timeoutInSeconds"),
                    "asyncExecution": props.get("asyncExecution"),
                    "provisioningState": "Creating",
                },
            }
            self.run_commands[key] = resource
            view: dict[str, Any] = {
                "executionState": state,
                "exitCode": exit_code,
                "output": output,
                "error": error,
                "startTime": now,
                "endTime": now,
            }

            def done() -> None:
                resource["properties"]["provisioningState"] = "Succeeded"
                resource["_view"] = view

            if vm["name"].lower() in self.fail_run_command_operations:
                return self._lro(
                    201,
                    resource,
                    final="Failed",
                    error={"code": "VMAgentStatusCommunicationError", "message": "no answer"},
                    on_done=done,
                )
            return self._lro(201, resource, on_done=done)
        found_rc = self.run_commands.get(key)
        if method == "GET":
            if found_rc is None:
                return _not_found(name)
            out: dict[str, Any] = {k: v for k, v in found_rc.items() if k != "_view"}
            if query.get("$expand") == "instanceView":
                out["properties"] = {
                    **out["properties"],
                    "instanceView": found_rc.get("_view", {"executionState": "Running"}),
                }
            return 200, {}, out
        if method == "DELETE":
            if self.run_commands.pop(key, None) is not None:
                self.deleted_run_commands.append(name)
            return 204, {}, None
        return _not_found(name)

    # ------------------------------------------------------------------------------ restore points

    def _collections(
        self,
        method: str,
        sub: str,
        rg: str,
        parts: list[str],
        payload: dict[str, Any],
        query: dict[str, str],
        prefix: str,
    ) -> tuple[int, dict[str, str], Any]:
        if len(parts) == 1 and method == "GET":
            found = [c for (s, r, _), c in sorted(self.collections.items()) if (s, r) == (sub, rg)]
            return 200, {}, {"value": found}
        name = parts[1]
        key = (sub, rg, name.lower())
        if len(parts) == 2:
            if method == "PUT":
                existed = key in self.collections
                coll: dict[str, Any] = {
                    "id": f"{prefix}restorePointCollections/{name}",
                    "name": name,
                    "type": "Microsoft.Compute/restorePointCollections",
                    "location": payload.get("location"),
                    "tags": payload.get("tags", {}),
                    "properties": {
                        "source": payload.get("properties", {}).get("source", {}),
                        "provisioningState": "Succeeded",
                        "restorePointCollectionId": uuid.uuid4().hex,
                    },
                }
                self.collections[key] = coll
                return (200 if existed else 201), {}, coll
            got = self.collections.get(key)
            if got is None:
                return _not_found(name)
            if method == "GET":
                out = json.loads(json.dumps(got))
                if query.get("$expand") == "restorePoints":
                    out["properties"]["restorePoints"] = [
                        p for (s, r, c, _), p in sorted(self.points.items()) if (s, r, c) == key
                    ]
                return 200, {}, out
            if method == "DELETE":
                self.collections.pop(key, None)
                return 200, {}, None
        if len(parts) == 4 and parts[2].lower() == "restorepoints":
            parent = self.collections.get(key)
            if parent is None:
                return _not_found(name)
            coll = parent
            rp_name = parts[3]
            rp_key = (*key, rp_name.lower())
            if method == "PUT" and (payload.get("properties") or {}).get("sourceRestorePoint"):
                return self._copy_restore_point(coll, rp_key, rp_name, payload)
            if method == "PUT":
                vm_name = coll["properties"]["source"]["id"].rsplit("/", 1)[-1]
                requested = payload.get("properties", {}).get("consistencyMode")
                vm = self.vms.get((sub, rg, vm_name.lower()), {})
                profile = vm.get("properties", {}).get("storageProfile", {})
                point_id = f"{coll['id']}/restorePoints/{rp_name}"

                def disk_point(disk: dict[str, Any]) -> dict[str, Any]:
                    return {
                        **{
                            k: v
                            for k, v in disk.items()
                            if k in ("lun", "name", "osType", "managedDisk")
                        },
                        "diskRestorePoint": {
                            "id": f"{point_id}/diskRestorePoints/{disk['name']}_{rp_name}"
                        },
                    }

                point: dict[str, Any] = {
                    "id": point_id,
                    "name": rp_name,
                    "type": "Microsoft.Compute/restorePointCollections/restorePoints",
                    "properties": {
                        "sourceMetadata": {
                            "location": vm.get("location"),
                            "hardwareProfile": vm.get("properties", {}).get("hardwareProfile"),
                            "storageProfile": {
                                "osDisk": disk_point(profile["osDisk"]) if profile else None,
                                "dataDisks": [disk_point(d) for d in profile.get("dataDisks", [])],
                            },
                        },
                        "consistencyMode": requested,
                        "provisioningState": "Creating",
                        "timeCreated": datetime.now(UTC).isoformat(),
                    },
                }
                self.points[rp_key] = point
                self.created.append((time.monotonic(), "restore_point", point["id"]))
                if vm_name.lower() in self.fail_restore_points:

                    def failed() -> None:
                        point["properties"]["provisioningState"] = "Failed"

                    return self._lro(
                        201,
                        point,
                        final="Failed",
                        error={
                            "code": "VMAgentStatusCommunicationError",
                            "message": f"the VM agent of {vm_name} did not respond",
                        },
                        on_done=failed,
                    )

                def made() -> None:
                    point["properties"]["provisioningState"] = "Succeeded"

                return self._lro(201, point, on_done=made)
            got_point = self.points.get(rp_key)
            if method == "GET":
                if got_point is None:
                    return _not_found(rp_name)
                return 200, {}, self._point_view(got_point, query.get("$expand") == "instanceView")
            if method == "DELETE":
                self.points.pop(rp_key, None)
                return 200, {}, None
        return _not_found("/".join(parts))

    def _copy_restore_point(
        self,
        coll: dict[str, Any],
        rp_key: tuple[str, str, str, str],
        rp_name: str,
        payload: dict[str, Any],
    ) -> tuple[int, dict[str, str], Any]:
        """A restore point copied from another region's (`sourceRestorePoint`): created at
        once, its disk restore points replicating for `region_copy_polls` instance view reads."""
        props = payload.get("properties") or {}
        source_id = str(props["sourceRestorePoint"].get("id") or "")
        source = self._find_point(source_id)
        if source is None:
            return _bad_request("NotFound", f"restore point {source_id} was not found")
        if source["properties"].get("provisioningState") != "Succeeded":
            return (
                409,
                {},
                {"error": {"code": "Conflict", "message": f"{source_id} is not complete"}},
            )
        source_coll_id = coll["properties"].get("source", {}).get("id", "")
        if not source_id.lower().startswith(source_coll_id.lower() + "/"):
            return _bad_request(
                "BadRequest",
                f"the collection's source {source_coll_id} is not the source point's collection",
            )
        point_id = f"{coll['id']}/restorePoints/{rp_name}"
        meta = json.loads(json.dumps(source["properties"]["sourceMetadata"]))
        meta["location"] = coll["location"]
        wanted = (props.get("sourceMetadata") or {}).get("storageProfile") or {}
        # a data disk's settings are matched by position (`lun` is read-only, never sent)
        asked = [wanted.get("osDisk") or {}, *list(wanted.get("dataDisks") or [])]
        disks = [
            meta["storageProfile"].get("osDisk"),
            *list(meta["storageProfile"].get("dataDisks") or []),
        ]
        for index, disk in enumerate(disks):
            if not disk:
                continue
            old = disk["diskRestorePoint"]["id"]
            disk["diskRestorePoint"] = {
                "id": f"{point_id}/diskRestorePoints/{old.rsplit('/', 1)[-1]}",
                "sourceDiskRestorePoint": {"id": old},
            }
            ask = asked[index] if index < len(asked) else {}
            encryption = (ask.get("diskRestorePoint") or {}).get("encryption")
            if encryption:
                disk["diskRestorePoint"]["encryption"] = encryption
        point: dict[str, Any] = {
            "id": point_id,
            "name": rp_name,
            "type": "Microsoft.Compute/restorePointCollections/restorePoints",
            "properties": {
                "sourceMetadata": meta,
                "sourceRestorePoint": {"id": source_id},
                "consistencyMode": source["properties"].get("consistencyMode"),
                # ARM creates the copy at once; its disks replicate in the background
                "provisioningState": "Succeeded",
                "timeCreated": source["properties"].get("timeCreated"),
            },
            "_replication_polls": self.region_copy_polls,
        }
        self.points[rp_key] = point
        self.created.append((time.monotonic(), "restore_point_copy", point_id))

        def made() -> None:
            point["properties"]["provisioningState"] = "Succeeded"

        return self._lro(201, _public(point), on_done=made)

    def _point_view(self, point: dict[str, Any], expand: bool) -> dict[str, Any]:
        """A restore point as GET answers it; with the instance view, a copy's replication
        (each read brings it closer to 100 %)."""
        out = _public(point)
        if not expand:
            return out
        done = point["properties"].get("provisioningState") == "Succeeded"
        if done and point.get("_replication_polls", 0) > 0:
            point["_replication_polls"] -= 1
        percent = 100.0 if point.get("_replication_polls", 0) <= 0 else 40.0
        profile = point["properties"]["sourceMetadata"].get("storageProfile") or {}
        disks = [profile.get("osDisk"), *list(profile.get("dataDisks") or [])]
        out = dict(json.loads(json.dumps(out)))
        out["properties"]["instanceView"] = {
            "diskRestorePoints": [
                {
                    "id": d["diskRestorePoint"]["id"],
                    "replicationStatus": {
                        "status": {
                            "code": "ReplicationState/"
                            + ("succeeded" if percent >= 100 else "replicating"),
                            "level": "Info",
                        },
                        "completionPercent": percent,
                    },
                }
                for d in disks
                if d
            ]
        }
        return out

    def _find_point(self, point_id: str) -> dict[str, Any] | None:
        for point in self.points.values():
            if point["id"].lower() == point_id.lower():
                return point
        return None

    def _disk_source_problem(self, source: str, location: str) -> str | None:
        """Why a disk cannot be created from `source` (a snapshot or a disk restore point) in
        `location`, or None: it must exist, be complete, and be in the disk's region."""
        if "/diskrestorepoints/" in source.lower():
            point_id = source[: source.lower().index("/diskrestorepoints/")]
            point = self._find_point(point_id)
            if point is None:
                return f"NotFound: disk restore point {source} was not found"
            if point["properties"].get("provisioningState") != "Succeeded":
                return f"Conflict: restore point {point_id} is not complete"
            if point.get("_replication_polls", 0) > 0:
                return (
                    f"OperationNotAllowed: disk restore point {source} is still being "
                    "replicated to its region"
                )
            where = point["properties"]["sourceMetadata"].get("location")
        else:
            snap = next(
                (v for v in self.snapshots.values() if v["id"].lower() == source.lower()), None
            )
            if snap is None:
                return f"NotFound: snapshot {source} was not found"
            percent = snap["properties"].get("completionPercent")
            if percent is not None and float(percent) < 100:
                return f"OperationNotAllowed: snapshot {source} is still being copied"
            where = snap.get("location")
        if where and location and where != location:
            return f"BadRequest: {source} is in {where}, not {location}"
        return None

    # ------------------------------------------------------------------------------ snapshots

    def _snapshots(
        self,
        method: str,
        sub: str,
        rg: str,
        parts: list[str],
        payload: dict[str, Any],
        prefix: str,
    ) -> tuple[int, dict[str, str], Any]:
        if len(parts) == 1 and method == "GET":
            found = [s for (su, r, _), s in sorted(self.snapshots.items()) if (su, r) == (sub, rg)]
            return 200, {}, {"value": found}
        name = parts[1]
        key = (sub, rg, name.lower())
        if method == "PUT":
            props = payload.get("properties", {})
            creation = props.get("creationData") or {}
            copy_polls = self.snapshot_copy_polls
            if creation.get("createOption") == "CopyStart":
                source_id = str(creation.get("sourceResourceId") or "")
                source = next(
                    (v for v in self.snapshots.values() if v["id"].lower() == source_id.lower()),
                    None,
                )
                if source is None:
                    return _bad_request("NotFound", f"snapshot {source_id} was not found")
                if not source["properties"].get("incremental") or not props.get("incremental"):
                    return _bad_request(
                        "BadRequest", "CopyStart copies incremental snapshots into incremental ones"
                    )
                if source.get("location") == payload.get("location"):
                    return _bad_request("BadRequest", "CopyStart copies to another region")
                copy_polls = self.region_copy_polls
            snap: dict[str, Any] = {
                "id": f"{prefix}snapshots/{name}",
                "name": name,
                "type": "Microsoft.Compute/snapshots",
                "location": payload.get("location"),
                "tags": payload.get("tags", {}),
                "properties": {
                    "creationData": props.get("creationData"),
                    "incremental": props.get("incremental"),
                    "diskSizeGB": 32,
                    "provisioningState": "Creating",
                    "timeCreated": datetime.now(UTC).isoformat(),
                },
                "_copy_polls": copy_polls,
            }
            if props.get("encryption"):
                snap["properties"]["encryption"] = props["encryption"]
            self.snapshots[key] = snap
            self.created.append((time.monotonic(), "snapshot", snap["id"]))
            if creation.get("createOption") == "CopyStart":
                # created at once, copied in the background (completionPercent)
                snap["properties"]["provisioningState"] = "Succeeded"
                snap["properties"]["completionPercent"] = 0.0 if copy_polls else 100.0

            def made() -> None:
                snap["properties"]["provisioningState"] = "Succeeded"
                snap["properties"]["completionPercent"] = 0.0 if snap["_copy_polls"] else 100.0

            return self._lro(202, _public(snap), on_done=made)
        got_snap = self.snapshots.get(key)
        if method == "GET":
            if got_snap is None:
                return _not_found(name)
            props = got_snap["properties"]
            if props["provisioningState"] == "Succeeded" and got_snap["_copy_polls"] > 0:
                got_snap["_copy_polls"] -= 1
                if got_snap["_copy_polls"] == 0:
                    props["completionPercent"] = 100.0
            return 200, {}, _public(got_snap)
        if method == "DELETE":
            self.snapshots.pop(key, None)
            return 200, {}, None
        return _not_found(name)

    # ------------------------------------------------------------------------------ disks

    def _disks(
        self,
        method: str,
        sub: str,
        rg: str,
        parts: list[str],
        payload: dict[str, Any],
        prefix: str,
    ) -> tuple[int, dict[str, str], Any]:
        if len(parts) == 1 and method == "GET":
            found = [
                _public(d)
                for d in self.disks.values()
                if d["id"].lower().startswith(prefix.lower() + "disks/")
            ]
            return 200, {}, {"value": found}
        name = parts[1]
        disk_id = f"{prefix}disks/{name}"
        disk = self._find_disk(disk_id)
        if method == "PUT":
            creation = (payload.get("properties") or {}).get("creationData") or {}
            problem = self._disk_source_problem(
                str(creation.get("sourceResourceId") or ""), str(payload.get("location") or "")
            )
            if problem is not None:
                code, _, message = problem.partition(": ")
                status = 404 if code == "NotFound" else 409 if code != "BadRequest" else 400
                return status, {}, {"error": {"code": code, "message": message}}
            made_disk: dict[str, Any] = {
                "id": disk_id,
                "name": name,
                "type": "Microsoft.Compute/disks",
                **payload,
                "managedBy": None,
            }
            made_disk["properties"] = {
                **(payload.get("properties") or {}),
                "provisioningState": "Creating",
                "diskState": "Unattached",
            }
            self.disks[disk_id] = made_disk
            self.created.append((time.monotonic(), "disk", disk_id))

            def made() -> None:
                made_disk["properties"]["provisioningState"] = "Succeeded"

            return self._lro(202, _public(made_disk), on_done=made)
        if disk is None:
            return _not_found(name, "ResourceNotFound")
        if method == "GET":
            return 200, {}, _public(disk)
        if method == "DELETE":
            if disk.get("managedBy"):
                return (
                    409,
                    {},
                    {
                        "error": {
                            "code": "OperationNotAllowed",
                            "message": f"disk {name} is attached to VM {disk['managedBy']}",
                        }
                    },
                )

            def gone() -> None:
                self.disks.pop(disk["id"], None)

            return self._lro(202, None, on_done=gone)
        return _not_found(name)

    def _find_disk(self, disk_id: str) -> dict[str, Any] | None:
        for disk in self.disks.values():
            if disk["id"].lower() == disk_id.lower():
                return disk
        return None

    # ------------------------------------------------------------------------------ NICs

    def _nics(
        self,
        method: str,
        sub: str,
        rg: str,
        name: str | None,
        payload: dict[str, Any],
        path: str,
    ) -> tuple[int, dict[str, str], Any]:
        """Microsoft.Network/networkInterfaces: PUT (201, provisioned at once), GET, list,
        DELETE (refused while a VM uses it)."""
        if name is None:
            if method != "GET":
                return _not_found(path)
            found = [n for (s, r, _), n in sorted(self.nics.items()) if (s, r) == (sub, rg)]
            return 200, {}, {"value": found}
        key = (sub, rg, name.lower())
        nic = self.nics.get(key)
        if method == "PUT":
            configs = (payload.get("properties") or {}).get("ipConfigurations") or []
            if not configs or not all(
                ((c.get("properties") or {}).get("subnet") or {}).get("id") for c in configs
            ):
                return _bad_request("InvalidRequestFormat", "every ipConfiguration needs a subnet")
            made_nic: dict[str, Any] = {
                "id": path,
                "name": name,
                "type": "Microsoft.Network/networkInterfaces",
                **payload,
            }
            made_nic["properties"] = {**payload["properties"], "provisioningState": "Succeeded"}
            self.nics[key] = made_nic
            self.created.append((time.monotonic(), "nic", path))
            return 201, {}, made_nic
        if nic is None:
            return _not_found(name, "ResourceNotFound")
        if method == "GET":
            return 200, {}, nic
        if method == "DELETE":
            owner = (nic["properties"].get("virtualMachine") or {}).get("id")
            if owner:
                return (
                    400,
                    {},
                    {
                        "error": {
                            "code": "NicInUse",
                            "message": f"network interface {name} is used by VM {owner}",
                        }
                    },
                )
            self.nics.pop(key)
            return 200, {}, None
        return _not_found(name)

    def _find_nic(self, nic_id: str) -> dict[str, Any] | None:
        for nic in self.nics.values():
            if nic["id"].lower() == nic_id.lower():
                return nic
        return None

    # ------------------------------------------------------------------------------ listing

    def resources(self, tag: str | None = None, value: str | None = None) -> list[str]:
        """Every VM, NIC, disk, snapshot and restore point this fake holds (their ids); with
        `tag`, only those carrying it (restore points: their collection's), with `value` if
        given."""
        with self.lock:
            tagged: list[tuple[str, dict[str, str]]] = [
                (r["id"], r.get("tags") or {})
                for r in [
                    *self.vms.values(),
                    *self.nics.values(),
                    *self.disks.values(),
                    *list(self.snapshots.values()),
                ]
            ]
            for (s, r, c, _), point in self.points.items():
                coll = self.collections.get((s, r, c)) or {}
                tagged.append((point["id"], coll.get("tags") or {}))
        return sorted(
            rid
            for rid, tags in tagged
            if tag is None or (tag in tags and (value is None or tags[tag] == value))
        )

    # ------------------------------------------------------------------------------ Event Grid

    def _events(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        keys = {k.lower(): v for k, v in headers.items()}
        if keys.get("aeg-sas-key") != self.event_key:
            return 401, {}, {"error": {"code": "Unauthorized", "message": "bad key"}}
        with self.lock:
            if self.fail_event_batches > 0:
                self.fail_event_batches -= 1
                return 500, {}, {"error": {"code": "InternalServerError", "message": "boom"}}
            self.event_batches.append(json.loads(body))
        return 200, {}, None


def _public(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if not k.startswith("_")}


def _bad_request(code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return 400, {}, {"error": {"code": code, "message": message}}


def _not_found(what: str, code: str = "NotFound") -> tuple[int, dict[str, str], Any]:
    return 404, {}, {"error": {"code": code, "message": f"{what} was not found"}}
