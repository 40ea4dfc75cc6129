"""Helpers of the local provider's tests: volumes with varied files, calls and records."""

from __future__ import annotations

import os
import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quiesce.policy.model import LocalMember
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import Consistency, Orchestrator, PointMember, RecoveryPoint, RunRecord

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
MTIME_NS = 1_700_000_000_123_456_789

TreeSignature = dict[str, tuple[Any, ...]]


def fill_volume(root: Path) -> Path:
    """A folder with what a data folder may hold: nested files, modes, links, empty folders."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-folder").mkdir()
    (root / "table.db").write_bytes(b"rows\x00" * 1000)
    (root / "sub" / "wal.log").write_text("entry 1\nentry 2\n")
    (root / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "empty-file").write_bytes(b"")
    os.chmod(root / "table.db", 0o640)
    os.chmod(root / "sub" / "deeper" / "run.sh", 0o750)
    os.chmod(root / "sub" / "deeper", 0o700)
    (root / "link-to-log").symlink_to("sub/wal.log")
    (root / "dangling").symlink_to("/nonexistent/target")
    for path in (root / "table.db", root / "sub" / "wal.log", root / "sub"):
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return root


def tree_signature(root: Path) -> TreeSignature:
    """Everything a faithful copy must keep: kind, mode, mtime, contents or link target."""
    out: TreeSignature = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


def snapshot_call(
    *volumes: Path,
    run_id: str = "r-1",
    member: str = "db",
    group: str = "orders",
    policy: str = "shop",
    recovery_point: str = "rp-1",
) -> SnapshotCall:
    return SnapshotCall(
        run_id=run_id,
        policy=policy,
        group=group,
        member=member,
        machine=Machine(
            provider="local",
            member=member,
            machine_id=socket.gethostname(),
            volumes=tuple(str(v) for v in volumes),
        ),
        recovery_point=recovery_point,
        consistency="application",
        spec=LocalMember(
            name=member, provider="local", volumes=[str(v) for v in volumes] or ["/data"]
        ),
    )


def run_record(
    run_id: str, *, group: str = "orders", policy: str = "shop", minutes: int = 0
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        policy=policy,
        group=group,
        requested_consistency="application",
        on_quiesce_failure="fallback",
        max_freeze_seconds=30,
        orchestrator=Orchestrator(host="h", pid=1),
        started_at=T0 + timedelta(minutes=minutes),
        updated_at=T0 + timedelta(minutes=minutes),
    )


def recovery_point(
    point_id: str, *, group: str = "orders", policy: str = "shop", minutes: int = 0
) -> RecoveryPoint:
    return RecoveryPoint(
        id=point_id,
        policy=policy,
        group=group,
        run_id=f"run-of-{point_id}",
        created_at=T0 + timedelta(minutes=minutes),
        consistency=Consistency.APPLICATION,
        freeze_window_ms=12.5,
        skew_ms=0.3,
        members=[
            PointMember(
                name="db", provider="local", consistency=Consistency.APPLICATION, snapshots=[]
            )
        ],
    )


def free_bytes(path: Path) -> int:
    os.sync()
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize
