"""Prints the demo's report: both backups side by side, the workspace, and what happened."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from quiesce.demo.scenario import DB_MEMBER, DemoReport, DemoRow
from quiesce.demo.verify import JOURNAL_MEMBER


def _ms(value: float | None, none: str = "—") -> str:
    return none if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _level(row: DemoRow) -> Text:
    style = {"application": "bold green", "crash": "yellow"}.get(row.consistency, "red")
    text = Text(row.consistency, style)
    if row.status != "succeeded":
        text.append(f" (run {row.status})", "red")
    return text


def _hooks(row: DemoRow) -> str:
    if row.requested == "crash":
        taken = "snapshotted" if row.method == "btrfs" else "copied"
        return f"none: {taken} while it ran"
    return "pause → snapshot → resume"


def _held(row: DemoRow) -> str:
    if row.paused_at is not None:
        return f"paused at tx {row.paused_at:,}"
    return "never paused" if row.requested == "crash" else "— (the pause failed)"


def _copies(row: DemoRow) -> str:
    names = {DB_MEMBER: "A", JOURNAL_MEMBER: "B"}
    parts = [
        f"{label} {_ms(row.copy_ms[name])}" for name, label in names.items() if name in row.copy_ms
    ]
    method = f" ({row.method})" if row.method else ""
    return (", ".join(parts) or "—") + method


def _verdict(row: DemoRow) -> Text:
    return Text(row.verdict, "bold green" if row.verified else "bold red")


def report_table(report: DemoReport) -> Table:
    """Both backups side by side, one column each."""
    table = Table(
        title="quiesce demo: one live workload, two backups",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("", style="bold", no_wrap=True)
    for row in report.rows:
        table.add_column(row.label, overflow="fold", ratio=1)
    lines: list[tuple[str, list[Text | str]]] = [
        ("group", [r.group for r in report.rows]),
        ("consistency", [_level(r) for r in report.rows]),
        ("hooks", [_hooks(r) for r in report.rows]),
        ("application", [_held(r) for r in report.rows]),
        ("freeze window", [_ms(r.freeze_window_ms, "— (nothing held)") for r in report.rows]),
        ("skew", [_ms(r.skew_ms) for r in report.rows]),
        ("copy time", [_copies(r) for r in report.rows]),
        ("tx in db (A)", [_count(r.db_transactions) for r in report.rows]),
        ("tx in journal (B)", [_count(r.journal_transactions) for r in report.rows]),
        ("verify", [_verdict(r) for r in report.rows]),
        ("restored to", [_relative(report, r.restored_to) for r in report.rows]),
    ]
    for name, cells in lines:
        table.add_row(name, *cells)
    return table


def _relative(report: DemoReport, path: str | None) -> str:
    if path is None:
        return "—"
    try:
        return str(report.workspace.joinpath(path).relative_to(report.workspace)) + "/"
    except ValueError:
        return path


def render_report(report: DemoReport, console: Console) -> None:
    """Prints the side-by-side table, the workspace path and one sentence on what happened."""
    console.print(report_table(report))
    for row in report.rows:
        for error in row.errors:
            console.print(Text(f"{row.group}: {error}", "red"))
    done = f"{report.seconds:.1f} s"
    if report.transactions is not None:
        done = f"{report.transactions:,} transactions in {done}"
    console.print(
        Text.assemble(
            ("workspace: ", "bold"),
            str(report.workspace),
            f"  (kept, {report.size_bytes / (1024 * 1024):,.0f} MiB; {done})",
        ),
        soft_wrap=True,
    )
    if report.btrfs:
        method = (
            "btrfs: volumes A and B are subvolumes of a loop-mounted btrfs filesystem, each "
            "snapshotted read-only at one point in time (see them again: sudo mount -o loop "
            f"{report.workspace}/data.img {report.workspace}/data)"
        )
    else:
        how = report.crash.method or "copy"
        why = f" (not btrfs: {report.why_not_btrfs})" if report.why_not_btrfs else ""
        method = f"{how}: volumes A and B are folders, cloned or copied file by file{why}"
    console.print(Text.assemble(("snapshot method: ", "bold"), method), soft_wrap=True)
    console.print(
        Text.assemble(
            ("look at it: ", "bold"),
            f"quiesce points {report.policy}  ·  restore/crash/ and restore/app/  ·  "
            f"rm -rf {report.workspace} when done",
        ),
        soft_wrap=True,
    )
    console.print(Text(report.summary, "green" if report.ok else "red"))
