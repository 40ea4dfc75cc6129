"""`quiesce`: validate, plan, run, inspect and recover consistency-group backups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

from quiesce import __version__
from quiesce.allowlist import allowlist, policy_hooks, render
from quiesce.cli.render import (
    cloud_restore_summary,
    launch_summary,
    points_table,
    restore_summary,
    run_summary,
)
from quiesce.cloud_restore import restore_in_cloud
from quiesce.drill import run_drill
from quiesce.engine import RunInterrupted, recover_abandoned, run_group, run_result
from quiesce.engine.orphans import Swept
from quiesce.engine.outcome import EXIT_CODES
from quiesce.errors import (
    DuplicateTriggerError,
    GroupBusyError,
    PolicyError,
    QuiesceError,
    UnknownGroupError,
)
from quiesce.events import event_schemas
from quiesce.group_restore import cleanup_restore, restore_group
from quiesce.plan import GOOD_STATES, plan_policy
from quiesce.policy import Policy, load_policy
from quiesce.policy.model import json_schema
from quiesce.providers.local.readonly import read_catalog, read_events
from quiesce.providers.local.statedir import same_device_problems
from quiesce.record import RunRecord, RunStatus
from quiesce.restore import restore_point
from quiesce.wiring import backends_for, has_state, providers_for

EXIT_INVALID = 2

app = typer.Typer(
    name="quiesce",
    help=(
        "Application-consistent backups of groups of machines: freeze every member, snapshot "
        "every member, thaw every member, and record one recovery point.\n\n"
        "Exit codes: 0 done at the requested consistency; 3 a recovery point at a lower level "
        "or a thaw that failed (degraded); 1 no recovery point or an error; 2 invalid input; "
        "4 the trigger id's run is still in progress; 130 stopped by SIGINT/SIGTERM."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

PolicyArg = Annotated[
    Path,
    typer.Argument(
        help="The policy file (YAML, or JSON when its name ends in .json).",
        metavar="POLICY",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead.")]
GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Only this group.", show_default=False)
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text(f"error: {message}", "red"), soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Every error becomes a message and an exit code; never a traceback (QUIESCE_DEBUG=1
    shows one for unexpected errors)."""
    try:
        yield
    except typer.Exit:
        raise
    except (PolicyError, UnknownGroupError) as exc:
        fail(str(exc), EXIT_INVALID)
    except QuiesceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(Text("interrupted: every member whose pre hook started was thawed", "yellow"))
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("QUIESCE_DEBUG"):
            traceback.print_exc()
        fail(f"unexpected {type(exc).__name__}: {exc} (set QUIESCE_DEBUG=1 for details)")


def _load(path: Path) -> Policy:
    return load_policy(path)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def validate(policy: PolicyArg, as_json: JsonOpt = False) -> None:
    """Check a policy file: fields, values and cross-field rules. Exit 2 names every problem."""
    try:
        loaded = _load(policy)
    except PolicyError as exc:
        if as_json:
            _print_json({"valid": False, "file": exc.path, "problems": exc.problems})
            raise typer.Exit(EXIT_INVALID) from None
        fail(str(exc), EXIT_INVALID)
    layout = same_device_problems(loaded)
    if layout:
        if as_json:
            _print_json({"valid": False, "file": str(policy), "problems": layout})
            raise typer.Exit(EXIT_INVALID)
        fail(f"{policy}: invalid layout\n" + "\n".join(f"  - {p}" for p in layout), EXIT_INVALID)
    members = sum(len(g.members) for g in loaded.groups.values())
    if as_json:
        _print_json({"valid": True, "file": str(policy), "policy": loaded.name})
        return
    out.print(
        Text.assemble(
            ("✓ ", "green"),
            f"{policy}: policy {loaded.name!r} is valid ({len(loaded.groups)} group(s), "
            f"{members} member(s))",
        )
    )


@app.command()
def plan(policy: PolicyArg, group: GroupOpt = None, as_json: JsonOpt = False) -> None:
    """Show what a run would do, without doing it: members and their machines, each hook with
    its security check, the snapshot method per volume, and the watchdog bound.
    Exit 2 when a hook would be refused."""
    with guarded():
        loaded = _load(policy)
        if group is not None:
            loaded.group(group)
        report = plan_policy(
            loaded, providers_for(loaded), group, problems=same_device_problems(loaded)
        )
    if as_json:
        _print_json(report)
    else:
        for problem in report["problems"]:
            out.print(Text(f"✗ {problem}", "red"), soft_wrap=True)
        for g in report["groups"]:
            out.print(
                Text.assemble(
                    ("group ", "bold"),
                    (g["name"], "bold"),
                    f": {g['consistency']}-consistent, on quiesce failure: "
                    f"{g['on_quiesce_failure']}, watchdog thaws after "
                    f"{g['max_freeze_seconds']:g}s",
                )
            )
            table = Table(box=None, pad_edge=False)
            for col in ("member", "machine", "volume → snapshot", "hooks"):
                table.add_column(col)
            for m in g["members"]:
                hooks = Text()
                for phase, h in m["hooks"].items():
                    shown = " ".join(h["run"]) if h["run"] else "(declared on the machines)"
                    hooks.append(f"{phase}: {h['name']}: {shown}\n")
                    for mc in h["machines"]:
                        hooks.append(_machine_line(mc))
                if m.get("error"):
                    hooks.append(m["error"], "red")
                volumes = "\n".join(f"{v['volume']} → {v['method']}" for v in m["volumes"])
                point = m.get("point") or {}
                if point.get("kind", "snapshot") != "snapshot":
                    step = point.get("resolution_seconds") or 0
                    at = f" at {step:g} s" if point["kind"] == "pitr" and step else ""
                    volumes += f"\npoint: {point['kind']}{at}"
                    if point.get("detail"):
                        volumes += f" ({point['detail']})"
                if m.get("permissions"):
                    volumes += "\nneeds: " + ", ".join(m["permissions"])
                machines = "\n".join(m["machines"])
                table.add_row(m["name"], machines, volumes, hooks or "—")
            out.print(table)
    if not report["ok"]:
        raise typer.Exit(EXIT_INVALID)


def _machine_line(mc: dict[str, Any]) -> Text:
    """One machine's check and allowlist state, for `plan`."""
    check = mc["check"]
    states = [mc.get("allowlist", "?")]
    if "thaw_allowlist" in mc:
        states.append(f"thaw {mc['thaw']}: {mc['thaw_allowlist']}")
    good = (
        check["status"] == "succeeded"
        and mc.get("allowlist") in GOOD_STATES
        and mc.get("thaw_allowlist", "matches") in GOOD_STATES
    )
    if "signature" in mc:
        states.append(f"answer signature {mc['signature']}")
    line = Text(f"  {mc.get('machine', '?')}: allowlist {', '.join(states)} ")
    detail = "✗\n" if check["status"] == "succeeded" else f"✗ {check['code']}: {check['message']}\n"
    line.append("✓\n" if good else detail, "green" if good else "red")
    return line


def _progress(status: Status | None) -> Any:
    def show(record: RunRecord) -> None:
        if status is not None:
            status.update(f"run {record.run_id}: {record.phase.value.replace('_', ' ')}…")

    return show


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """The first SIGTERM unwinds through the engine's thaw path. Later ones are ignored: they
    must not interrupt that unwinding (the thaw, the record), nor kill the interpreter while it
    exits (it restores default handlers, never an ignored one), so the exit stays 130."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@app.command()
def run(
    policy: PolicyArg,
    group: Annotated[str, typer.Option("--group", "-g", help="The group to back up.")],
    trigger_id: Annotated[
        str | None,
        typer.Option(
            "--trigger-id",
            help="Idempotency key: a trigger id that already started a run starts no other.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up one group: quiesce all members, snapshot all, thaw all, record the point.

    Exit 0: the requested consistency was reached; 3: a recovery point at a lower level, or a
    thaw failed; 1: no recovery point; 2: invalid input."""
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    record: RunRecord | None = None
    interrupted = False
    with guarded():
        loaded = _load(policy)
        loaded.group(group)
        backends = backends_for(loaded)
        show_progress = err.is_terminal and not as_json
        status = err.status("starting…") if show_progress else None
        try:
            if status is not None:
                status.start()
            record = run_group(
                loaded, group, backends, trigger_id=trigger_id, progress=_progress(status)
            )
        except DuplicateTriggerError as exc:
            err.print(Text(str(exc), "yellow"))
            if not isinstance(exc.record, RunRecord):
                fail(f"the record of run {exc.run_id} is missing")
            record = exc.record
            if record.status is RunStatus.RUNNING:
                err.print(Text(f"run {record.run_id} is still in progress", "yellow"))
        except GroupBusyError as exc:
            fail(str(exc))
        except RunInterrupted as exc:
            record, interrupted = exc.record, True
        finally:
            if status is not None:
                status.stop()
    assert record is not None
    result = run_result(record)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        run_summary(out, result)
    raise typer.Exit(130 if interrupted else EXIT_CODES[record.status])


@app.command()
def events(
    policy: PolicyArg,
    as_json: JsonOpt = False,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only events whose type starts with this.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's events.")] = None,
) -> None:
    """List the CloudEvents on the local bus, oldest first (--json: one event per line)."""
    with guarded():
        loaded = _load(policy)
        bus = read_events(Path(loaded.state_dir)) if has_state(loaded) else None
        stored = bus.read() if bus is not None else []
        selected = [
            e
            for e in stored
            if (type_ is None or e.type.startswith(type_))
            and (run_id is None or e.quiescerunid == run_id)
        ]
    if as_json:
        for event in selected:
            sys.stdout.write(event.to_json() + "\n")
        return
    table = Table(title=f"events of {loaded.name}", title_justify="left")
    for col in ("time (UTC)", "type", "run", "subject"):
        table.add_column(col)
    for event in selected:
        table.add_row(
            event.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            event.type,
            event.quiescerunid or "",
            event.subject or "",
        )
    out.print(table)


@app.command()
def points(policy: PolicyArg, group: GroupOpt = None, as_json: JsonOpt = False) -> None:
    """List recovery points, newest first: time, consistency, freeze window, skew, size."""
    with guarded():
        loaded = _load(policy)
        if group is not None:
            loaded.group(group)
        catalog = read_catalog(Path(loaded.state_dir)) if has_state(loaded) else None
        found = catalog.list_points(loaded.name, group) if catalog is not None else []
    if as_json:
        _print_json([p.model_dump(mode="json") for p in found])
        return
    if not found:
        out.print("no recovery points yet")
        return
    out.print(points_table(found))


@app.command()
def restore(
    policy: PolicyArg,
    recovery_point: Annotated[
        str, typer.Argument(help="The recovery point's id (see `quiesce points`).")
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", help="Folder to restore into: DIR/<member>/<volume>.", show_default=False
        ),
    ] = None,
    member: Annotated[
        str | None, typer.Option("--member", "-m", help="Only this member.", show_default=False)
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Do not run the verify hooks.")
    ] = False,
    in_cloud: Annotated[
        bool,
        typer.Option(
            "--in-cloud",
            help="Restore in the members' clouds as new resources (disks from snapshots, "
            "databases to the point's restore time T, shares from snapshots): prints the calls; "
            "--execute makes them.",
        ),
    ] = False,
    execute: Annotated[
        bool, typer.Option("--execute", help="With --in-cloud: make the calls (creates resources).")
    ] = False,
    zone: Annotated[
        str | None,
        typer.Option(
            "--zone", help="With --in-cloud: a zone other than the original.", show_default=False
        ),
    ] = None,
    name_prefix: Annotated[
        str | None,
        typer.Option(
            "--name-prefix",
            help="With --in-cloud: the new resources' name prefix (default restore-<run date>).",
            show_default=False,
        ),
    ] = None,
    launch: Annotated[
        bool,
        typer.Option(
            "--launch",
            help="With --in-cloud: launch every machine as a copy at the group's `restore:` site "
            "(an isolated network), wait until each answers and run the verify hooks on it; "
            "prints the restore's label (every resource it made is tagged with it).",
        ),
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="With --launch: restore the point's copy in this region (its `copies:` entry).",
            show_default=False,
        ),
    ] = None,
    cleanup: Annotated[
        bool,
        typer.Option("--cleanup", help="With --launch: delete everything it made at the end."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a recovery point's volumes into DIR/<member>/<volume> and run each member's
    verify hook on its copy (the verdict is recorded on the point); or, with --in-cloud, restore
    the whole group in its clouds to the one point. Exit 1 when a verify hook or a cloud call
    fails."""
    if in_cloud == (to is not None):
        fail("give either --to DIR (restore into folders) or --in-cloud", code=EXIT_INVALID)
    if (execute or zone or name_prefix or launch) and not in_cloud:
        fail("--execute, --zone, --name-prefix and --launch go with --in-cloud", code=EXIT_INVALID)
    if (region or cleanup) and not launch:
        fail("--region and --cleanup go with --in-cloud --launch", code=EXIT_INVALID)
    if launch:
        with guarded():
            loaded = _load(policy)
            if not has_state(loaded):
                fail(f"policy {loaded.name!r} has no recovery points yet")
            launched = restore_group(
                loaded,
                backends_for(loaded),
                recovery_point,
                region=region,
                cleanup=cleanup,
                verify=not no_verify,
            )
        if as_json:
            _print_json(launched.model_dump(mode="json"))
        else:
            launch_summary(out, launched)
        raise typer.Exit(0 if launched.ok else 1)
    with guarded():
        loaded = _load(policy)
        if not has_state(loaded):
            fail(f"policy {loaded.name!r} has no recovery points yet")
        backends = backends_for(loaded)
        if in_cloud:
            cloud = restore_in_cloud(
                loaded,
                backends,
                recovery_point,
                execute=execute,
                member=member,
                zone=zone,
                prefix=name_prefix,
            )
        else:
            assert to is not None
            result = restore_point(
                loaded, backends, recovery_point, to, member=member, verify=not no_verify
            )
    if in_cloud:
        if as_json:
            _print_json(cloud.model_dump(mode="json"))
        else:
            cloud_restore_summary(out, cloud)
        raise typer.Exit(0 if cloud.ok else 1)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        restore_summary(out, result)
    raise typer.Exit(0 if result.ok else 1)


@app.command("restore-cleanup")
def restore_cleanup(
    policy: PolicyArg,
    label: Annotated[
        str, typer.Argument(help="The restore's label (printed by `restore --launch`).")
    ],
    region: Annotated[
        list[str] | None,
        typer.Option("--region", help="Regions to clean (repeat); default: the providers' own."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete everything a restore or drill made, found by its label's tag
    (`quiesce:restore=LABEL`), in dependency order; nothing untagged is touched. Exit 1 when
    something could not be deleted (it is listed with the reason)."""
    with guarded():
        loaded = _load(policy)
        regions: list[str | None] = list(region) if region else [None]
        deleted, left = cleanup_restore(backends_for(loaded), label, regions)
    if as_json:
        _print_json({"label": label, "deleted": deleted, "left": left})
    else:
        out.print(f"deleted {len(deleted)} resource(s) labelled {label}")
        for item in deleted:
            out.print(f"  {item}")
        for item in left:
            out.print(Text(f"left: {item}", "red"), soft_wrap=True)
    raise typer.Exit(1 if left else 0)


@app.command()
def drill(
    policy: PolicyArg,
    group: Annotated[str, typer.Argument(help="The group to drill.")],
    region: Annotated[
        str | None,
        typer.Option("--region", help="Drill the group's copy in this region.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Drill a group now: restore its newest point into isolation (its `restore:` site),
    run the verify hooks, measure the recovery time, delete everything the drill made, and
    record the verdict on the point (`quiesce points` shows it). Exit 1 when it failed."""
    with guarded():
        loaded = _load(policy)
        if not has_state(loaded):
            fail(f"policy {loaded.name!r} has no recovery points yet")
        record = run_drill(loaded, group, backends_for(loaded), region=region)
    if as_json:
        _print_json(record.model_dump(mode="json"))
    else:
        rto = f"{record.rto_seconds:g} s" if record.rto_seconds is not None else "—"
        style = "green" if record.verdict == "passed" else "red"
        out.print(
            Text.assemble(("drill ", "bold"), (record.verdict, style), f"   recovery time: {rto}")
        )
        for phase, seconds in record.phases.items():
            out.print(f"  {phase}: {seconds:g} s")
        for error in record.errors:
            out.print(Text(f"error: {error}", "red"), soft_wrap=True)
        for item in record.left:
            out.print(Text(f"left behind: {item}", "red"), soft_wrap=True)
    raise typer.Exit(0 if record.verdict == "passed" else 1)


@app.command()
def recover(policy: PolicyArg, as_json: JsonOpt = False) -> None:
    """Close runs whose orchestrator died: thaw every member still owed a thaw (the machine's
    watchdog may already have), delete their snapshots, record and publish what happened, and
    retry events left in the outbox. Also deletes orphaned snapshots (of finished runs whose
    point is not listed, and copies their point does not record) and says which, and warns of
    any it could not look for or delete."""
    swept = Swept()
    with guarded():
        loaded = _load(policy)
        recovered = (
            recover_abandoned(loaded, backends_for(loaded), swept=swept)
            if has_state(loaded)
            else []
        )
    for problem in swept.problems:  # on stderr: the JSON on stdout stays a list of runs
        err.print(Text(f"warning: orphan sweep: {problem}", "yellow"), soft_wrap=True)
    results = [run_result(r) for r in recovered]
    if as_json:
        _print_json([r.model_dump(mode="json") for r in results])
        return
    if not results:
        out.print("no abandoned runs")
    for result in results:
        run_summary(out, result)
    if swept.deleted:
        out.print(f"deleted {len(swept.deleted)} orphaned snapshot(s): {', '.join(swept.deleted)}")


hooks_app = typer.Typer(
    help="The hook allowlists a policy stands for (docs/guest-protocol.md), and the hook "
    "library that ships with Quiesce (docs/databases.md).",
    no_args_is_help=True,
)
app.add_typer(hooks_app, name="hooks")


@hooks_app.command("allowlist")
def hooks_allowlist(
    policy: PolicyArg,
    member: Annotated[
        str | None,
        typer.Option("--member", "-m", help="Only this member's hooks.", show_default=False),
    ] = None,
    group: GroupOpt = None,
) -> None:
    """Print the hook allowlist (JSON) that the policy's hook declarations stand for: install
    it as /etc/quiesce/hooks.json (root-owned, writable by root only) on the member's machines.
    Hooks the policy names without `run` are declared on the machines and left out."""
    with guarded():
        loaded = _load(policy)
        if group is not None:
            loaded.group(group)
        selected = policy_hooks(loaded, group=group, member=member)
        if member is not None and not any(
            m.name == member
            for name, g in loaded.groups.items()
            if group is None or name == group
            for m in g.members
        ):
            fail(f"member {member!r} is not in the policy", EXIT_INVALID)
        document = allowlist(selected)
        for h in selected:
            if h.entry is None:
                err.print(
                    Text(f"note: {h.name} has no run in the policy: the machines declare it"),
                    soft_wrap=True,
                )
    sys.stdout.write(render(document))


@hooks_app.command("list")
def hooks_list() -> None:
    """List the hook library's workloads (fsfreeze, postgresql, ...)."""
    from quiesce.hooklib import catalog

    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("workload")
    table.add_column("phases")
    table.add_column("what it does", overflow="fold")
    for kind, entry in catalog().items():
        table.add_row(kind, ", ".join(entry["phases"]), entry["summary"])
    out.print(table)


@hooks_app.command("show")
def hooks_show(
    kind: Annotated[str, typer.Argument(help="A workload from `quiesce hooks list`.")],
    path: Annotated[
        str, typer.Option("--path", help="Where the library is installed on the machines.")
    ] = "/usr/local/lib/quiesce/quiesce_hooks.py",
) -> None:
    """Print example allowlist entries (JSON) for one workload's hooks, to adapt and install
    in /etc/quiesce/hooks.json (a policy gets them with `hooks: {use: WORKLOAD, with: ...}`)."""
    from quiesce.hooklib import catalog

    entries = catalog()
    if kind not in entries:
        fail(f"no workload {kind!r} in the hook library; known: {', '.join(entries)}", EXIT_INVALID)
    phases = entries[kind]["phases"]
    doc = {
        f"<group>.<member>.{phase}": {"phase": phase, "run": [path, *argv]}
        for phase, argv in phases.items()
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


@hooks_app.command("install")
def hooks_install(
    to: Annotated[
        Path, typer.Option("--to", help="The folder to install into (root-owned).")
    ] = Path("/usr/local/lib/quiesce"),
) -> None:
    """Install the hook library and the guest hook runner on this machine: owned by root (or
    you), mode 0755, written atomically."""
    from quiesce.guest import RUNNER_PATH
    from quiesce.hooklib import LIBRARY_PATH, install

    with guarded():
        for source in (LIBRARY_PATH, RUNNER_PATH):
            installed = install(source, to)
            out.print(f"installed {installed}")


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="An absent or empty folder (default: a new temp folder)."),
    ] = None,
    warm_up: Annotated[
        float | None,
        typer.Option("--warm-up", help="Seconds the sample application runs before the backups."),
    ] = None,
) -> None:
    """Show what Quiesce is for, on this machine: back up a live sample application (a
    database on one volume, a journal on another) crash-consistently and application-
    consistently, restore both copies, and show which one restarts clean. Exit 0 when the
    application-consistent copy restarts clean."""
    from quiesce.demo import render_report, run_demo

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    with guarded():
        report = run_demo(workdir, console=out, duration_hint=warm_up)
    out.print()
    render_report(report, out)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def schema(
    events_: Annotated[
        bool, typer.Option("--events", help="Print the schemas of the events' data instead.")
    ] = False,
) -> None:
    """Print the policy file's JSON Schema (every field with a description and an example)."""
    _print_json(event_schemas() if events_ else json_schema())


def _version(value: bool) -> None:
    if value:
        out.print(f"quiesce {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
