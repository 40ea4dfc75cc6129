"""The demo's scenario: one workload, a crash-consistent and an application-consistent backup of
it under load, both restored and verified.

Workspace layout (a fresh folder under the temp folder unless one is given):

    policy.yaml            groups demo-crash and demo-app, same two members
    app.sock, app.log      the sample application's control socket and its output
    hooks/                 pause.sh, resume.sh, verify.sh
    data/db/               volume A: orders.db (+ its WAL)
    data/journal/          volume B: ballast.bin, journal.log
    data.img               as root, with btrfs: the btrfs filesystem mounted at data/ while the
                           demo runs (A and B are its subvolumes, snapshotted with btrfs)
    state/                 catalog, event bus, snapshots, the hook runner's state
    restore/crash/, restore/app/    the restored copies: <member>/<volume>/...
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape

from quiesce.demo import control
from quiesce.demo.btrfs_volumes import btrfs_volumes
from quiesce.demo.verify import DB_NAME, JOURNAL_MEMBER, JOURNAL_NAME
from quiesce.engine import run_group
from quiesce.errors import QuiesceError
from quiesce.policy import Policy, load_policy
from quiesce.policy.model import Hook
from quiesce.ports import Backends, HookCall, Machine
from quiesce.record import HookResult, MemberRecord, RunRecord
from quiesce.restore import RestoreResult, restore_point
from quiesce.wiring import backends_for

POLICY_NAME = "demo"
CRASH_GROUP = "demo-crash"
APP_GROUP = "demo-app"
DB_MEMBER = "db"

#: Volume B carries this much ballast, so that copying it takes measurable time while the
#: application keeps committing (unless the filesystem clones files: then it is instant).
BALLAST_BYTES = 64 * 1024 * 1024
BALLAST_NAME = "ballast.bin"  # sorts before journal.log: copied first
RATE = 1000.0  # transactions per second
PAUSE_TIMEOUT = 60.0  # the application's own dead-man's switch
MAX_FREEZE_SECONDS = 30.0
DEFAULT_WARM_UP = 1.5
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class DemoError(QuiesceError):
    """The demo could not be set up or run (the message says why and what to do)."""


class DemoRow(BaseModel):
    """One backup of the workload, restored and verified."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="crash-consistent or application-consistent")
    group: str
    requested: str = Field(description="The consistency the group asks for.")
    consistency: str = Field(description="The consistency level Quiesce recorded.")
    status: str = Field(description="The run's status: succeeded, degraded or failed.")
    run_id: str
    recovery_point: str | None = None
    freeze_window_ms: float | None = None
    skew_ms: float | None = None
    method: str | None = Field(default=None, description="How volume B was snapshotted.")
    copy_ms: dict[str, float] = Field(
        default_factory=dict, description="Per member: from its snapshot call to its point."
    )
    paused_at: int | None = Field(
        default=None, description="The application's last transaction when it was paused."
    )
    db_transactions: int | None = None
    journal_transactions: int | None = None
    db_last_id: int | None = None
    journal_last_id: int | None = None
    differ: int | None = None
    verified: bool = False
    verdict: str
    verify: dict[str, Any] | None = Field(default=None, description="verify's JSON verdict.")
    restored_to: str | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class DemoReport(BaseModel):
    """What `run_demo` did: both backups side by side, and where to look."""

    model_config = ConfigDict(extra="forbid")

    workspace: Path
    policy: Path
    rows: list[DemoRow] = Field(description="The crash-consistent row, then the application one.")
    reflink: bool = Field(description="Whether volume B was cloned (instant) rather than copied.")
    btrfs: bool = Field(
        default=False,
        description="Whether volumes A and B were btrfs subvolumes, snapshotted with btrfs.",
    )
    why_not_btrfs: str | None = Field(
        default=None, description="Why the volumes were plain folders, when btrfs was tried."
    )
    summary: str = Field(description="One sentence on what happened.")
    rate: float = Field(description="The application's target transactions per second.")
    ballast_bytes: int
    transactions: int | None = Field(
        default=None, description="Transactions the application committed in all."
    )
    seconds: float = Field(description="How long the demo took.")
    size_bytes: int = Field(default=0, description="What the kept workspace takes on disk.")

    @property
    def crash(self) -> DemoRow:
        return self.rows[0]

    @property
    def application(self) -> DemoRow:
        return self.rows[1]

    @property
    def ok(self) -> bool:
        """Whether the application-consistent copy restarts clean (the demo's claim)."""
        return self.application.verified


# ------------------------------------------------------------------------------------ helpers


class _Say:
    def __init__(self, console: Console | None) -> None:
        self.console = console

    def __call__(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]• {escape(message)}[/]", highlight=False)


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    @property
    def socket(self) -> Path:
        return self.root / "app.sock"

    @property
    def app_log(self) -> Path:
        return self.root / "app.log"

    @property
    def hooks(self) -> Path:
        return self.root / "hooks"

    @property
    def volume_a(self) -> Path:
        return self.root / "data" / "db"

    @property
    def volume_b(self) -> Path:
        return self.root / "data" / "journal"

    @property
    def db(self) -> Path:
        return self.volume_a / DB_NAME

    @property
    def journal(self) -> Path:
        return self.volume_b / JOURNAL_NAME

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def image(self) -> Path:
        return self.root / "data.img"

    def restore(self, name: str) -> Path:
        return self.root / "restore" / name


def _make_root(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="quiesce-demo-")).resolve()
    root = Path(workdir).expanduser().resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DemoError(f"{root} is not an empty folder: give the demo a new or empty one")
    root.mkdir(parents=True, exist_ok=True)
    # The hook runner refuses hooks below folders that others can write.
    os.chmod(root, stat.S_IMODE(root.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    return root


def _write_ballast(path: Path, size: int) -> None:
    """`size` bytes that no filesystem can compress or share: a random MiB, numbered per MiB."""
    block = bytearray(os.urandom(1024 * 1024))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            block[:8] = written.to_bytes(8, "little")
            chunk = block[: min(len(block), size - written)]
            f.write(chunk)
            written += len(chunk)


def _hook_script(path: Path, comment: str, argv: list[str], *, pass_args: bool = False) -> str:
    tail = ' "$@"' if pass_args else ""
    path.write_text(f"#!/bin/sh\n# {comment}\nexec {shlex.join(argv)}{tail}\n")
    path.chmod(0o755)
    return str(path)


def _write_hooks(ws: Workspace) -> dict[str, str]:
    python = sys.executable
    if not python:
        raise DemoError("cannot tell which Python runs the demo (sys.executable is empty)")
    ws.hooks.mkdir(mode=0o700)
    sock = str(ws.socket)
    return {
        "pause": _hook_script(
            ws.hooks / "pause.sh",
            "pre hook: the app finishes its transaction, flushes both stores and holds writes",
            [python, "-m", "quiesce.demo.control", "pause", sock],
        ),
        "resume": _hook_script(
            ws.hooks / "resume.sh",
            "post hook: the app lets its writes go",
            [python, "-m", "quiesce.demo.control", "resume", sock],
        ),
        "verify": _hook_script(
            ws.hooks / "verify.sh",
            "verify hook: gets DIR/db last and checks it against DIR/journal",
            [python, "-m", "quiesce.demo.verify"],
            pass_args=True,
        ),
    }


def _write_policy(ws: Workspace, hooks: dict[str, str]) -> None:
    def members() -> list[dict[str, Any]]:
        # journal first: restore_point restores members in order and runs each member's verify
        # hook right after restoring it, and the db member's hook reads the restored journal.
        return [
            {"name": JOURNAL_MEMBER, "provider": "local", "volumes": [str(ws.volume_b)]},
            {
                "name": DB_MEMBER,
                "provider": "local",
                "volumes": [str(ws.volume_a)],
                # the hooks pause the sample application; no filesystem is frozen
                "pre_freezes_volumes": False,
                "hooks": {
                    "pre": {"run": [hooks["pause"]], "timeout_seconds": 10},
                    "post": {"run": [hooks["resume"]], "timeout_seconds": 10},
                    "verify": {
                        "run": [hooks["verify"], "--journal-member", JOURNAL_MEMBER],
                        "timeout_seconds": 60,
                    },
                },
            },
        ]

    doc = {
        "version": 1,
        "name": POLICY_NAME,
        "state_dir": str(ws.state),
        "groups": {
            CRASH_GROUP: {
                "consistency": "crash",
                "max_freeze_seconds": MAX_FREEZE_SECONDS,
                "members": members(),
            },
            APP_GROUP: {
                "consistency": "application",
                "max_freeze_seconds": MAX_FREEZE_SECONDS,
                "members": members(),
            },
        },
    }
    ws.policy.write_text(
        "# Written by `quiesce demo`: the same two members, backed up two ways.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def prepare_workspace(workdir: Path | None = None) -> Workspace:
    """Creates the folders, volume B's ballast, the hooks and the policy."""
    return _prepare(Workspace(_make_root(workdir)))


def _prepare(ws: Workspace) -> Workspace:
    ws.volume_a.mkdir(parents=True, exist_ok=True)  # exists already when it is a subvolume
    ws.volume_b.mkdir(parents=True, exist_ok=True)
    _write_ballast(ws.volume_b / BALLAST_NAME, BALLAST_BYTES)
    _write_policy(ws, _write_hooks(ws))
    return ws


def _check_hooks(policy: Policy, backends: Backends) -> None:
    """The hook runner's security checks (as `quiesce plan` runs them), before anything runs."""
    member = next(m for m in policy.group(APP_GROUP).members if m.name == DB_MEMBER)
    hooks = member.hooks
    assert hooks.pre is not None
    assert hooks.verify is not None
    runner = backends.providers["local"].hooks
    checks: list[tuple[Hook, Hook | None]] = [(hooks.pre, hooks.post), (hooks.verify, None)]
    for hook, thaw in checks:
        result = runner.check(
            HookCall(
                run_id="demo-check",
                policy=policy.name,
                group=APP_GROUP,
                member=DB_MEMBER,
                machine=Machine(provider="local", member=DB_MEMBER, machine_id="localhost"),
                phase="pre" if thaw is not None else "verify",
                hook=hook,
                thaw=thaw,
                max_freeze_seconds=MAX_FREEZE_SECONDS if thaw is not None else None,
                spec=member,
            )
        )
        if not result.ok:
            raise DemoError(
                f"the hook runner would refuse the demo's hooks ({result.code}): {result.message}"
            )


# ----------------------------------------------------------------------------- the application


def _log_tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running_app(ws: Workspace) -> Iterator[subprocess.Popen[bytes]]:
    """Starts the sample application and stops it on the way out, whatever happens (SIGTERM,
    then SIGKILL). It also stops by itself when this process dies."""
    argv = [
        sys.executable,
        "-m",
        "quiesce.demo.app",
        "--db",
        str(ws.db),
        "--journal",
        str(ws.journal),
        "--control",
        str(ws.socket),
        "--rate",
        f"{RATE:g}",
        "--pause-timeout",
        f"{PAUSE_TIMEOUT:g}",
        "--parent-pid",
        str(os.getpid()),
    ]
    with open(ws.app_log, "ab") as log:
        # Its own session: a Ctrl-C reaches the demo, which thaws through the engine and then
        # stops the application, rather than killing the application under the engine's feet.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise DemoError(
                    f"the sample application exited with code {proc.returncode}:\n"
                    + _log_tail(ws.app_log)
                )
            try:
                control.request(ws.socket, "status", timeout=1.0)
                break
            except control.ControlError as exc:
                if time.monotonic() >= deadline:
                    raise DemoError(f"the sample application did not start: {exc}") from None
                time.sleep(0.02)
        yield proc
    finally:
        stop_app(proc)


def stop_app(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; always reaps the process."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _last_committed(log: Path) -> int | None:
    for line in reversed(_log_tail(log, 50).splitlines()):
        if line.startswith("stopped "):
            for part in line.split():
                if part.startswith("last_id="):
                    return int(part.removeprefix("last_id="))
    return None


# ----------------------------------------------------------------------------------- the rows


def _verify_json(result: HookResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    for line in reversed(result.output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data
    return None


def _member(record: RunRecord, name: str) -> MemberRecord | None:
    return next((m for m in record.members if m.name == name), None)


def _row(
    label: str, record: RunRecord, restored: RestoreResult | None, restore_error: str | None
) -> DemoRow:
    copy_ms: dict[str, float] = {}
    method = None
    for member in record.members:
        snaps = member.snapshots
        if snaps:
            start = min(s.started_at for s in snaps)
            end = max(s.fixed_at for s in snaps)
            copy_ms[member.name] = round((end - start).total_seconds() * 1000, 1)
        if member.name == JOURNAL_MEMBER and snaps:
            method = ",".join(sorted({s.method for s in snaps}))
    db = _member(record, DB_MEMBER)
    paused_at = None
    if db is not None:
        for machine in db.machines:
            if machine.pre is not None and machine.pre.ok:
                answers = machine.pre.output.strip().splitlines()
                paused_at = control.paused_at(answers[-1]) if answers else None
    row = DemoRow(
        label=label,
        group=record.group,
        requested=record.requested_consistency,
        consistency=record.consistency.value,
        status=record.status.value,
        run_id=record.run_id,
        recovery_point=record.recovery_point,
        freeze_window_ms=record.freeze_window_ms,
        skew_ms=record.skew_ms,
        method=method,
        copy_ms=copy_ms,
        paused_at=paused_at,
        verdict="not verified",
        errors=list(record.errors),
        warnings=list(record.warnings),
    )
    if restored is None:
        row.verdict = (
            f"not restored: {restore_error}" if restore_error else "no recovery point recorded"
        )
        return row
    row.restored_to = restored.target
    hook = next((m.verify for m in restored.members if m.name == DB_MEMBER), None)
    data = _verify_json(hook)
    row.verify = data
    if data is None:
        what = f"{hook.status.value} ({hook.code}): {hook.message}" if hook else "did not run"
        row.verdict = f"verify hook {what}"
        return row
    row.verified = bool(data.get("ok")) and hook is not None and hook.ok
    row.verdict = str(data.get("verdict", "no verdict"))
    row.db_transactions = data.get("db_transactions")
    row.journal_transactions = data.get("journal_transactions")
    row.db_last_id = data.get("db_last_id")
    row.journal_last_id = data.get("journal_last_id")
    row.differ = data.get("differ")
    return row


def summary_sentence(crash: DemoRow, app: DemoRow, reflink: bool, btrfs: bool = False) -> str:
    """One honest sentence on what happened."""
    if not app.verified:
        return (
            f"The application-consistent backup did NOT restart clean ({app.verdict}; the run "
            f"{app.status}, recorded {app.consistency}): see its errors above and the hooks' "
            "output in the workspace."
        )
    held = f" at transaction {app.paused_at:,}" if app.paused_at is not None else ""
    app_part = (
        f"the application-consistent copy was taken while the application was paused{held}, "
        "so it restarts clean by construction, not by luck."
    )
    apart = f"{crash.skew_ms:,.0f} ms" if crash.skew_ms is not None else "moments"
    if crash.verified and btrfs:
        return (
            "Each volume was snapshotted at one point in time (btrfs) and the two snapshots "
            f"were {apart} apart, so the crash-consistent copy happened to agree; " + app_part
        )
    if crash.verified and reflink:
        return (
            "Copies were instant (reflink), so the crash-consistent copy happened to agree; "
            + app_part
        )
    if crash.verified:
        return (
            "The crash-consistent copy happened to agree this time (no transaction landed "
            f"between the copies of volume A and volume B); {app_part}"
        )
    db_last, journal_last = crash.db_last_id, crash.journal_last_id
    if crash.differ and db_last is not None and journal_last is not None:
        ahead, behind = (
            ("journal", "database") if journal_last > db_last else ("database", "journal")
        )
        b_ms = crash.copy_ms.get(JOURNAL_MEMBER)
        took = f"took {b_ms:,.0f} ms to copy" if b_ms is not None else "took a while to copy"
        count = f"{crash.differ:,} transaction{'s' if crash.differ != 1 else ''}"
        if btrfs:
            return (
                "Each volume was snapshotted at one point in time (btrfs), but the two "
                f"snapshots were {apart} apart while the application kept committing, so in "
                f"the crash-consistent copy the {ahead} is {count} ahead of the {behind} and "
                f"needs clean-up before a restart; {app_part}"
            )
        return (
            f"Volume B {took} while the application kept committing, so in the "
            f"crash-consistent copy the {ahead} is {count} ahead of the {behind} and needs "
            f"clean-up before a restart; {app_part}"
        )
    return f"The crash-consistent copy needs clean-up ({crash.verdict}); {app_part}"


# ------------------------------------------------------------------------------------- the demo


def run_demo(
    workdir: Path | None = None,
    *,
    console: Console | None = None,
    duration_hint: float | None = None,
    btrfs: bool = True,
) -> DemoReport:
    """Runs the whole demo and returns its report (print it with `render_report`).

    `workdir`: an absent or empty folder for the workspace (default: a new temp folder); it is
    kept. `console`: where to narrate the steps (default: silent). `duration_hint`: seconds the
    application commits before the first backup (default 1.5). `btrfs`: put the volumes on a
    loop-mounted btrfs filesystem when this machine can (root, a loop device, btrfs), so they
    are snapshotted with btrfs; the report says which method was used, and why not btrfs.
    """
    started = time.monotonic()
    say = _Say(console)
    ws = Workspace(_make_root(workdir))
    if not btrfs:
        return _run_demo(ws, say, started, duration_hint, "not asked for")
    names = (ws.volume_a.name, ws.volume_b.name)
    with btrfs_volumes(ws.data, ws.image, names) as why_not:
        if why_not is None:
            say(f"volumes A and B are subvolumes of a btrfs filesystem ({ws.image.name}) at data/")
        else:
            say(f"not using btrfs ({why_not}): volumes A and B are plain folders")
        report = _run_demo(ws, say, started, duration_hint, why_not)
    return report.model_copy(update={"size_bytes": _tree_size(ws.root)})


def _run_demo(
    ws: Workspace, say: _Say, started: float, duration_hint: float | None, why_not: str | None
) -> DemoReport:
    warm_up = DEFAULT_WARM_UP if duration_hint is None else max(0.2, float(duration_hint))
    _prepare(ws)
    say(
        f"workspace {ws.root}: volume A is data/db, volume B is data/journal "
        f"(with {_mib(BALLAST_BYTES)} of ballast)"
    )
    policy = load_policy(ws.policy)
    backends = backends_for(policy)
    _check_hooks(policy, backends)

    say(f"starting the sample application ({RATE:g} transactions/s into volume A and B)")
    with running_app(ws):
        time.sleep(warm_up)
        taken = "snapshotted" if why_not is None else "copied"
        say(f"backing up {CRASH_GROUP} under load: no hooks, both volumes {taken} while it runs")
        crash = run_group(policy, CRASH_GROUP, backends)
        time.sleep(min(warm_up, 0.5))
        say(f"backing up {APP_GROUP} under load: pause, snapshot both volumes, resume")
        app = run_group(policy, APP_GROUP, backends)
        say("stopping the sample application")
    transactions = _last_committed(ws.app_log)

    rows = []
    for label, record, target in (
        ("crash-consistent", crash, "crash"),
        ("application-consistent", app, "app"),
    ):
        restored, error = None, None
        if record.recovery_point is not None:
            say(f"restoring {record.recovery_point} into restore/{target} and verifying it")
            try:
                restored = restore_point(
                    policy, backends, record.recovery_point, ws.restore(target)
                )
            except QuiesceError as exc:
                error = str(exc)
        rows.append(_row(label, record, restored, error))

    reflink = rows[0].method == "reflink"
    on_btrfs = rows[0].method == "btrfs"
    return DemoReport(
        workspace=ws.root,
        policy=ws.policy,
        rows=rows,
        reflink=reflink,
        btrfs=on_btrfs,
        why_not_btrfs=None if on_btrfs else why_not,
        summary=summary_sentence(rows[0], rows[1], reflink, on_btrfs),
        rate=RATE,
        ballast_bytes=BALLAST_BYTES,
        transactions=transactions,
        seconds=round(time.monotonic() - started, 2),
        size_bytes=_tree_size(ws.root),
    )


def _tree_size(top: Path) -> int:
    """Bytes the files take: a sparse file (data.img) counts what is allocated to it."""
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += min(st.st_size, st.st_blocks * 512)
    return total


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


__all__ = [
    "APP_GROUP",
    "CRASH_GROUP",
    "DB_MEMBER",
    "DemoError",
    "DemoReport",
    "DemoRow",
    "Workspace",
    "prepare_workspace",
    "run_demo",
    "summary_sentence",
]
