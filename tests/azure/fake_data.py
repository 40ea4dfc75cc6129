"""A wire-level fake of Azure's managed data services, on top of the fake ARM server: PostgreSQL
and MySQL flexible servers, Azure SQL databases, Azure Files shares (ARM) and managed disks, plus
a small fake of the file service's data plane (listing a share snapshot, creating directories,
server-side file copies).

It models what the services document and Quiesce relies on:

- a server's or database's backups reach back to `earliestRestoreDate` and forward to "now"
  minus the transaction log's delay (`lag`, seconds; the fake clock `clock` advances when the
  code under test sleeps, so minutes pass in no time); a point-in-time restore create
  (`createMode: PointInTimeRestore`) to a time after that, or before the window, is refused
  with 400, as is a restore time that is not a whole second;
- a read replica or a geo-secondary has no point-in-time restore of its own;
- the create is a long-running operation (`Azure-AsyncOperation`), as in fake_arm.py;
- a share snapshot (`PUT .../shares/{share}?$expand=snapshots`) answers `snapshotTime` at once;
  a snapshot is read and deleted with the `x-ms-snapshot` header.

Every restore create is recorded in `restores` (the path and body as sent).
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from .fake_arm import LOCATION, RG, SUB, FakeArm, _not_found

EPOCH = datetime(2026, 12, 1, tzinfo=UTC)


class FakeClock:
    """Wall time that moves on when the code under test sleeps (and with real time)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + timedelta(seconds=self.offset)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.offset += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)


@dataclass
class Restore:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class FakeData(FakeArm):
    clock: FakeClock = field(default_factory=FakeClock)
    #: (namespace lower, sub, rg, name) -> resource (servers; SQL databases by server/db)
    servers: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    lags: dict[str, float] = field(default_factory=dict)  # resource id lower -> seconds
    restores: list[Restore] = field(default_factory=list)
    shares: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    share_snapshots: dict[tuple[str, str, str, str, str], dict[str, Any]] = field(
        default_factory=dict
    )
    deleted_shares: list[str] = field(default_factory=list)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    files_endpoint: str = ""

    # ------------------------------------------------------------------------------ setup

    def add_flexible_server(
        self,
        kind: str,
        name: str,
        *,
        rg: str = RG,
        sub: str = SUB,
        lag: float = 300.0,
        role: str = "None",
        state: str = "Ready",
        retention: int = 7,
    ) -> dict[str, Any]:
        namespace = {
            "postgres": "Microsoft.DBforPostgreSQL/flexibleServers",
            "mysql": "Microsoft.DBforMySQL/flexibleServers",
        }[kind]
        rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{name}"
        server: dict[str, Any] = {
            "id": rid,
            "name": name,
            "type": namespace,
            "location": LOCATION,
            "properties": {
                "state": state,
                "replicationRole": role,
                "backup": {
                    "backupRetentionDays": retention,
                    "geoRedundantBackup": "Disabled",
                    "earliestRestoreDate": _iso(self.clock.now() - timedelta(days=1)),
                },
            },
        }
        with self.lock:
            self.servers[(namespace.lower(), sub.lower(), rg.lower(), name.lower())] = server
            self.lags[rid.lower()] = lag
        return server

    def add_sql_database(
        self,
        server: str,
        database: str,
        *,
        rg: str = RG,
        sub: str = SUB,
        lag: float = 600.0,
        secondary: str | None = None,
    ) -> dict[str, Any]:
        rid = (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/servers/"
            f"{server}/databases/{database}"
        )
        db: dict[str, Any] = {
            "id": rid,
            "name": database,
            "type": "Microsoft.Sql/servers/databases",
            "location": LOCATION,
            "properties": {
                "status": "Online",
                "earliestRestoreDate": _iso(self.clock.now() - timedelta(days=1)),
            },
        }
        if secondary:
            db["properties"]["secondaryType"] = secondary
        with self.lock:
            key = ("microsoft.sql/servers", sub.lower(), rg.lower(), f"{server}/{database}".lower())
            self.servers[key] = db
            self.lags[rid.lower()] = lag
        return db

    def add_share(
        self, account: str, share: str, *, rg: str = RG, sub: str = SUB, quota: int = 100
    ) -> dict[str, Any]:
        rid = (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/"
            f"storageAccounts/{account}/fileServices/default/shares/{share}"
        )
        item: dict[str, Any] = {
            "id": rid,
            "name": share,
            "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
            "properties": {"shareQuota": quota, "accessTier": "TransactionOptimized"},
        }
        with self.lock:
            self.shares[(sub.lower(), rg.lower(), account.lower(), share.lower())] = item
        return item

    # ------------------------------------------------------------------------------ routing

    def route_other(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        payload: dict[str, Any],
    ) -> tuple[int, dict[str, str], Any]:
        parts = path.split("/")
        # /subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/...
        if len(parts) < 9 or parts[5].lower() != "providers":
            return _not_found(path)
        sub, rg = parts[2].lower(), parts[4].lower()
        namespace = f"{parts[6]}/{parts[7]}".lower()
        rest = parts[8:]
        lowered = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            if (
                namespace
                in (
                    "microsoft.dbforpostgresql/flexibleservers",
                    "microsoft.dbformysql/flexibleservers",
                )
                and len(rest) == 1
            ):
                return self._server(method, namespace, sub, rg, rest[0], payload, path)
            if namespace == "microsoft.sql/servers" and len(rest) == 3:
                return self._server(
                    method, namespace, sub, rg, f"{rest[0]}/{rest[2]}", payload, path
                )
            if namespace == "microsoft.storage/storageaccounts":
                return self._storage(method, sub, rg, rest, query, lowered, payload, path)
            if namespace == "microsoft.compute/disks" and len(rest) == 1 and method == "PUT":
                disk = {"id": path, "name": rest[0], **payload}
                self.disks[path] = disk
                return self._lro(202, disk)
        return _not_found(path)

    # ------------------------------------------------------------------------------ databases

    def _server(
        self,
        method: str,
        namespace: str,
        sub: str,
        rg: str,
        name: str,
        payload: dict[str, Any],
        path: str,
    ) -> tuple[int, dict[str, str], Any]:
        key = (namespace, sub, rg, name.lower())
        if method == "GET":
            found = self.servers.get(key)
            return (200, {}, found) if found is not None else _not_found(name, "ResourceNotFound")
        if method != "PUT":
            return _not_found(path)
        props = payload.get("properties", {})
        if props.get("createMode") != "PointInTimeRestore":
            return _bad("UnsupportedCreateMode", f"the fake restores only: {props}")
        source_id = str(props.get("sourceServerResourceId") or props.get("sourceDatabaseId") or "")
        when_text = str(props.get("pointInTimeUTC") or props.get("restorePointInTime") or "")
        source = next(
            (s for s in self.servers.values() if s["id"].lower() == source_id.lower()), None
        )
        if source is None:
            return _bad("ResourceNotFound", f"source {source_id} was not found")
        if source["properties"].get("secondaryType") or str(
            source["properties"].get("replicationRole", "None")
        ).lower() not in ("none", "primary", "source"):
            return _bad("PointInTimeRestoreNotSupported", "a replica has no backups")
        when = _parse(when_text)
        if when is None or when.microsecond:
            return _bad("InvalidRestorePointInTime", f"{when_text!r} is not a whole-second time")
        props_source = source["properties"]
        earliest = _parse(
            props_source.get("earliestRestoreDate")
            or props_source.get("backup", {}).get("earliestRestoreDate")
        )
        latest = self.clock.now() - timedelta(seconds=self.lags.get(source_id.lower(), 300.0))
        if earliest is None or when < earliest or when > latest:
            return _bad(
                "InvalidRestorePointInTime",
                f"{when_text} is outside the restorable window {earliest} .. {_iso(latest)}",
            )
        self.restores.append(Restore(method, path, payload))
        created = {
            "id": path,
            "name": name.rsplit("/", 1)[-1],
            "type": source["type"],
            "location": payload.get("location"),
            "properties": {"state": "Provisioning", "createMode": "PointInTimeRestore"},
        }
        self.servers[key] = created
        return self._lro(202, created)

    # ------------------------------------------------------------------------------ storage

    def _storage(
        self,
        method: str,
        sub: str,
        rg: str,
        rest: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        payload: dict[str, Any],
        path: str,
    ) -> tuple[int, dict[str, str], Any]:
        account = rest[0].lower()
        if len(rest) == 1 and method == "GET":
            endpoint = self.files_endpoint or f"https://{account}.file.core.windows.net/"
            return (
                200,
                {},
                {
                    "id": path,
                    "name": rest[0],
                    "location": LOCATION,
                    "properties": {"primaryEndpoints": {"file": endpoint}},
                },
            )
        if len(rest) == 4 and method == "GET":  # list shares
            items: list[dict[str, Any]] = []
            for (s, r, a, _), share in sorted(self.shares.items()):
                if (s, r, a) == (sub, rg, account):
                    items.append(share)
            if "snapshots" in query.get("$expand", ""):
                for (s, r, a, _, _), snap in sorted(self.share_snapshots.items()):
                    if (s, r, a) == (sub, rg, account):
                        items.append(snap)
            return 200, {}, {"value": items}
        if len(rest) != 5:
            return _not_found(path)
        name = rest[4]
        key = (sub, rg, account, name.lower())
        stamp = headers.get("x-ms-snapshot")
        if method == "PUT" and query.get("$expand") == "snapshots":
            share = self.shares.get(key)
            if share is None:
                return _not_found(name, "ShareNotFound")
            now = self.clock.now()
            snap_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"
            snap = {
                "id": share["id"],
                "name": share["name"],
                "type": share["type"],
                "properties": {
                    **share["properties"],
                    "snapshotTime": snap_time,
                    "metadata": dict(payload.get("properties", {}).get("metadata") or {}),
                },
            }
            self.share_snapshots[(*key, snap_time)] = snap
            self.created.append((time.monotonic(), "share_snapshot", f"{share['id']}@{snap_time}"))
            return 201, {}, snap
        if method == "PUT":
            share = {
                "id": path,
                "name": name,
                "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
                "properties": dict(payload.get("properties") or {}),
            }
            self.shares[key] = share
            return 201, {}, share
        if method == "GET":
            found = self.share_snapshots.get((*key, stamp)) if stamp else self.shares.get(key)
            return (200, {}, found) if found is not None else _not_found(name, "ShareNotFound")
        if method == "DELETE":
            if not stamp:
                self.deleted_shares.append(path)
                self.shares.pop(key, None)
            elif self.share_snapshots.pop((*key, stamp), None) is None:
                return 204, {}, None
            return 200, {}, None
        return _not_found(path)


@dataclass
class FakeFiles:
    """The file service's data plane, for the restore's server-side copy: a share snapshot's
    directory tree (`tree`: path -> None for a directory, bytes for a file), the directories
    and copies made in other shares (`made`)."""

    tree: dict[str, bytes | None] = field(default_factory=dict)
    made: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, path, source)
    snapshots_listed: list[str] = field(default_factory=list)

    def start(self, certs: Path) -> str:
        """Serves HTTPS (the file service takes bearer tokens over TLS only) with a
        self-signed certificate for 127.0.0.1 written to `certs`; `self.ca` is its path."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = fake.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.ca = _self_signed(certs)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, certs / "key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/"
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(
        self, method: str, raw: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        share, _, rest = unquote(url.path).lstrip("/").partition("/")
        base = {"x-ms-request-id": "1", "x-ms-version": headers.get("x-ms-version", "")}
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, base, b""
        if headers.get("x-ms-file-request-intent") != "backup":
            return 403, base, b"<Error><Code>AuthorizationPermissionMismatch</Code></Error>"
        if method == "GET" and query.get("comp") == "list":
            self.snapshots_listed.append(query.get("sharesnapshot", ""))
            prefix = f"{rest}/" if rest else ""
            entries = []
            for path, data in sorted(self.tree.items()):
                if not path.startswith(prefix) or "/" in path[len(prefix) :]:
                    continue
                leaf = escape(path[len(prefix) :])
                if data is None:
                    entries.append(f"<Directory><Name>{leaf}</Name><Properties /></Directory>")
                else:
                    entries.append(
                        f"<File><Name>{leaf}</Name><Properties><Content-Length>{len(data)}"
                        "</Content-Length></Properties></File>"
                    )
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                f'ServiceEndpoint="http://127.0.0.1/" ShareName="{escape(share)}" '
                f'DirectoryPath="{escape(rest)}"><Entries>{"".join(entries)}</Entries>'
                "<NextMarker /></EnumerationResults>"
            )
            return 200, {**base, "Content-Type": "application/xml"}, xml.encode()
        if method == "PUT" and query.get("restype") == "directory":
            self.made.append(("directory", f"{share}/{rest}", ""))
            return 201, {**base, "ETag": '"1"', "Last-Modified": _http_date()}, b""
        if method == "PUT" and headers.get("x-ms-copy-source"):
            self.made.append(("copy", f"{share}/{rest}", headers["x-ms-copy-source"]))
            return (
                202,
                {
                    **base,
                    "ETag": '"1"',
                    "Last-Modified": _http_date(),
                    "x-ms-copy-id": "c1",
                    "x-ms-copy-status": "pending",
                },
                b"",
            )
        return 400, base, b"<Error><Code>UnsupportedRequest</Code></Error>"


def _self_signed(folder: Path) -> str:
    """A certificate for 127.0.0.1 and its key, in `folder`; the certificate's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path = folder / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _http_date() -> str:
    return datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _bad(code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return 400, {}, {"error": {"code": code, "message": message}}
