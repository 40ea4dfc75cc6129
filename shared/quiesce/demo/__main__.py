"""`python -m quiesce.demo [--workdir DIR] [--warm-up SECONDS]` (what `make demo` runs)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.text import Text

from quiesce.demo.report import render_report
from quiesce.demo.scenario import run_demo
from quiesce.errors import QuiesceError


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the engine's thaw and the application's stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quiesce.demo",
        description=(
            "Back up a live sample application crash-consistently and application-"
            "consistently, restore both copies and show which one restarts clean. "
            "Exit 0 when the application-consistent copy restarts clean."
        ),
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="an absent or empty folder (default: a new temp folder)",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=None,
        help="seconds the application runs before the first backup (default 1.5)",
    )
    args = parser.parse_args(argv)
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_demo(args.workdir, console=console, duration_hint=args.warm_up)
    except KeyboardInterrupt:
        console.print(Text("interrupted: the application was resumed and stopped", "yellow"))
        return 130
    except QuiesceError as exc:
        console.print(Text(f"error: {exc}", "red"), soft_wrap=True)
        return 1
    console.print()
    render_report(report, console)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
