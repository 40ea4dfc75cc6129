"""A wire-level fake of the Filestore REST API (v1), for the real google-cloud-filestore client.

A stdlib ThreadingHTTPServer on 127.0.0.1:0 keeping instances, their snapshots and
operations. What it models, from the API reference:

- instances.snapshots.create answers a long-running operation; the snapshot is CREATING and
  becomes READY on the `ready_after`-th read (the operation is done from then on); tiers
  without snapshots (BASIC_HDD, BASIC_SSD) answer FAILED_PRECONDITION; an existing id answers
  ALREADY_EXISTS (409). The snapshot keeps its `description` (more than 2048 characters is
  refused 400) and its labels (a key starts with a lowercase letter; keys and values hold
  lowercase letters, digits, `_` and `-`, 63 characters at most: others are refused 400).
- snapshots.list with a `labels.k="v" AND ...` filter, snapshots.get, snapshots.delete.
- instances.revert with targetSnapshotId: kept in `reverts`; every snapshot newer than the
  target is deleted, as the service does.
- `throttle(method, pattern, status)`: the next matching request is answered 429 or 503 once.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

FILTER_TERM = re.compile(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?')
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
DESCRIPTION_MAX = 2048
STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


class FakeFilestore:
    def __init__(self, ready_after: int = 2) -> None:
        self.lock = threading.RLock()
        self.ready_after = ready_after
        self.instances: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, int] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.reverts: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.journal: list[str] = []
        self.throttles: list[list[Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeFilestore:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- test helpers

    def add_instance(
        self, project: str, location: str, name: str, *, tier: str = "ZONAL", share: str = "vol1"
    ) -> str:
        full = f"projects/{project}/locations/{location}/instances/{name}"
        with self.lock:
            self.instances[full] = {
                "name": full,
                "state": "READY",
                "tier": tier,
                "fileShares": [{"name": share, "capacityGb": "1024"}],
                "createTime": "2026-01-01T00:00:00Z",
            }
        return full

    def add_snapshot(
        self,
        instance: str,
        sid: str,
        labels: dict[str, str] | None = None,
        description: str = "",
    ) -> str:
        """A snapshot someone else made (not Quiesce's unless its labels say so)."""
        name = f"{instance}/snapshots/{sid}"
        with self.lock:
            self.snapshots[name] = self._snapshot(name, labels or {}, "READY", description)
        return name

    def throttle(self, method: str, pattern: str, status: int = 429) -> None:
        with self.lock:
            self.throttles.append([method, pattern, status])

    # ----------------------------------------------------------------- model

    @staticmethod
    def _snapshot(
        name: str, labels: dict[str, str], state: str, description: str = ""
    ) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "state": state,
            "labels": labels,
            "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "filesystemUsedBytes": "4096",
        }

    def _view(self, name: str) -> dict[str, Any] | None:
        snap = self.snapshots.get(name)
        if snap is None:
            return None
        if snap["state"] == "CREATING":
            reads = self.reads.get(name, 0) + 1
            self.reads[name] = reads
            if reads >= self.ready_after:
                snap["state"] = "READY"
        return snap

    def _operation(self, parent: str, target: str, verb: str, done: bool) -> dict[str, Any]:
        project, location = parent.split("/")[1], parent.split("/")[3]
        op_id = f"operation-{secrets.token_hex(4)}"
        name = f"projects/{project}/locations/{location}/operations/{op_id}"
        op = {
            "name": name,
            "done": done,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.common.OperationMetadata",
                "target": target,
                "verb": verb,
            },
            "_target": target,
        }
        self.operations[name] = op
        return self._op_view(name)

    def _op_view(self, name: str) -> dict[str, Any]:
        op = self.operations[name]
        snap = self.snapshots.get(op["_target"])
        if not op["done"] and snap is not None and snap["state"] == "READY":
            op["done"] = True
            op["response"] = {"@type": "type.googleapis.com/google.cloud.filestore.v1.Snapshot"}
            op["response"].update({k: v for k, v in snap.items() if not k.startswith("_")})
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _throttled(self, method: str, path: str) -> int | None:
        with self.lock:
            for i, (m, pattern, status) in enumerate(self.throttles):
                if m == method and re.search(pattern, path):
                    del self.throttles[i]
                    return int(status)
        return None

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

            def _error(self, code: int, message: str, status: str | None = None) -> None:
                self._send(
                    code,
                    {
                        "error": {
                            "code": code,
                            "message": message,
                            "status": status or STATUS.get(code, "UNKNOWN"),
                        }
                    },
                )

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def _dispatch(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                path = unquote(url.path).removeprefix("/v1/")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                with fake.lock:
                    fake.requests.append((method, path))
                status = fake._throttled(method, path)
                if status is not None:
                    self._error(status, "Quota exceeded, try again later.")
                    return
                with fake.lock:
                    self._route(method, path, query, body)

            def _route(
                self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
            ) -> None:
                f = fake
                if method == "POST" and path.endswith(":revert"):
                    instance = path.removesuffix(":revert")
                    if instance not in f.instances:
                        self._error(404, f"instance {instance} not found")
                        return
                    target = f"{instance}/snapshots/{body.get('targetSnapshotId')}"
                    if target not in f.snapshots:
                        self._error(404, f"snapshot {target} not found")
                        return
                    order = f.snapshots[target].get("_order", 0)
                    names = [s for s in f.snapshots if s.startswith(f"{instance}/snapshots/")]
                    for name in names:
                        if f.snapshots[name].get("_order", 0) > order:
                            del f.snapshots[name]
                    target_id = body["targetSnapshotId"]
                    f.reverts.append({"name": instance, "targetSnapshotId": target_id})
                    f.journal.append(f"revert {instance} {body['targetSnapshotId']}")
                    self._send(200, f._operation(instance, instance, "revert", True))
                    return
                parts = path.split("/")
                match parts:
                    case ["projects", _, "locations", _, "instances", _] if method == "GET":
                        found = f.instances.get(path)
                        if found is None:
                            self._error(404, f"Resource '{path}' was not found")
                            return
                        self._send(200, found)
                    case ["projects", _, "locations", _, "instances", _, "snapshots"]:
                        instance = "/".join(parts[:6])
                        inst = f.instances.get(instance)
                        if inst is None:
                            self._error(404, f"Resource '{instance}' was not found")
                            return
                        if method == "GET":
                            terms = FILTER_TERM.findall(query.get("filter", ""))
                            items = [
                                self._public(s)
                                for n, s in sorted(f.snapshots.items())
                                if n.startswith(instance + "/snapshots/")
                                and all(s["labels"].get(k) == v for k, v in terms)
                            ]
                            self._send(200, {"snapshots": items})
                            return
                        if inst["tier"].startswith("BASIC"):
                            self._error(
                                400,
                                f"Snapshots are not supported for tier {inst['tier']}.",
                                "FAILED_PRECONDITION",
                            )
                            return
                        sid = query.get("snapshotId", "")
                        name = f"{instance}/snapshots/{sid}"
                        if name in f.snapshots:
                            self._error(409, f"Resource '{name}' already exists")
                            return
                        labels = body.get("labels", {})
                        bad = [
                            f"{k}={v}"
                            for k, v in labels.items()
                            if not LABEL_KEY.match(k) or not LABEL_VALUE.match(v)
                        ]
                        if bad:
                            self._error(400, f"Invalid labels: {', '.join(sorted(bad))}")
                            return
                        description = body.get("description", "")
                        if len(description) > DESCRIPTION_MAX:
                            self._error(
                                400,
                                f"description has {len(description)} characters, more than "
                                f"{DESCRIPTION_MAX}",
                            )
                            return
                        snap = f._snapshot(name, labels, "CREATING", description)
                        snap["_order"] = len(f.journal)
                        f.snapshots[name] = snap
                        f.journal.append(f"snapshot {name}")
                        self._send(200, f._operation(instance, name, "create", False))
                    case ["projects", _, "locations", _, "instances", _, "snapshots", _]:
                        if method == "DELETE":
                            if f.snapshots.pop(path, None) is None:
                                self._error(404, f"Resource '{path}' was not found")
                                return
                            f.journal.append(f"delete {path}")
                            self._send(200, f._operation(path, path, "delete", True))
                            return
                        snap = f._view(path)
                        if snap is None:
                            self._error(404, f"Resource '{path}' was not found")
                            return
                        self._send(200, self._public(snap))
                    case ["projects", _, "locations", _, "operations", _]:
                        if path not in f.operations:
                            self._error(404, f"operation {path} not found")
                            return
                        self._send(200, f._op_view(path))
                    case _:
                        self._error(404, f"no route for {method} {path}")

            @staticmethod
            def _public(snap: dict[str, Any]) -> dict[str, Any]:
                return {k: v for k, v in snap.items() if not k.startswith("_")}

        return Handler
