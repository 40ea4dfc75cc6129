"""API economy: the calls one group run makes, per cloud and group size, against a lower bound.

For each cloud and size, a group of that many machines is backed up on the clouds' local
stand-ins (AWS: moto; Azure: the project's fake ARM server and Azurite) with the very backends
the functions run with, and every request is counted where it leaves the client or reaches the
server. Each row shows the calls of one run, by operation, beside the lower bound: the calls a
run that wastes none would make, derived in each cloud's module from what the run had to do
(its machines, snapshots, events and the catalog writes the engine's crash safety needs).

Each cloud is a module of this folder exposing `measure(size) -> dict` with the keys `cloud`,
`size`, `calls` (the total), `by_operation`, `lower_bound` (the total), `lower_bound_note` (how
it is derived) and optionally `lower_bound_by_operation`: `calls_aws.py`, `calls_azure.py`,
and `calls_gcp.py` when present.

Usage: python bench/api_calls.py [--sizes 1,10,100] [--clouds aws,azure,gcp] [--json]
       [--markdown]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: The clouds, by the module that measures each.
MODULES = {"aws": "calls_aws", "azure": "calls_azure", "gcp": "calls_gcp"}


def available() -> list[str]:
    """The clouds whose module is in this folder."""
    return [cloud for cloud, module in MODULES.items() if (HERE / f"{module}.py").exists()]


def measure(cloud: str, size: int) -> dict[str, Any]:
    module = importlib.import_module(MODULES[cloud])
    row: dict[str, Any] = module.measure(size)
    row["ratio"] = round(row["calls"] / row["lower_bound"], 2) if row["lower_bound"] else None
    return row


def sizes_of(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes takes numbers separated by commas, not {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes must name sizes of at least 1, not {text!r}")
    return sizes


def text(rows: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for row in rows:
        out.append(
            f"{row['cloud']} · {row['size']} machine(s): {row['calls']} calls, lower bound "
            f"{row['lower_bound']} ({row['ratio']}x)"
        )
        bound = row.get("lower_bound_by_operation", {})
        width = max(len(op) for op in [*row["by_operation"], *bound])
        out.append(f"  {'operation':<{width}} {'calls':>7}{'bound':>7}")
        for op in sorted({*row["by_operation"], *bound}):
            calls = row["by_operation"].get(op, 0)
            mark = "" if op not in bound else f"{bound[op]:>7}"
            flag = "  <- over" if op in bound and calls > bound[op] else ""
            out.append(f"  {op:<{width}} {calls:>7}{mark}{flag}")
        for phase, answer in (row.get("answers") or {}).items():
            delay = answer["answer_delay_s"]
            shown = "no answer" if delay is None else "{} / {} / {} s".format(*delay)
            out.append(
                f"  {phase} hooks: {answer['hooks']}, answer reads {answer['reads']}, "
                f"answered after (min / median / max) {shown}"
            )
        out.append("")
    notes = {row["cloud"]: row["lower_bound_note"] for row in rows}
    for cloud, note in notes.items():
        out.append(f"{cloud} lower bound: {note}")
    return "\n".join(out)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| cloud | machines | calls | lower bound | ratio | per machine |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['cloud']} | {row['size']} | {row['calls']:,} | {row['lower_bound']:,} | "
            f"{row['ratio']}x | {row['calls'] / row['size']:.1f} |"
        )
    for row in rows:
        bound = row.get("lower_bound_by_operation", {})
        lines += [
            "",
            f"{row['cloud']}, {row['size']} machine(s):",
            "",
            "| operation | calls | lower bound |",
            "|---|---:|---:|",
        ]
        for op in sorted({*row["by_operation"], *bound}):
            lines.append(f"| {op} | {row['by_operation'].get(op, 0)} | {bound.get(op, '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes_of, default=[1, 10, 100])
    parser.add_argument(
        "--clouds",
        default=",".join(available()),
        help=f"which clouds (default: every one with a module here: {', '.join(available())})",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    clouds = [c.strip() for c in args.clouds.split(",") if c.strip()]
    unknown = [c for c in clouds if c not in available()]
    if unknown:
        parser.error(
            f"no module measures {', '.join(unknown)} (there are: {', '.join(available())})"
        )
    rows = []
    failed = False
    for cloud in clouds:
        for size in args.sizes:
            print(f"{cloud}: a group of {size}…", file=sys.stderr)
            try:
                rows.append(measure(cloud, size))
            except Exception as exc:  # say why, in one line, and go on with the others
                print(f"{cloud}: not measured: {exc}", file=sys.stderr)
                failed = True
                break
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(markdown(rows))
    else:
        print(text(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
