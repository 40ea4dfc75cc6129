"""Human-readable views of records, points and plans (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from quiesce.cloud_restore import CloudRestoreResult
from quiesce.events import RunResult
from quiesce.group_restore import GroupRestoreResult
from quiesce.record import RecoveryPoint
from quiesce.restore import RestoreResult

STATUS_STYLE = {"succeeded": "green", "degraded": "yellow", "failed": "red", "running": "yellow"}
LEVEL_STYLE = {"application": "green", "crash": "yellow", "none": "red"}


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def run_summary(console: Console, result: RunResult) -> None:
    style = STATUS_STYLE[result.status]
    head = Text.assemble(
        ("run ", "bold"),
        (result.run_id, "bold"),
        ": ",
        (result.status, f"bold {style}"),
        ", ",
        (result.consistency.value, LEVEL_STYLE[result.consistency.value]),
        "-consistent",
    )
    console.print(head)
    table = Table(box=None, pad_edge=False)
    for col in ("member", "machine", "pre", "snapshot", "post", "level"):
        table.add_column(col)
    for member in result.members:
        for mc in member.machines:
            pre = mc["pre"]["status"] if mc["pre"] else "—"
            post = mc["post"]["status"] if mc["post"] else "—"
            if mc["post"] and mc["post"]["by"] == "watchdog":
                post += " (watchdog)"
            snap = mc["snapshot_error"] or (f"{len(mc['snapshots'])} taken")
            level = mc["consistency"]
            table.add_row(
                member.name, mc["machine_id"], pre, snap, post, Text(level, LEVEL_STYLE[level])
            )
    console.print(table)
    console.print(
        f"recovery point: {result.recovery_point or '—'}   freeze window: "
        f"{ms(result.freeze_window_ms)}   skew: {ms(result.skew_ms)}"
    )
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", "yellow"))
    for error in result.errors:
        console.print(Text(f"error: {error}", "red"))


def _methods(point: RecoveryPoint) -> str:
    """Each member's way of fixing its point, where any is not a plain snapshot."""
    kinds = {m.name: sorted({s.point for s in m.snapshots}) for m in point.members}
    if all(k in ([], ["snapshot"]) for k in kinds.values()):
        return "—"
    return ", ".join(f"{name}: {'+'.join(k) or '—'}" for name, k in kinds.items())


def points_table(points: list[RecoveryPoint]) -> Table:
    table = Table(title="recovery points", title_justify="left")
    table.add_column("id", overflow="fold")
    cols = ["group", "time (UTC)", "consistency", "freeze", "skew", "size", "verified"]
    timed = any(p.restore_time is not None for p in points)
    if timed:
        cols += ["T (pitr, UTC)", "methods"]
    copied = any(p.copies for p in points)
    if copied:
        cols.append("copies")
    drilled = any(p.drills for p in points)
    if drilled:
        cols.append("last drill")
    for col in cols:
        table.add_column(col)
    for p in points:
        verified = {True: "yes", False: "FAILED", None: "—"}[p.verified]
        row: list[str | Text] = [
            p.id,
            p.group,
            p.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(p.consistency.value, LEVEL_STYLE[p.consistency.value]),
            ms(p.freeze_window_ms),
            ms(p.skew_ms),
            size(p.size_bytes),
            verified,
        ]
        if timed:
            moment = p.restore_time.strftime("%Y-%m-%d %H:%M:%S") if p.restore_time else "—"
            row += [moment, _methods(p)]
        if copied:
            row.append(", ".join(f"{c.region}: {c.state.value}" for c in p.copies) or "—")
        if drilled:
            row.append(_last_drill(p))
        table.add_row(*row)
    return table


def _last_drill(point: RecoveryPoint) -> Text:
    if not point.drills:
        return Text("—")
    last = point.drills[-1]
    rto = f" in {last.rto_seconds:g} s" if last.rto_seconds is not None else ""
    where = f" ({last.region})" if last.region else ""
    return Text(f"{last.verdict}{rto}{where}", "green" if last.verdict == "passed" else "red")


def launch_summary(console: Console, result: GroupRestoreResult) -> None:
    where = f" in {result.region}" if result.region else ""
    console.print(
        Text.assemble(
            ("launched ", "bold"), (result.recovery_point, "bold"), f"{where}, label {result.label}"
        )
    )
    table = Table(box=None, pad_edge=False)
    for col in ("member", "from", "copy", "ready", "verify"):
        table.add_column(col, overflow="fold")
    for m in result.machines:
        verify = "—" if m.verify is None else m.verify.status.value
        table.add_row(m.member, m.source, m.machine, "yes" if m.ready else "no", verify)
    console.print(table)
    rto = f"{result.rto_seconds:g} s" if result.rto_seconds is not None else "—"
    phases = ", ".join(f"{k} {v:g} s" for k, v in result.phases.items())
    console.print(f"recovery time: {rto}   ({phases})")
    for name in result.skipped:
        console.print(
            Text(f"not launched: {name} (a managed service: restore it with --in-cloud)", "yellow")
        )
    for error in result.errors:
        console.print(Text(f"error: {error}", "red"), soft_wrap=True)
    if result.deleted or result.left:
        console.print(f"deleted {len(result.deleted)} resource(s)")
    elif result.created:
        console.print(
            Text(
                f"left running: delete with `quiesce restore-cleanup POLICY {result.label}`",
                "yellow",
            )
        )
    for item in result.left:
        console.print(Text(f"left behind: {item}", "red"), soft_wrap=True)


def cloud_restore_summary(console: Console, result: CloudRestoreResult) -> None:
    verb = "restoring" if result.executed else "to restore"
    moment = f", T = {result.restore_time.isoformat()}" if result.restore_time else ""
    console.print(
        Text.assemble(
            (f"{verb} ", "bold"),
            (result.recovery_point, "bold"),
            f" ({result.consistency}-consistent{moment}) in its clouds",
        )
    )
    table = Table(box=None, pad_edge=False)
    for col in ("member", "snapshot", "call", "created" if result.executed else "command"):
        table.add_column(col, overflow="fold")
    for step in result.steps:
        last = ", ".join(step.created) or "—" if result.executed else step.command or "—"
        table.add_row(step.member, step.snapshot, step.action, last)
    console.print(table)
    if not result.executed:
        console.print(Text("nothing was created: add --execute to make these calls", "yellow"))
    if result.error:
        console.print(Text(f"error: {result.error}", "red"), soft_wrap=True)


def restore_summary(console: Console, result: RestoreResult) -> None:
    console.print(
        Text.assemble(
            ("restored ", "bold"),
            (result.recovery_point, "bold"),
            f" ({result.consistency}-consistent) into {result.target}",
        )
    )
    table = Table(box=None, pad_edge=False)
    for col in ("member", "volume", "restored to", "verify"):
        table.add_column(col)
    for member in result.members:
        verdict = Text("—")
        if member.verify is not None:
            ok = member.verify.ok
            detail = member.verify.output.strip().splitlines()[-1:] or [member.verify.code]
            verdict = Text(("passed: " if ok else "FAILED: ") + detail[0], "green" if ok else "red")
        for i, volume in enumerate(member.volumes):
            table.add_row(
                member.name if i == 0 else "",
                volume.volume,
                volume.path,
                verdict if i == 0 else Text(""),
            )
    console.print(table)
