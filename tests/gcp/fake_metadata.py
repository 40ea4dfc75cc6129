"""A fake GCE metadata server for one instance, wired to a FakeCompute.

It serves `/computeMetadata/v1/instance/attributes/<key>` from the metadata the fake Compute API
holds for the instance (long poll with `wait_for_change=true&last_etag=...`, `ETag` header,
`Metadata-Flavor: Google` required), and stores PUT `/computeMetadata/v1/instance/
guest-attributes/<namespace>/<key>` as the instance's guest attributes, where getGuestAttributes
reads them. It also serves the instance's identity (`instance/name`, `instance/zone` as
projects/NUMBER/zones/ZONE, `project/project-id`). Like the real server, it lets ANY process on
the "VM" (anything that can reach it) write guest attributes. `deaf` stops delivering metadata
changes (an agent that hears nothing more); `drop_answers` drops the agent's answers (an agent
whose answers never arrive).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .fake_compute import FakeCompute

PREFIX = "/computeMetadata/v1"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on its long poll (its own timeout) is not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeMetadata:
    def __init__(self, compute: FakeCompute, project: str, zone: str, instance: str) -> None:
        self.compute = compute
        self.where = (project, zone, instance)
        self.deaf = False
        self.drop_answers = False
        self.closing = False
        self.server = Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"

    def start(self) -> FakeMetadata:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing = True
        with self.compute.changed:
            self.compute.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def _current(self, key: str) -> tuple[str | None, str]:
        value = self.compute.metadata_value(*self.where, key)
        etag = hashlib.sha256((value if value is not None else "\0absent").encode()).hexdigest()
        return value, etag[:16]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        meta = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, text: str, etag: str = "") -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "application/text")
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    self._send(403, "Missing Metadata-Flavor:Google header.")
                    return
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                project, zone, name = meta.where
                identity = {
                    f"{PREFIX}/instance/name": name,
                    f"{PREFIX}/instance/zone": f"projects/123456789/zones/{zone}",
                    f"{PREFIX}/project/project-id": project,
                }
                if url.path in identity:
                    self._send(200, identity[url.path])
                    return
                prefix = f"{PREFIX}/instance/attributes/"
                if not url.path.startswith(prefix):
                    self._send(404, "not found")
                    return
                key = url.path[len(prefix) :]
                value, etag = meta._current(key)
                if query.get("wait_for_change") == "true":
                    last = query.get("last_etag", "")
                    timeout = float(query.get("timeout_sec", "60"))
                    cond = meta.compute.changed
                    with cond:
                        cond.wait_for(
                            lambda: (
                                meta.closing or (not meta.deaf and meta._current(key)[1] != last)
                            ),
                            timeout=timeout,
                        )
                    if meta.deaf:
                        value, etag = None, last
                    else:
                        value, etag = meta._current(key)
                if value is None:
                    self._send(404, "not found", etag)
                else:
                    self._send(200, value, etag)

            def do_PUT(self) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    self._send(403, "Missing Metadata-Flavor:Google header.")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                value = self.rfile.read(length).decode()
                prefix = f"{PREFIX}/instance/guest-attributes/"
                path = urlparse(self.path).path
                if not path.startswith(prefix) or path.count("/") != prefix.count("/") + 1:
                    self._send(404, "not found")
                    return
                namespace, key = path[len(prefix) :].split("/", 1)
                if not meta.drop_answers:
                    meta.compute.put_guest_attribute(*meta.where, namespace, key, value)
                self._send(200, "")

        return Handler
