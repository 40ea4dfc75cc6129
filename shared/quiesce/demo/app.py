"""The demo's sample application: an order service that writes two stores per transaction.

    python -m quiesce.demo.app --db A/orders.db --journal B/journal.log --control SOCKET

Each transaction inserts a row (id, amount, created) into a SQLite database in WAL mode on one
volume, commits it, and *then* appends the line ``id<TAB>amount<TAB>checksum`` to an append-only
journal on another volume. So at any moment the journal is at most one transaction behind the
database, and a copy of the two volumes taken at two different moments disagrees.

The control socket (one line in, one line out) takes:

- ``pause``: finishes the transaction in flight, checkpoints the database (the WAL is emptied
  into the database file) and fsyncs the journal, holds every new write, and answers
  ``ok paused <last id>`` only once all that is done. If no ``resume`` comes within
  ``--pause-timeout`` seconds the application resumes on its own (its dead-man's switch).
- ``resume``: lets the writes go again (``ok resumed``); harmless when not paused.
- ``status``: ``ok running|pausing|paused <last id>``.

SIGTERM (or SIGINT) finishes the transaction in flight, flushes both stores and exits 0. With
``--parent-pid`` it also stops when that process goes away, so it never outlives the demo.

The database is checkpointed only while paused, at start and at exit, and when its WAL passes
``--checkpoint-wal-mb``: between those moments the database file does not change, so a plain
copy of the volume taken while the application runs is still a valid SQLite database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
import zlib
from pathlib import Path
from types import FrameType

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders ("
    "id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, created REAL NOT NULL)"
)
#: The longest a Unix socket path may be on Linux (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH = 107

DEFAULT_RATE = 1000.0
DEFAULT_PAUSE_TIMEOUT = 60.0
DEFAULT_CHECKPOINT_WAL_MB = 64.0
#: How long a `pause` request waits for the writer to finish and flush before giving up.
PAUSE_ANSWER_TIMEOUT = 10.0


# ------------------------------------------------------------------------- the journal format


def checksum(txid: int, amount: int) -> str:
    """The journal line's checksum: CRC-32 of ``id<TAB>amount``, 8 hex digits."""
    payload = f"{txid}\t{amount}".encode()
    return f"{zlib.crc32(payload):08x}"


def journal_line(txid: int, amount: int) -> bytes:
    """One journal line, newline included."""
    return f"{txid}\t{amount}\t{checksum(txid, amount)}\n".encode()


def parse_journal_line(line: str) -> tuple[int, int] | None:
    """(id, amount) of a complete line without its newline; None if malformed or its checksum
    does not match."""
    parts = line.split("\t")
    if len(parts) != 3:
        return None
    try:
        txid, amount = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return (txid, amount) if parts[2] == checksum(txid, amount) else None


def last_journal_id(path: Path) -> int:
    """The id of the journal's last complete, valid line (0 when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read()
    except FileNotFoundError:
        return 0
    complete = tail[: tail.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    for line in reversed(complete.splitlines()):
        parsed = parse_journal_line(line)
        if parsed is not None:
            return parsed[0]
    return 0


# ------------------------------------------------------------------------------- the stores


class Stores:
    """The database on volume A and the journal on volume B, written one transaction at a time.

    Not thread-safe: one thread (the writer) uses it.
    """

    def __init__(self, db: Path, journal: Path, *, checkpoint_wal_bytes: int | None = None) -> None:
        self.db_path = Path(db)
        self.journal_path = Path(journal)
        self.checkpoint_wal_bytes = checkpoint_wal_bytes
        self.conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.db_path}: cannot switch the database to WAL ({mode})")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA wal_autocheckpoint=0")  # only when we say so
            self.conn.execute(SCHEMA)
            db_last = int(
                self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()[0]
            )
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            self.conn.close()
            raise
        _drop_torn_tail(self.journal_path)
        self.journal_fd = os.open(
            self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self.last_id = max(db_last, last_journal_id(self.journal_path))
        self.wal_path = Path(f"{self.db_path}-wal")
        self._since_size_check = 0

    def commit(self, amount: int) -> int:
        """One transaction: the row is committed to the database, then journaled."""
        txid = self.last_id + 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO orders (id, amount, created) VALUES (?, ?, ?)",
                (txid, amount, time.time()),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        _write_all(self.journal_fd, journal_line(txid, amount))
        self.last_id = txid
        self._maybe_checkpoint()
        return txid

    def flush(self) -> None:
        """Makes both stores complete and durable: the WAL is checkpointed into the database
        file (and truncated), and the journal is fsynced."""
        # The checkpoint syncs the WAL first. Should a reader hold part of it (the application
        # has none; someone inspecting the live file might), those frames stay in the WAL,
        # which is on the same volume: the copy is still complete.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        os.fsync(self.journal_fd)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.conn.close()
            os.close(self.journal_fd)

    def _maybe_checkpoint(self) -> None:
        if self.checkpoint_wal_bytes is None:
            return
        self._since_size_check += 1
        if self._since_size_check < 256:
            return
        self._since_size_check = 0
        with contextlib.suppress(FileNotFoundError):
            if self.wal_path.stat().st_size >= self.checkpoint_wal_bytes:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _drop_torn_tail(path: Path) -> None:
    """Cuts a partial last line (left by a crash) off the journal."""
    try:
        with open(path, "r+b") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return
            f.seek(max(0, size - 4096))
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
    except FileNotFoundError:
        return


# ---------------------------------------------------------------------------- the application

RUNNING, PAUSING, PAUSED = "running", "pausing", "paused"


class App:
    """The writer thread, the pause/resume state and the control socket."""

    def __init__(
        self,
        stores: Stores,
        control: Path,
        *,
        rate: float = DEFAULT_RATE,
        pause_timeout: float = DEFAULT_PAUSE_TIMEOUT,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.stores = stores
        self.control = Path(control)
        self.rate = rate
        self.pause_timeout = pause_timeout
        self.cond = threading.Condition()
        self.state = RUNNING
        self.held_until = 0.0
        self.pause_error: str | None = None
        self.last_id = stores.last_id
        self.auto_resumes = 0
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._server: _ControlServer | None = None
        self._server_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._server = _bind(self.control, self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._server_thread.start()
        self._writer.start()

    def request_stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()

    def shutdown(self) -> None:
        """Stops the writer (after its transaction in flight), flushes, closes the socket."""
        self.request_stop()
        if self._writer.is_alive():
            self._writer.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()

    # ------------------------------------------------------------------------ control

    def pause(self) -> str:
        with self.cond:
            if self.stopping.is_set():
                return "error stopping"
            if self.state == PAUSED:
                self.held_until = time.monotonic() + self.pause_timeout  # re-armed
                return f"ok paused {self.last_id}"
            if self.state == RUNNING:
                self.state = PAUSING
                self.pause_error = None
                self.cond.notify_all()
            done = self.cond.wait_for(
                lambda: self.state != PAUSING or self.stopping.is_set(), PAUSE_ANSWER_TIMEOUT
            )
            if self.state == PAUSED:
                return f"ok paused {self.last_id}"
            if not done:
                self.state = RUNNING
                self.cond.notify_all()
                return f"error the writer did not pause within {PAUSE_ANSWER_TIMEOUT:g}s"
            if self.stopping.is_set():
                return "error stopping"
            return f"error not paused: {self.pause_error or 'resumed before the pause completed'}"

    def resume(self) -> str:
        with self.cond:
            if self.state != RUNNING:
                self.state = RUNNING
                self.cond.notify_all()
            return "ok resumed"

    def status(self) -> str:
        with self.cond:
            return f"ok {self.state} {self.last_id}"

    def handle(self, command: str) -> str:
        handlers = {"pause": self.pause, "resume": self.resume, "status": self.status}
        handler = handlers.get(command.strip().lower())
        if handler is None:
            return f"error unknown command {command.strip()!r}: use pause, resume or status"
        return handler()

    # ------------------------------------------------------------------------ the writer

    def _write_loop(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # reported by main(); the app stops
            self.failure = exc
            self.request_stop()
        finally:
            try:
                self.stores.close()
            except BaseException as exc:
                self.failure = self.failure or exc
            with self.cond:
                self.state = RUNNING
                self.cond.notify_all()

    def _write(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            flush = False
            with self.cond:
                if self.stopping.is_set():
                    return
                if self.state == PAUSING:
                    flush = True
                elif self.state == PAUSED:
                    remaining = self.held_until - time.monotonic()
                    if remaining > 0:
                        self.cond.wait(min(remaining, 0.25))
                        continue
                    self.state = RUNNING
                    self.auto_resumes += 1
                    _log(
                        f"no resume within {self.pause_timeout:g}s: resuming on my own "
                        "(dead-man's switch)"
                    )
                    next_at = time.monotonic()
            if flush:
                self._flush_for_pause()
                next_at = time.monotonic()
                continue
            txid = self.stores.commit(100 + secrets.randbelow(99_901))  # cents
            with self.cond:
                self.last_id = txid
                next_at += interval
                delay = next_at - time.monotonic()
                if delay < -0.1:
                    next_at = time.monotonic()  # fell behind: do not try to catch up
                elif delay > 0 and self.state == RUNNING and not self.stopping.is_set():
                    self.cond.wait(delay)

    def _flush_for_pause(self) -> None:
        try:
            self.stores.flush()
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self.cond:
            if self.state == PAUSING:
                if error is None:
                    self.state = PAUSED
                    self.held_until = time.monotonic() + self.pause_timeout
                else:
                    self.state = RUNNING
                    self.pause_error = f"could not flush: {error}"
            self.cond.notify_all()


# ---------------------------------------------------------------------------- control socket


class _Handler(socketserver.StreamRequestHandler):
    timeout = 10.0
    server: _ControlServer

    def handle(self) -> None:
        try:
            line = self.rfile.readline(256).decode("utf-8", errors="replace")
        except OSError:
            return
        reply = self.server.app.handle(line)
        with contextlib.suppress(OSError):
            self.wfile.write(reply.encode() + b"\n")


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, app: App) -> None:
        self.app = app
        super().__init__(path, _Handler)


def _bind(path: Path, app: App) -> _ControlServer:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "choose a shorter one"
        )
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise RuntimeError(f"another application already listens on {path}")
        finally:
            probe.close()
    old = os.umask(0o177)
    try:
        return _ControlServer(str(path), app)
    finally:
        os.umask(old)


# ------------------------------------------------------------------------------------- main


def _log(message: str) -> None:
    print(f"demo-app[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quiesce.demo.app",
        description=(
            "Quiesce's sample application: commits transactions to a SQLite database and "
            "an append-only journal, with a pause/resume control socket."
        ),
    )
    parser.add_argument("--db", type=Path, required=True, help="the SQLite database (volume A)")
    parser.add_argument("--journal", type=Path, required=True, help="the journal (volume B)")
    parser.add_argument("--control", type=Path, required=True, help="the control Unix socket")
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="transactions per second (%(default)g)"
    )
    parser.add_argument(
        "--pause-timeout",
        type=float,
        default=DEFAULT_PAUSE_TIMEOUT,
        help="resume on its own this many seconds after a pause (%(default)g)",
    )
    parser.add_argument(
        "--checkpoint-wal-mb",
        type=float,
        default=DEFAULT_CHECKPOINT_WAL_MB,
        help="checkpoint while running only once the WAL is this big (%(default)g MB)",
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop when this process is gone"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stores = Stores(
            args.db,
            args.journal,
            checkpoint_wal_bytes=int(args.checkpoint_wal_mb * 1024 * 1024),
        )
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        _log(f"cannot open the stores: {exc}")
        return 1
    app = App(stores, args.control, rate=args.rate, pause_timeout=args.pause_timeout)

    def stop(signum: int, frame: FrameType | None) -> None:
        app.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        app.start()
    except (OSError, ValueError, RuntimeError) as exc:
        _log(f"cannot listen on {args.control}: {exc}")
        stores.close()
        return 1
    print(f"ready pid={os.getpid()} last_id={stores.last_id} control={args.control}", flush=True)
    while not app.stopping.wait(0.25):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            _log(f"process {args.parent_pid} is gone: stopping")
            app.request_stop()
    app.shutdown()
    if app.failure is not None:
        _log(f"stopped on an error: {type(app.failure).__name__}: {app.failure}")
        return 1
    print(f"stopped last_id={app.last_id} auto_resumes={app.auto_resumes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
