"""A wire-level fake of the Compute Engine REST API, for the real google-cloud-compute clients.

A stdlib ThreadingHTTPServer on 127.0.0.1:0 keeping instances (with metadata and fingerprints),
disks, snapshots, guest attributes and zone/global operations. Snapshots pass CREATING ->
UPLOADING -> READY on successive reads (a get of the snapshot, or a list that shows it: reads
are the fake's clock); a createSnapshot operation is RUNNING until its snapshot is READY.
snapshots.list answers pages of 500 (maxResults, pageToken) filtered on labels, as the API
does. Every request is appended to `requests` as (method, path), so tests can count them.
`fail_disks` makes createSnapshot of those disks fail (operation DONE with an error);
`throttle` answers the next matching requests 429.

For restores and copies it also keeps images and what launching needs, modelling the documented
behaviour: images.insert (from a snapshot, with storageLocations and a KMS key) is PENDING for
`image_reads` reads and then READY (`hold_images` keeps them PENDING: a copy still under way);
disks.insert from a READY snapshot or image is CREATING until its operation is read, then READY;
instances.insert is PROVISIONING, then STAGING, then RUNNING on successive reads (`on_running`
is called once, when an instance is first seen RUNNING: tests boot its agent there), takes no
disk that is not READY or is attached elsewhere read-write, and keeps what it was given
(machineType, networkInterfaces, tags, labels, metadata); instances.delete is STOPPING until its
operation is read, then gone (its auto-delete disks with it); attachDisk/detachDisk keep each
disk's `users`, and a disk in use cannot be deleted. Lists filter on labels. regions.get names
each region's zones (`zones`, default: -b, -c, -d). A snapshot and an image keep the
description they were created with; their labels are checked as the API checks them (keys and
values of lowercase letters, digits, `_` and `-`, 63 characters at most; a key starts with a
letter): others are refused 400.
Every mutation is appended to `journal` (and to `journal_path` when set, where hook scripts
append too), so tests can check the order of hooks and snapshots.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

BASE = "https://www.googleapis.com/compute/v1"
LABEL_TERM = re.compile(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^")\s]*)"?')
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


class Server(ThreadingHTTPServer):
    """A threading server whose listen backlog holds a group's concurrent requests (the
    default of 5 resets connections when a hundred machines are snapshotted at once)."""

    request_queue_size = 1024
    daemon_threads = True


def matches(labels: dict[str, str], filt: str) -> bool:
    return all(labels.get(k) == v for k, v in LABEL_TERM.findall(filt or ""))


def _zonal_key(url: str) -> tuple[str, str, str]:
    """(project, zone, name) of a zonal resource URL."""
    parts = url.split("/")
    at = parts.index("projects")
    return parts[at + 1], parts[at + 3], parts[at + 5]


def _global_key(url: str) -> tuple[str, str]:
    """(project, name) of a global resource URL (or projects/P/global/KIND/NAME)."""
    parts = url.split("/")
    at = parts.index("projects")
    return parts[at + 1], parts[at + 4]


class FakeCompute:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.instances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.disks: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.snapshots: dict[tuple[str, str], dict[str, Any]] = {}
        self.snapshot_reads: dict[tuple[str, str], int] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.guest_attributes: dict[tuple[str, str, str], dict[tuple[str, str], str]] = {}
        self.fail_disks: set[str] = set()
        self.images: dict[tuple[str, str], dict[str, Any]] = {}
        self.image_reads_left: dict[tuple[str, str], int] = {}
        #: How many reads an image stays PENDING; `hold_images`: PENDING until released.
        self.image_reads = 2
        self.hold_images = False
        self.zones: dict[str, list[str]] = {}
        #: Called (project, zone, name) when an instance is first seen RUNNING.
        self.on_running: Any = None
        self.instance_reads: dict[tuple[str, str, str], int] = {}
        #: When set, instances.insert is refused with this message (a quota, a stock-out).
        self.refuse_instances: str | None = None
        self.journal: list[str] = []
        self.journal_path: Path | None = None
        self.requests: list[tuple[str, str]] = []
        #: [method, path pattern, how many more to refuse]: answered 429 rateLimitExceeded.
        self.throttles: list[list[Any]] = []
        self.server = Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeCompute:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- test helpers

    def note(self, line: str) -> None:
        with self.lock:
            self.journal.append(line)
            if self.journal_path is not None:
                with self.journal_path.open("a") as f:
                    f.write(line + "\n")

    def throttle(self, method: str, pattern: str, count: int = 1) -> None:
        """Answer the next `count` matching requests 429, as Compute Engine does under load."""
        with self.lock:
            self.throttles.append([method, pattern, count])

    def throttled(self, method: str, path: str) -> bool:
        with self.lock:
            for throttle in self.throttles:
                if throttle[2] > 0 and throttle[0] == method and re.search(throttle[1], path):
                    throttle[2] -= 1
                    return True
        return False

    def add_instance(
        self,
        project: str,
        zone: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        data_disks: int = 1,
        machine_type: str = "e2-standard-2",
    ) -> dict[str, Any]:
        disks = []
        for i in range(data_disks + 1):
            disk = f"{name}-{'boot' if i == 0 else f'data{i}'}"
            url = f"{BASE}/projects/{project}/zones/{zone}/disks/{disk}"
            self.disks[(project, zone, disk)] = {
                "name": disk,
                "selfLink": url,
                "status": "READY",
                "labels": {},
                "users": [f"{BASE}/projects/{project}/zones/{zone}/instances/{name}"],
            }
            disks.append({"source": url, "boot": i == 0, "deviceName": disk})
        inst = {
            "name": name,
            "id": str(secrets.randbelow(10**12)),
            "zone": f"{BASE}/projects/{project}/zones/{zone}",
            "selfLink": f"{BASE}/projects/{project}/zones/{zone}/instances/{name}",
            "machineType": f"{BASE}/projects/{project}/zones/{zone}/machineTypes/{machine_type}",
            "status": "RUNNING",
            "labels": labels or {},
            "disks": disks,
            "metadata": {"fingerprint": self._fingerprint(), "items": []},
        }
        with self.lock:
            self.instances[(project, zone, name)] = inst
        return inst

    def metadata_value(self, project: str, zone: str, name: str, key: str) -> str | None:
        with self.lock:
            for item in self.instances[(project, zone, name)]["metadata"]["items"]:
                if item["key"] == key:
                    return str(item["value"])
        return None

    def set_metadata_value(self, project: str, zone: str, name: str, key: str, value: str) -> None:
        """Writes one metadata item directly (as an attacker with setMetadata could)."""
        with self.changed:
            md = self.instances[(project, zone, name)]["metadata"]
            md["items"] = [i for i in md["items"] if i["key"] != key] + [
                {"key": key, "value": value}
            ]
            md["fingerprint"] = self._fingerprint()
            self.changed.notify_all()

    def put_guest_attribute(
        self, project: str, zone: str, name: str, namespace: str, key: str, value: str
    ) -> None:
        with self.lock:
            self.guest_attributes.setdefault((project, zone, name), {})[(namespace, key)] = value
            self.note(f"answer {name} {key}")

    @staticmethod
    def _fingerprint() -> str:
        return base64.b64encode(secrets.token_bytes(8)).decode()

    # ----------------------------------------------------------------- snapshots

    def _snapshot_view(self, project: str, name: str, *, advance: bool) -> dict[str, Any] | None:
        snap = self.snapshots.get((project, name))
        if snap is None:
            return None
        if advance and snap["status"] not in ("READY", "FAILED"):
            reads = self.snapshot_reads.get((project, name), 0)
            self.snapshot_reads[(project, name)] = reads + 1
            snap["status"] = ["CREATING", "UPLOADING", "READY"][min(reads, 2)]
            if snap["status"] == "READY":
                snap["storageBytes"] = "1048576"
        return snap

    def _operation(self, op_id: str) -> dict[str, Any]:
        op = self.operations[op_id]
        snap_key = op.get("_snapshot")
        if op["status"] != "DONE" and snap_key is not None:
            snap = self.snapshots.get(snap_key)
            if snap is not None and snap["status"] == "READY":
                op["status"] = "DONE"
        if op["status"] != "DONE" and "_disk" in op:
            disk = self.disks.get(op["_disk"])
            if disk is not None and disk["status"] == "CREATING":
                disk["status"] = "READY"
            op["status"] = "DONE"
        if op["status"] != "DONE" and "_image" in op:
            image = self._image_view(*op["_image"])
            if image is None or image["status"] != "PENDING":
                op["status"] = "DONE"
        if op["status"] != "DONE" and "_gone" in op:
            self._remove_instance(*op["_gone"])
            op["status"] = "DONE"
        return {k: v for k, v in op.items() if not k.startswith("_")}

    # ----------------------------------------------------------------- launching

    def release_images(self) -> None:
        """Every held image is READY on its next read (a copy that completed meanwhile)."""
        with self.lock:
            self.hold_images = False
            for key in self.images:
                self.image_reads_left[key] = 0

    def _image_view(self, project: str, name: str) -> dict[str, Any] | None:
        image = self.images.get((project, name))
        if image is None:
            return None
        if image["status"] == "PENDING" and not self.hold_images:
            left = self.image_reads_left.get((project, name), self.image_reads)
            if left <= 0:
                image["status"] = "READY"
                image["archiveSizeBytes"] = "1048576"
            self.image_reads_left[(project, name)] = left - 1
        return image

    def _instance_view(self, project: str, zone: str, name: str) -> dict[str, Any]:
        inst = self.instances[(project, zone, name)]
        if inst["status"] in ("PROVISIONING", "STAGING"):
            reads = self.instance_reads.get((project, zone, name), 0) + 1
            self.instance_reads[(project, zone, name)] = reads
            inst["status"] = ["PROVISIONING", "STAGING", "RUNNING"][min(reads, 2)]
            if inst["status"] == "RUNNING" and self.on_running is not None:
                self.on_running(project, zone, name)
        return inst

    def _remove_instance(self, project: str, zone: str, name: str) -> None:
        inst = self.instances.pop((project, zone, name), None)
        if inst is None:
            return
        for attached in inst["disks"]:
            key = _zonal_key(attached["source"])
            disk = self.disks.get(key)
            if disk is None:
                continue
            disk["users"] = [u for u in disk.get("users", []) if u != inst["selfLink"]]
            if attached.get("autoDelete"):
                self.disks.pop(key, None)
        self.note(f"deleted instance {name}")

    def zones_of(self, region: str) -> list[str]:
        return self.zones.get(region) or [f"{region}-{z}" for z in ("b", "c", "d")]

    def listed(self, kind: str, project: str, zone: str | None, filt: str) -> list[dict[str, Any]]:
        """The resources of a kind in a project (and zone) whose labels match the filter."""
        table: dict[Any, dict[str, Any]] = {
            "disks": self.disks, "instances": self.instances, "images": self.images
        }[kind]  # fmt: skip
        out = []
        for key, item in sorted(table.items()):
            if key[0] != project or (zone is not None and key[1] != zone):
                continue
            if matches(item.get("labels", {}), filt):
                out.append(item)
        return out

    def _new_op(
        self,
        project: str,
        zone: str | None,
        kind: str,
        target: str,
        *,
        done: bool = True,
        error: str | None = None,
        snapshot: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        name = f"operation-{secrets.token_hex(6)}"
        where = f"zones/{zone}" if zone else "global"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(secrets.randbelow(10**12)),
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "status": "DONE" if done or error else "RUNNING",
            "selfLink": f"{BASE}/projects/{project}/{where}/operations/{name}",
            "progress": 100 if done else 0,
        }
        if zone:
            op["zone"] = f"{BASE}/projects/{project}/zones/{zone}"
        if error:
            op["error"] = {"errors": [{"code": "RESOURCE_OPERATION_FAILED", "message": error}]}
            op["httpErrorStatusCode"] = 400
            op["httpErrorMessage"] = "BAD REQUEST"
        if snapshot is not None:
            op["_snapshot"] = snapshot
        self.operations[name] = op
        return self._operation(name)

    # ----------------------------------------------------------------- HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, message: str) -> None:
                reason = {
                    404: "notFound",
                    409: "alreadyExists",
                    412: "conditionNotMet",
                    429: "rateLimitExceeded",
                }
                self._send(
                    code,
                    {
                        "error": {
                            "code": code,
                            "message": message,
                            "errors": [{"reason": reason.get(code, "invalid"), "message": message}],
                        }
                    },
                )

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else {}

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def _dispatch(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                path = url.path.removeprefix("/compute/v1/")
                body = self._body() if method == "POST" else {}
                fake.requests.append((method, path))
                if fake.throttled(method, path):
                    self._error(429, "Rate Limit Exceeded")
                    return
                with fake.lock:
                    try:
                        self._route(method, path.split("/"), query, body)
                    except KeyError as exc:
                        self._error(404, f"The resource {exc} was not found")

            def _route(
                self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]
            ) -> None:
                f = fake
                match parts:
                    case ["projects", p, "zones", z, "instances"] if method == "GET":
                        items = [
                            i
                            for (pp, zz, _), i in sorted(f.instances.items())
                            if pp == p and zz == z and matches(i["labels"], query.get("filter", ""))
                        ]
                        self._send(200, {"items": items})
                    case ["projects", p, "zones", z, "instances", n] if method == "GET":
                        self._send(200, f._instance_view(p, z, n))
                    case ["projects", p, "zones", z, "instances"] if method == "POST":
                        self._insert_instance(p, z, body)
                    case ["projects", p, "zones", z, "instances", n] if method == "DELETE":
                        inst = f.instances[(p, z, n)]
                        inst["status"] = "STOPPING"
                        op = f._new_op(p, z, "delete", inst["selfLink"], done=False)
                        f.operations[op["name"]]["_gone"] = (p, z, n)
                        self._send(200, op)
                    case ["projects", p, "zones", z, "instances", n, "attachDisk"]:
                        self._attach(p, z, n, body)
                    case ["projects", p, "zones", z, "instances", n, "detachDisk"]:
                        inst = f.instances[(p, z, n)]
                        device = query.get("deviceName", "")
                        gone = [d for d in inst["disks"] if d.get("deviceName") == device]
                        if not gone:
                            self._error(400, f"No attached disk found with device name {device!r}")
                            return
                        inst["disks"] = [d for d in inst["disks"] if d not in gone]
                        disk = f.disks[_zonal_key(gone[0]["source"])]
                        disk["users"] = [u for u in disk["users"] if u != inst["selfLink"]]
                        f.note(f"detached {disk['name']} from {n}")
                        self._send(200, f._new_op(p, z, "detachDisk", inst["selfLink"]))
                    case ["projects", p, "aggregated", ("instances" | "disks") as kind]:
                        scoped: dict[str, Any] = {}
                        for item in f.listed(kind, p, None, query.get("filter", "")):
                            zone = item["selfLink"].split("/zones/")[1].split("/")[0]
                            scoped.setdefault(f"zones/{zone}", {kind: []})[kind].append(item)
                        self._send(200, {"items": scoped})
                    case ["projects", p, "regions", r] if method == "GET":
                        zones = [f"{BASE}/projects/{p}/zones/{z}" for z in f.zones_of(r)]
                        self._send(200, {"name": r, "zones": zones})
                    case ["projects", p, "zones", z, "disks"] if method == "GET":
                        items = f.listed("disks", p, z, query.get("filter", ""))
                        self._send(200, {"items": items})
                    case ["projects", p, "zones", z, "disks", d] if method == "GET":
                        self._send(200, f.disks[(p, z, d)])
                    case ["projects", p, "zones", z, "disks"] if method == "POST":
                        self._insert_disk(p, z, body)
                    case ["projects", p, "zones", z, "disks", d] if method == "DELETE":
                        disk = f.disks[(p, z, d)]
                        if disk.get("users"):
                            self._error(
                                400,
                                f"The disk resource '{disk['selfLink']}' is already being used "
                                f"by '{disk['users'][0]}'",
                            )
                            return
                        del f.disks[(p, z, d)]
                        f.note(f"deleted disk {d}")
                        self._send(200, f._new_op(p, z, "delete", disk["selfLink"]))
                    case ["projects", p, "global", "images"] if method == "GET":
                        items = [
                            f._image_view(p, i["name"])
                            for i in f.listed("images", p, None, query.get("filter", ""))
                        ]
                        self._send(200, {"items": items})
                    case ["projects", p, "global", "images", n] if method == "GET":
                        image = f._image_view(p, n)
                        if image is None:
                            raise KeyError(n)
                        self._send(200, image)
                    case ["projects", p, "global", "images"] if method == "POST":
                        self._insert_image(p, body)
                    case ["projects", p, "global", "images", n] if method == "DELETE":
                        image = f.images.pop((p, n))
                        f.note(f"deleted image {n}")
                        self._send(200, f._new_op(p, None, "delete", image["selfLink"]))
                    case ["projects", p, "zones", z, "instances", n, "setMetadata"]:
                        inst = f.instances[(p, z, n)]
                        if body.get("fingerprint") != inst["metadata"]["fingerprint"]:
                            self._error(412, "Supplied fingerprint does not match current.")
                            return
                        with f.changed:
                            inst["metadata"] = {
                                "fingerprint": f._fingerprint(),
                                "items": body.get("items", []),
                            }
                            f.changed.notify_all()
                        f.note(f"setMetadata {n}")
                        self._send(200, f._new_op(p, z, "setMetadata", inst["selfLink"]))
                    case ["projects", p, "zones", z, "instances", n, "getGuestAttributes"]:
                        f.instances[(p, z, n)]
                        qp = query.get("queryPath", "")
                        ns = qp.split("/", 1)[0]
                        items = [
                            {"namespace": a, "key": k, "value": v}
                            for (a, k), v in sorted(f.guest_attributes.get((p, z, n), {}).items())
                            if a == ns
                        ]
                        if not items:
                            self._error(404, f"The resource 'guest attributes {qp}' was not found")
                            return
                        self._send(200, {"queryPath": qp, "queryValue": {"items": items}})
                    case ["projects", p, "zones", z, "disks", d, "createSnapshot"]:
                        disk = f.disks[(p, z, d)]
                        name = body["name"]
                        labels = body.get("labels", {})
                        bad = [
                            f"{k}={v}"
                            for k, v in labels.items()
                            if not LABEL_KEY.match(k) or not LABEL_VALUE.match(v)
                        ]
                        if bad:
                            self._error(400, f"Invalid label(s) {bad}")
                            return
                        if (p, name) in f.snapshots:
                            self._error(409, f"The resource '{name}' already exists")
                            return
                        flush = query.get("guestFlush") in ("true", "True", "1")
                        target = f"{BASE}/projects/{p}/global/snapshots/{name}"
                        if d in f.fail_disks:
                            f.note(f"snapshot-failed {d}")
                            self._send(
                                200,
                                f._new_op(
                                    p, z, "createSnapshot", target, error=f"disk {d}: I/O error"
                                ),
                            )
                            return
                        f.snapshots[(p, name)] = {
                            "kind": "compute#snapshot",
                            "name": name,
                            "id": str(secrets.randbelow(10**12)),
                            "status": "CREATING",
                            "sourceDisk": disk["selfLink"],
                            "labels": labels,
                            "guestFlush": flush,
                            "selfLink": target,
                            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                        }
                        if "description" in body:
                            f.snapshots[(p, name)]["description"] = body["description"]
                        f.note(f"snapshot {d}{' guestFlush' if flush else ''}")
                        self._send(
                            200,
                            f._new_op(
                                p, z, "createSnapshot", target, done=False, snapshot=(p, name)
                            ),
                        )
                    case ["projects", p, "global", "snapshots"] if method == "GET":
                        names = [
                            n
                            for (pp, n), s in sorted(f.snapshots.items())
                            if pp == p and matches(s["labels"], query.get("filter", ""))
                        ]
                        # Pages of maxResults (at most 500, the API's default and limit).
                        size = min(int(query.get("maxResults") or 500), 500)
                        start = int(query.get("pageToken") or 0)
                        page = names[start : start + size]
                        answer: dict[str, Any] = {
                            "items": [f._snapshot_view(p, n, advance=True) for n in page]
                        }
                        if start + size < len(names):
                            answer["nextPageToken"] = str(start + size)
                        self._send(200, answer)
                    case ["projects", p, "global", "snapshots", n] if method == "GET":
                        snap = f._snapshot_view(p, n, advance=True)
                        if snap is None:
                            raise KeyError(n)
                        self._send(200, snap)
                    case ["projects", p, "global", "snapshots", n] if method == "DELETE":
                        snap = f.snapshots.pop((p, n))
                        f.note(f"delete {n}")
                        self._send(200, f._new_op(p, None, "delete", snap["selfLink"]))
                    case ["projects", p, "zones", z, "operations", o]:
                        self._send(200, f._operation(o))
                    case ["projects", p, "global", "operations", o]:
                        self._send(200, f._operation(o))
                    case _:
                        self._error(404, f"no route for {method} {'/'.join(parts)}")

            # ------------------------------------------------------------- launching

            def _insert_instance(self, p: str, z: str, body: dict[str, Any]) -> None:
                f = fake
                name = body["name"]
                if f.refuse_instances is not None:
                    self._error(403, f.refuse_instances)
                    return
                if (p, z, name) in f.instances:
                    self._error(409, f"The resource 'projects/{p}/zones/{z}/instances/{name}' "
                                "already exists")  # fmt: skip
                    return
                url = f"{BASE}/projects/{p}/zones/{z}/instances/{name}"
                disks = []
                for attached in body.get("disks", []):
                    source = attached.get("source", "")
                    key = _zonal_key(source)
                    disk = f.disks.get(key)
                    if disk is None or key[1] != z:
                        self._error(400, f"Invalid value for field 'resource.disks': '{source}'")
                        return
                    if disk["status"] != "READY":
                        self._error(400, f"The resource '{source}' is not ready")
                        return
                    if disk.get("users"):
                        self._error(
                            400,
                            f"The disk resource '{disk['selfLink']}' is already being used by "
                            f"'{disk['users'][0]}'",
                        )
                        return
                    disks.append({**attached, "source": disk["selfLink"]})
                machine_type = body.get("machineType", "")
                if not machine_type:
                    self._error(400, "Invalid value for field 'resource.machineType': ''")
                    return
                if not machine_type.startswith("https://"):
                    machine_type = f"{BASE}/projects/{p}/{machine_type}"
                for attached in disks:
                    f.disks[_zonal_key(attached["source"])]["users"].append(url)
                f.instances[(p, z, name)] = {
                    "name": name,
                    "id": str(secrets.randbelow(10**12)),
                    "zone": f"{BASE}/projects/{p}/zones/{z}",
                    "selfLink": url,
                    "machineType": machine_type,
                    "status": "PROVISIONING",
                    "labels": body.get("labels", {}),
                    "tags": body.get("tags", {}),
                    "networkInterfaces": body.get("networkInterfaces", []),
                    "serviceAccounts": body.get("serviceAccounts", []),
                    "disks": disks,
                    "metadata": {
                        "fingerprint": f._fingerprint(),
                        "items": body.get("metadata", {}).get("items", []),
                    },
                }
                f.note(f"inserted instance {name}")
                self._send(200, f._new_op(p, z, "insert", url))

            def _attach(self, p: str, z: str, n: str, body: dict[str, Any]) -> None:
                f = fake
                inst = f.instances[(p, z, n)]
                disk = f.disks.get(_zonal_key(body.get("source", "")))
                if disk is None:
                    self._error(404, f"The resource '{body.get('source')}' was not found")
                    return
                if disk["status"] != "READY" or disk.get("users"):
                    self._error(400, f"The disk resource '{disk['selfLink']}' is not ready or "
                                "already being used")  # fmt: skip
                    return
                inst["disks"].append({**body, "source": disk["selfLink"], "boot": False})
                disk["users"].append(inst["selfLink"])
                f.note(f"attached {disk['name']} to {n}")
                self._send(200, f._new_op(p, z, "attachDisk", inst["selfLink"]))

            def _insert_disk(self, p: str, z: str, body: dict[str, Any]) -> None:
                f = fake
                name = body["name"]
                if (p, z, name) in f.disks:
                    self._error(409, f"The resource '{name}' already exists")
                    return
                if body.get("sourceImage"):
                    source = body["sourceImage"]
                    found = f._image_view(*_global_key(source))
                else:
                    source = body.get("sourceSnapshot", "")
                    found = f._snapshot_view(*_global_key(source), advance=True)
                if found is None:
                    self._error(404, f"The resource '{source}' was not found")
                    return
                if found["status"] != "READY":
                    self._error(400, f"The resource '{source}' is not ready")
                    return
                url = f"{BASE}/projects/{p}/zones/{z}/disks/{name}"
                f.disks[(p, z, name)] = {
                    "name": name,
                    "selfLink": url,
                    "status": "CREATING",
                    "labels": body.get("labels", {}),
                    "description": body.get("description", ""),
                    "sourceSnapshot": body.get("sourceSnapshot", ""),
                    "sourceImage": body.get("sourceImage", ""),
                    "users": [],
                }
                f.note(f"inserted disk {name}")
                op = f._new_op(p, z, "insert", url, done=False)
                f.operations[op["name"]]["_disk"] = (p, z, name)
                self._send(200, op)

            def _insert_image(self, p: str, body: dict[str, Any]) -> None:
                f = fake
                name = body["name"]
                if (p, name) in f.images:
                    self._error(409, f"The resource 'projects/{p}/global/images/{name}' "
                                "already exists")  # fmt: skip
                    return
                bad = [
                    f"{k}={v}"
                    for k, v in body.get("labels", {}).items()
                    if not LABEL_KEY.match(k) or not LABEL_VALUE.match(v)
                ]
                if bad:
                    self._error(400, f"Invalid label(s) {bad}")
                    return
                source = body.get("sourceSnapshot", "")
                snap = f._snapshot_view(*_global_key(source), advance=True) if source else None
                if snap is None:
                    self._error(404, f"The resource '{source}' was not found")
                    return
                if snap["status"] != "READY":
                    self._error(400, f"The resource '{source}' is not ready")
                    return
                url = f"{BASE}/projects/{p}/global/images/{name}"
                f.images[(p, name)] = {
                    "kind": "compute#image",
                    "name": name,
                    "id": str(secrets.randbelow(10**12)),
                    "status": "PENDING",
                    "sourceSnapshot": snap["selfLink"],
                    "storageLocations": body.get("storageLocations", []),
                    "imageEncryptionKey": body.get("imageEncryptionKey", {}),
                    "labels": body.get("labels", {}),
                    "description": body.get("description", ""),
                    "selfLink": url,
                    "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                }
                f.note(f"image {name}")
                op = f._new_op(p, None, "insert", url, done=False)
                f.operations[op["name"]]["_image"] = (p, name)
                self._send(200, op)

        return Handler
