"""Cold start of the functions' entry points, and the size of the AWS Lambda package.

For each entry point (AWS `quiesce_aws.handler`, Azure `quiesce_azure.function_app`, GCP
`quiesce_gcp.main`) the benchmark lays out the function's code as its platform runs it and
starts N fresh interpreters, each of which imports the entry module once:

- the code is what the packaging scripts put in the package: `scripts/package_aws.py` for AWS,
  `scripts/package_functions.py` for Azure and GCP, extracted into a temporary folder (the
  "task root": Lambda's /var/task, the Function App's wwwroot, the Cloud Function's source
  folder) with the bundled policy of a small sample;
- AWS only: the zip bundles the third-party packages the Lambda runtime lacks (what
  `package_aws.requirements()` names, with their dependencies), pruned as the script prunes
  them; the benchmark hands the script this virtualenv's copies (`--deps-from`), so they end up
  in the task root as on Lambda's /var/task; boto3 and botocore stay in the virtualenv, like
  the runtime's own copies in /var/runtime;
- Azure and GCP: the third-party packages stay in the virtualenv (the platforms' builds install
  them with pip, which compiles their bytecode).

The interpreters run with `-S` and see the task root first, then the virtualenv's
site-packages without this checkout's own (editable) installation, so `quiesce`, its providers
and its entry points come only from the task root, as on the platforms.

Each entry point is measured twice:

- **with .pyc**: the task root compiled beforehand (`compileall`), the steady state of a
  platform whose code folder holds bytecode;
- **without .pyc**: the task root has no `__pycache__` and the interpreters run with `-B`
  (PYTHONDONTWRITEBYTECODE, so `sys.dont_write_bytecode` is true) and cannot write any: every
  module of the task root is compiled from source on every start, as on Lambda, whose /var/task
  is read-only and whose zip carries no bytecode. What is outside the task root (the
  virtualenv's site-packages, standing for the runtime's precompiled packages) keeps its .pyc.

The figures: `import` is the time the import of the entry module takes inside a fresh
interpreter (the interpreter's own start-up is not counted); `ready` adds reading the bundled
policy (the first invocation's `policy()`; Azure reads it during the import already). Each row
gives the minimum and the median of the N interpreters: on a shared machine the minimum is the
figure to compare, the median says how noisy the machine was.

With `--package`, scripts/package_aws.py also builds the real Lambda zip (Python 3.12,
x86_64) into a temporary folder, which needs pip to download wheels, and its size is reported
with the largest top-level entries.

Usage: python bench/cold_start.py [--runs 10] [--entries aws,azure,gcp] [--package]
       [--tracing] [--json]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import package_aws  # noqa: E402
import package_functions  # noqa: E402

#: The targets of the entry points' imports (minimum of the runs), in ms, and of the zip.
TARGET_MS = {
    ("aws", "pyc"): 250.0,
    ("aws", "no_pyc"): 300.0,
    ("azure", "pyc"): 250.0,
    ("gcp", "pyc"): 250.0,
}
TARGET_ZIP_BYTES = 3_000_000

#: What this checkout's editable installation puts into site-packages.
OWN_INSTALL = re.compile(r"^(__editable__.*quiesce.*|quiesce-.*\.dist-info|quiesce\.egg-link)$")

HOOKS = {
    "pre": {"run": ["/etc/quiesce/hooks/pause.sh"], "timeout_seconds": 10},
    "post": {"run": ["/etc/quiesce/hooks/resume.sh"], "timeout_seconds": 10},
}
MEMBERS = {
    "aws": {
        "name": "db",
        "provider": "aws",
        "region": "eu-central-1",
        "select": {"tags": {"app": "orders"}},
        "hooks": HOOKS,
    },
    "azure": {
        "name": "db",
        "provider": "azure",
        "subscription": "00000000-0000-0000-0000-000000000000",
        "resource_group": "rg-orders",
        "select": {"vm_names": ["db-1"]},
        "hooks": HOOKS,
    },
    "gcp": {
        "name": "db",
        "provider": "gcp",
        "project": "orders-prod",
        "zone": "europe-west1-b",
        "select": {"instances": ["db-1"]},
        "hooks": HOOKS,
    },
}


@dataclass(frozen=True)
class Entry:
    cloud: str
    module: str
    #: What the first invocation does before it handles an event (after the import).
    ready: str


ENTRIES = {
    "aws": Entry("aws", "quiesce_aws.handler", "module.policy()"),
    "azure": Entry("azure", "quiesce_azure.function_app", "module.policy()"),
    "gcp": Entry("gcp", "quiesce_gcp.main", "module.policy()"),
}

#: Modules whose presence after the import the report shows (heavy, or not needed).
WATCHED = (
    "boto3",
    "botocore",
    "yaml",
    "aws_xray_sdk",
    "wrapt",
    "azure.mgmt.compute",
    "google.cloud.compute_v1",
    "google.cloud.firestore",
    "quiesce_aws",
    "quiesce_azure",
    "quiesce_gcp",
)

PROBE = """\
import json, site, sys, time
sys.path.insert(0, {root!r})
site.addsitedir({site!r})
started = time.perf_counter()
import {module} as module
imported = time.perf_counter()
{ready}
ready = time.perf_counter()
print(json.dumps({{
    "import_ms": (imported - started) * 1000,
    "ready_ms": (ready - started) * 1000,
    "file": module.__file__,
    "dont_write_bytecode": sys.dont_write_bytecode,
    "modules": len(sys.modules),
    "loaded": sorted(m for m in {watched!r} if m in sys.modules),
}}))
"""


def policy_text(cloud: str) -> str:
    """A small policy of one application-consistent group and a nightly schedule."""
    policy = {
        "version": 1,
        "name": "shop",
        "groups": {"orders": {"max_freeze_seconds": 30, "members": [MEMBERS[cloud]]}},
        "triggers": [{"name": "nightly", "group": "orders", "schedule": "0 3 * * *"}],
    }
    return json.dumps(policy, indent=2) + "\n"


def installed_closure(
    requirements: Sequence[str], provided: frozenset[str]
) -> list[metadata.Distribution]:
    """The installed distributions `requirements` need, with their dependencies (markers
    evaluated for this interpreter, extras followed), minus `provided`."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = package_aws._name(requirement.name)
        if name in provided:
            continue
        first = name not in seen
        distribution = seen.setdefault(name, metadata.distribution(requirement.name))
        wanted = [""] if first else []
        wanted += sorted(requirement.extras)
        for wanted_extra in wanted:
            for dependency in distribution.requires or []:
                todo.append((Requirement(dependency), wanted_extra))
    return [seen[name] for name in sorted(seen)]


def copy_distribution(distribution: metadata.Distribution, target: Path) -> None:
    for file in distribution.files or []:
        relative = file.as_posix()
        if relative.startswith("..") or "__pycache__" in file.parts or relative.endswith(".pyc"):
            continue
        source = Path(str(file.locate()))
        if source.is_file():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


def installed_dependencies(target: Path, *, with_tracing: bool = False) -> Path:
    """A folder like the one `pip install --target` fills for the Lambda zip, with this
    virtualenv's copies of the distributions package_aws.requirements() names (and their
    dependencies, without what the Lambda runtime provides), for package_aws --deps-from."""
    wanted = package_aws.requirements(with_tracing=with_tracing)
    for distribution in installed_closure(wanted, package_aws.RUNTIME_PROVIDED):
        copy_distribution(distribution, target)
    return target


def _extract(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(target)


def task_root(cloud: str, work: Path, tracing: bool) -> tuple[Path, dict[str, str]]:
    """The function's code folder, and the environment the function runs with."""
    root = work / cloud
    root.mkdir(parents=True)
    policy = work / f"{cloud}-policy.json"
    policy.write_text(policy_text(cloud))
    zipped = work / f"{cloud}.zip"
    env = {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_EC2_METADATA_DISABLED": "true"}
    if cloud == "aws":
        deps = installed_dependencies(work / "aws-dependencies")
        package_aws.build(policy, zipped, deps_from=deps)
        _extract(zipped, root)
        env |= {
            "LAMBDA_TASK_ROOT": str(root),
            "QUIESCE_POLICY": getattr(package_aws, "POLICY_NAME", "policy.yaml"),
            "QUIESCE_TABLE": "quiesce",
            "QUIESCE_REGION": "eu-central-1",
            "POWERTOOLS_SERVICE_NAME": "quiesce",
            "POWERTOOLS_METRICS_NAMESPACE": "Quiesce",
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
            "AWS_LAMBDA_FUNCTION_NAME": "quiesce-shop-schedule",
        }
    else:
        package_functions.build(cloud, policy, zipped, "00:30:00")
        _extract(zipped, root)
        env |= {"QUIESCE_POLICY": "policy.yaml"}
        if cloud == "azure":
            env |= {"AzureWebJobsScriptRoot": str(root)}
        else:
            env |= {"QUIESCE_CODE_ROOT": str(root), "GOOGLE_CLOUD_PROJECT": "orders-prod"}
    return root, env


def _bytecode(root: Path) -> Iterator[Path]:
    yield from root.rglob("__pycache__")


def runtime_site(work: Path) -> Path:
    """The virtualenv's site-packages without this checkout's own (editable) installation:
    a folder of links to everything else in it. The interpreters run with `-S` and add it
    (with its .pth files), so `quiesce` and its entry points come only from the task root, as
    on the platforms."""
    source = Path(sysconfig.get_paths()["purelib"])
    overlay = work / "site-packages"
    overlay.mkdir()
    for entry in sorted(source.iterdir()):
        if OWN_INSTALL.match(entry.name):
            continue
        (overlay / entry.name).symlink_to(entry)
    return overlay


def run_once(
    entry: Entry, root: Path, site: Path, env: dict[str, str], pyc: bool
) -> dict[str, Any]:
    probe = PROBE.format(
        module=entry.module, ready=entry.ready, watched=WATCHED, root=str(root), site=str(site)
    )
    command = [sys.executable, "-S", *([] if pyc else ["-B"]), "-c", probe]
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root.parent),
        **env,
    }
    if not pyc:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        command, cwd=root, env=environment, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{entry.module} did not import:\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if not str(report["file"]).startswith(str(root)):
        raise SystemExit(f"{entry.module} was imported from {report['file']}, not {root}")
    if report["dont_write_bytecode"] == pyc:
        raise SystemExit(f"{entry.module}: sys.dont_write_bytecode is not {not pyc}")
    return report


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def measure(entry: Entry, runs: int, work: Path, site: Path, tracing: bool) -> dict[str, Any]:
    root, env = task_root(entry.cloud, work, tracing)
    out: dict[str, Any] = {"module": entry.module}
    # Without bytecode first, while the task root has none; then compiled.
    for mode in ("no_pyc", "pyc"):
        pyc = mode == "pyc"
        if pyc:
            compileall.compile_dir(root, quiet=1, workers=1)
        reports = [run_once(entry, root, site, env, pyc) for _ in range(runs)]
        if not pyc:
            written = next(_bytecode(root), None)
            if written is not None:
                raise SystemExit(f"bytecode was written during the runs without .pyc: {written}")
        out[mode] = {
            "import_ms": summary([r["import_ms"] for r in reports]),
            "ready_ms": summary([r["ready_ms"] for r in reports]),
            "modules": reports[-1]["modules"],
            "loaded": reports[-1]["loaded"],
        }
    return out


def package_size(work: Path) -> dict[str, Any]:
    """Builds the real Lambda zip (Python 3.12, x86_64) and sizes it."""
    policy = work / "package-policy.json"
    policy.write_text(policy_text("aws"))
    output = work / "package" / "quiesce-aws.zip"
    package_aws.build(policy, output, python="3.12", architecture="x86_64")
    by_top: dict[str, int] = {}
    with zipfile.ZipFile(output) as archive:
        for info in archive.infolist():
            top = info.filename.split("/", 1)[0]
            top = re.sub(r"-[^-]+\.dist-info$", ".dist-info", top)
            by_top[top] = by_top.get(top, 0) + info.compress_size
    largest = sorted(by_top.items(), key=lambda item: -item[1])[:12]
    return {
        "bytes": output.stat().st_size,
        "target_bytes": TARGET_ZIP_BYTES,
        "largest": [{"entry": name, "compressed_bytes": size} for name, size in largest],
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Cold start: {report['runs']} fresh interpreters per row, Python {report['python']}, "
        f"{report['machine']} ({report['cpus']} CPUs), tracing "
        f"{'on' if report['tracing'] else 'off'}",
        "",
        f"{'entry point':<28} {'bytecode':<10} {'import min':>10} {'median':>8} "
        f"{'ready min':>10} {'median':>8} {'target':>8}  loaded",
    ]
    for cloud, row in report["entries"].items():
        for mode in ("pyc", "no_pyc"):
            figures = row[mode]
            target = TARGET_MS.get((cloud, mode))
            met = "" if target is None else ("ok" if figures["import_ms"]["min"] <= target else "!")
            lines.append(
                f"{row['module']:<28} {'with' if mode == 'pyc' else 'without':<10} "
                f"{figures['import_ms']['min']:>8.1f}ms {figures['import_ms']['median']:>6.1f}ms "
                f"{figures['ready_ms']['min']:>8.1f}ms {figures['ready_ms']['median']:>6.1f}ms "
                f"{'' if target is None else f'{target:.0f}ms':>6} {met:>2}  "
                f"{', '.join(figures['loaded'])}"
            )
    package = report.get("package")
    if package is not None:
        met = "ok" if package["bytes"] <= package["target_bytes"] else "!"
        lines += [
            "",
            f"AWS Lambda zip (py3.12, x86_64): {package['bytes']:,} bytes "
            f"(target {package['target_bytes']:,}) {met}",
        ]
        lines += [f"  {e['entry']:<40} {e['compressed_bytes']:>10,}" for e in package["largest"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh interpreters per row")
    parser.add_argument(
        "--entries", default="aws,azure,gcp", help="comma-separated: aws, azure, gcp"
    )
    parser.add_argument(
        "--package", action="store_true", help="build the AWS zip and report its size (pip)"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="AWS: run with tracing on (POWERTOOLS_TRACE_DISABLED=false) instead of off",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [n.strip() for n in args.entries.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ENTRIES))
    if unknown:
        parser.error(f"unknown entry points: {', '.join(unknown)} (known: aws, azure, gcp)")
    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "tracing": args.tracing,
        "site_packages": sysconfig.get_paths()["purelib"],
        "entries": {},
    }
    with tempfile.TemporaryDirectory(prefix="quiesce-cold-start-") as temp:
        work = Path(temp)
        site = runtime_site(work)
        for name in names:
            report["entries"][name] = measure(ENTRIES[name], args.runs, work, site, args.tracing)
        if args.package:
            report["package"] = package_size(work)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
