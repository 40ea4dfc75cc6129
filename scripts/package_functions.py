"""Builds the source package of Quiesce's functions on Azure or GCP (a zip the platform builds).

    python scripts/package_functions.py azure --policy POLICY [-o dist/quiesce-azure.zip]
                                              [--function-timeout 00:30:00]
    python scripts/package_functions.py gcp --policy POLICY [-o dist/quiesce-gcp.zip]

The zip holds, at its root:

- the entry module the platform looks for: `function_app.py` exposing
  `quiesce_azure.function_app.app` (Azure Functions, Python v2 model), or `main.py` exposing
  `on_schedule`, `on_deploy`, `on_alert` and `on_alert_webhook` from `quiesce_gcp.main`
  (Cloud Functions);
- Azure only: `host.json`, with `functionTimeout` (a run must fit in it: max_freeze_seconds +
  60 s at least; infra/azure checks the policy against it);
- `requirements.txt`: the third-party packages (the core's, without the command line's typer
  and rich, and the cloud's extra), installed by the platform's build;
- `quiesce/` (the core, without its command line and demo) and the cloud's package;
- `policy.yaml`: the policy, validated first (the functions read it through QUIESCE_POLICY).

Entries are sorted and carry fixed timestamps, and no bytecode or caches are included, so the
same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from quiesce.errors import PolicyError
from quiesce.policy import parse_policy
from quiesce.wiring import provider_names

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "shared" / "quiesce"
LEFT_OUT = ("quiesce/cli/", "quiesce/demo/")
EXCLUDED_DIRS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache"})
#: The core's command-line dependencies, which the app never imports.
CLI_ONLY = frozenset({"typer", "rich"})
FIXED_TIME = (2026, 1, 1, 0, 0, 0)
TIMEOUT = re.compile(r"^\d{2}:[0-5]\d:[0-5]\d$")

#: Per cloud: its package, and the entry module the platform imports.
ENTRY = {
    "azure": (
        "function_app.py",
        '"""The Function App: Quiesce\'s functions live in quiesce_azure.function_app."""\n\n'
        "from quiesce_azure.function_app import app  # noqa: F401\n",
    ),
    "gcp": (
        "main.py",
        '"""Cloud Functions entry points: they live in quiesce_gcp.main."""\n\n'
        "from quiesce_gcp.main import (  # noqa: F401\n"
        "    on_alert,\n"
        "    on_alert_webhook,\n"
        "    on_deploy,\n"
        "    on_schedule,\n"
        ")\n",
    ),
}


def requirements(cloud: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [r for r in project["dependencies"] if re.split(r"[<>=!~ \[]", r)[0] not in CLI_ONLY]
    return [*core, *project["optional-dependencies"][cloud]]


def host_json(function_timeout: str) -> str:
    host = {
        "version": "2.0",
        "functionTimeout": function_timeout,
        "logging": {"logLevel": {"default": "Information"}},
        "extensionBundle": {
            "id": "Microsoft.Azure.Functions.ExtensionBundle",
            "version": "[4.*, 5.0.0)",
        },
    }
    return json.dumps(host, indent=2) + "\n"


def sources(cloud: str) -> Iterator[tuple[str, Path]]:
    packages = {
        "quiesce": CORE,
        f"quiesce_{cloud}": ROOT / "functions" / cloud / f"quiesce_{cloud}",
    }
    for package, root in packages.items():
        for path in sorted(root.rglob("*")):
            relative = f"{package}/{path.relative_to(root).as_posix()}"
            if path.is_dir() or set(path.parts) & EXCLUDED_DIRS or path.suffix == ".pyc":
                continue
            if relative.startswith(LEFT_OUT):
                continue
            yield relative, path


def build(cloud: str, policy: Path, output: Path, function_timeout: str) -> list[str]:
    text = policy.read_text(encoding="utf-8")
    parsed = parse_policy(text, path=str(policy))  # refuse a policy that does not validate
    # The cloud's own providers: its VMs (`gcp`) and its managed services (`gcp-sql`, ...).
    others = sorted(
        p for p in provider_names(parsed) if p != cloud and not p.startswith(f"{cloud}-")
    )
    if others:
        raise PolicyError(
            str(policy),
            [
                f"{policy}: members with provider {', '.join(others)} cannot be backed up by "
                f"the {cloud} functions (they bring only the {cloud} provider): give those "
                "members their own policy"
            ],
        )
    entry, entry_text = ENTRY[cloud]
    files: dict[str, bytes] = {
        entry: entry_text.encode(),
        "requirements.txt": ("\n".join(requirements(cloud)) + "\n").encode(),
        "policy.yaml": text.encode(),
    }
    if cloud == "azure":
        files["host.json"] = host_json(function_timeout).encode()
    files.update({name: path.read_bytes() for name, path in sources(cloud)})
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return sorted(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the source package of Quiesce's functions on Azure or GCP."
    )
    parser.add_argument("cloud", choices=sorted(ENTRY), help="azure or gcp")
    parser.add_argument("--policy", type=Path, required=True, help="the policy file (YAML)")
    parser.add_argument(
        "-o", "--output", type=Path, help="the zip (default: dist/quiesce-<cloud>.zip)"
    )
    parser.add_argument(
        "--function-timeout",
        default="00:30:00",
        help="azure: host.json functionTimeout, hh:mm:ss (default 00:30:00)",
    )
    args = parser.parse_args(argv)
    if not TIMEOUT.match(args.function_timeout):
        parser.error("--function-timeout must look like hh:mm:ss")
    output = args.output or ROOT / "dist" / f"quiesce-{args.cloud}.zip"
    try:
        names = build(args.cloud, args.policy, output, args.function_timeout)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return 2
    print(f"{output}: {len(names)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
