"""Builds the Function App package of Quiesce on Azure (a zip for remote build).

    python scripts/package_azure.py --policy POLICY [-o dist/quiesce-azure.zip]
                                    [--function-timeout 00:30:00]

The zip holds, at its root:

- `function_app.py`: one line that exposes `quiesce_azure.function_app.app`, where the Python
  v2 programming model looks for it;
- `host.json`: the Functions host settings, with `functionTimeout` (a run must fit in it:
  max_freeze_seconds + 60 s at least; infra/azure checks the policy against it);
- `requirements.txt`: the third-party packages, installed by the platform's remote build
  (`SCM_DO_BUILD_DURING_DEPLOYMENT`);
- `quiesce/` (the core, without its command line and demo) and `quiesce_azure/`;
- `policy.yaml`: the policy, validated first (the app reads it through QUIESCE_POLICY).

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

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "quiesce": ROOT / "shared" / "quiesce",
    "quiesce_azure": ROOT / "functions" / "azure" / "quiesce_azure",
}
DEFAULT_OUTPUT = ROOT / "dist" / "quiesce-azure.zip"
LEFT_OUT = ("quiesce/cli/", "quiesce/demo/")
EXCLUDED_DIRS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache"})
#: The core's command-line dependencies, which the app never imports.
CLI_ONLY = frozenset({"typer", "rich"})
FIXED_TIME = (2026, 1, 1, 0, 0, 0)
TIMEOUT = re.compile(r"^\d{2}:[0-5]\d:[0-5]\d$")

FUNCTION_APP = (
    '"""The Function App: Quiesce\'s functions live in quiesce_azure.function_app."""\n\n'
    "from quiesce_azure.function_app import app  # noqa: F401\n"
)


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [r for r in project["dependencies"] if re.split(r"[<>=!~ \[]", r)[0] not in CLI_ONLY]
    return [*core, *project["optional-dependencies"]["azure"]]


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


def sources() -> Iterator[tuple[str, Path]]:
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*")):
            relative = f"{package}/{path.relative_to(root).as_posix()}"
            if path.is_dir() or set(path.parts) & EXCLUDED_DIRS or path.suffix == ".pyc":
                continue
            if relative.startswith(LEFT_OUT):
                continue
            yield relative, path


def build(policy: Path, output: Path, function_timeout: str) -> list[str]:
    text = policy.read_text(encoding="utf-8")
    parse_policy(text, path=str(policy))  # refuse to package a policy that does not validate
    files: dict[str, bytes] = {
        "function_app.py": FUNCTION_APP.encode(),
        "host.json": host_json(function_timeout).encode(),
        "requirements.txt": ("\n".join(requirements()) + "\n").encode(),
        "policy.yaml": text.encode(),
    }
    files.update({name: path.read_bytes() for name, path in sources()})
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
        description="Build the Azure Function App package (a zip for remote build)."
    )
    parser.add_argument("--policy", type=Path, required=True, help="the policy file (YAML)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="the zip")
    parser.add_argument(
        "--function-timeout",
        default="00:30:00",
        help="host.json functionTimeout, hh:mm:ss (default 00:30:00)",
    )
    args = parser.parse_args(argv)
    if not TIMEOUT.match(args.function_timeout):
        parser.error("--function-timeout must look like hh:mm:ss")
    try:
        names = build(args.policy, args.output, args.function_timeout)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(names)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
