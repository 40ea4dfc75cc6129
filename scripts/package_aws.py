"""Builds the Lambda deployment package of Quiesce on AWS: one zip for the three functions.

    python scripts/package_aws.py --policy POLICY [-o dist/quiesce-aws.zip] [--with-tracing]
                                  [--no-prune]

The zip holds, at its root:

- `quiesce/` (the core, without its command line and demo) and `quiesce_aws/` (the adapters,
  the Lambda entry points and the SSM documents, as `ssm_document.json`: rendered from
  ssm_document.yaml, so the functions need no YAML parser), with the guest hook runner at
  `quiesce/guest/quiesce_guest.py` and the hook library at `quiesce/hooklib/quiesce_hooks.py`
  (the functions read its command line to expand a policy's `hooks: {use: ...}`; the instances
  get both files from S3 through the Quiesce-InstallRunner association, infra/aws/hooks.tf);
- `quiesce-<version>.dist-info/`, so that the `quiesce.providers` entry points and the
  package's version are found as in an installed copy;
- `policy.json`: the policy (YAML or JSON), validated, written as JSON and validated again to
  the same policy (the functions read it through QUIESCE_POLICY=policy.json without a YAML
  parser);
- the third-party packages the functions import that the Lambda Python runtime lacks
  (pydantic and aws-lambda-powertools, and what they depend on), installed by pip as binary
  wheels for the function's Python version and architecture. PyYAML is left out (only the
  command line reads YAML). The X-Ray SDK (powertools' tracer extra, with wrapt) comes only
  with --with-tracing: without it the functions create no tracer (X-Ray still records each
  invocation's segment when the function's tracing is active). boto3 and botocore (and
  s3transfer, jmespath, urllib3, python-dateutil, six) come with the runtime and are left out
  unless --include-boto3 is given. Of these packages the zip leaves out what the functions never
  import (UNUSED: powertools' event handler and the utilities other than its event data
  classes, pydantic's v1 package, deprecated API and mypy plugin), type stubs, and the long
  descriptions in their METADATA; each RECORD lists the files that are left. --no-prune
  bundles them whole.

The output is deterministic: entries are sorted and carry fixed timestamps and permissions, and
no bytecode or caches are included, so the same sources and dependency versions give the same
bytes (pin the dependency versions with --constraint for reproducible builds).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from quiesce.errors import PolicyError
from quiesce.policy import parse_policy
from quiesce.policy.loader import is_json, read_json
from quiesce.policy.yaml_reader import read_yaml
from quiesce.wiring import provider_names

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
SOURCES = {
    "quiesce": ROOT / "shared" / "quiesce",
    "quiesce_aws": ROOT / "functions" / "aws" / "quiesce_aws",
}
DEFAULT_OUTPUT = ROOT / "dist" / "quiesce-aws.zip"
PROVIDERS_GROUP = "quiesce.providers"

#: Where the functions find the policy (QUIESCE_POLICY, relative to the code's root).
POLICY_NAME = "policy.json"

#: The SSM documents in the sources, and their JSON rendering in the zip.
SSM_DOCUMENT = "quiesce_aws/ssm_document.yaml"
SSM_DOCUMENT_JSON = "quiesce_aws/ssm_document.json"

#: Parts of the core the functions never import (they need typer and rich).
LEFT_OUT_PACKAGES = ("quiesce/cli/", "quiesce/demo/")

#: Never packaged, wherever they are.
EXCLUDED_DIRS = frozenset(
    {"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")

#: Parts of the bundled packages the functions never import, left out of the zip: powertools'
#: event handler (with its Swagger UI assets, half of powertools' size), the utilities other
#: than the event data classes, typing and jmespath_utils, and the Datadog metrics provider;
#: pydantic's v1 package, deprecated v1-style API, mypy plugin and experimental API. Derived
#: from what fresh interpreters running every handler with every kind of payload, traced and
#: not, import; the zip's code is run without them, and checked that it asks for none of them,
#: by tests/aws/test_cold_start.py.
#: A folder ends in "/". --no-prune keeps them.
UNUSED = (
    "aws_lambda_powertools/event_handler/",
    "aws_lambda_powertools/metrics/provider/datadog/",
    "aws_lambda_powertools/utilities/auth_alpha/",
    "aws_lambda_powertools/utilities/batch/",
    "aws_lambda_powertools/utilities/circuit_breaker/",
    "aws_lambda_powertools/utilities/data_masking/",
    "aws_lambda_powertools/utilities/feature_flags/",
    "aws_lambda_powertools/utilities/idempotency/",
    "aws_lambda_powertools/utilities/kafka/",
    "aws_lambda_powertools/utilities/metadata/",
    "aws_lambda_powertools/utilities/parameters/",
    "aws_lambda_powertools/utilities/parser/",
    "aws_lambda_powertools/utilities/serialization.py",
    "aws_lambda_powertools/utilities/streaming/",
    "aws_lambda_powertools/utilities/validation/",
    "pydantic/color.py",
    "pydantic/deprecated/",
    "pydantic/experimental/",
    "pydantic/mypy.py",
    "pydantic/v1/",
)

#: Files of the bundled packages that only type checkers read.
STUB_SUFFIXES = (".pyi",)

#: Requirements of the core that only the command line needs (the functions read JSON).
CLI_ONLY = frozenset({"typer", "rich", "pyyaml"})

#: The extra of aws-lambda-powertools that brings the X-Ray SDK (and wrapt).
POWERTOOLS = "aws-lambda-powertools"
TRACER_EXTRA = "tracer"

#: Distributions every Lambda Python runtime already has.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
)

#: Lambda runtimes' glibc: python3.11 runs on Amazon Linux 2, python3.12 on Amazon Linux 2023.
PLATFORMS = {
    "3.11": ("manylinux2014",),
    "3.12": ("manylinux2014", "manylinux_2_28", "manylinux_2_34"),
}
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}

#: Zip entries' fixed timestamp (the earliest a zip can hold) and permissions.
EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644


class PackageError(Exception):
    """The package cannot be built; the message says why."""


def _name(requirement: str) -> str:
    """A requirement's normalized distribution name."""
    name = requirement
    for stop in "[<>=!~; ":
        name = name.split(stop, 1)[0]
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _powertools(requirement: str, with_tracing: bool) -> str:
    """The powertools requirement with its tracer extra only when tracing is packaged."""
    head, _, rest = requirement.partition("[")
    if rest:
        extras, _, tail = rest.partition("]")
        kept = [e.strip() for e in extras.split(",") if e.strip() and e.strip() != TRACER_EXTRA]
    else:
        head, tail, kept = POWERTOOLS, requirement[len(POWERTOOLS) :], []
    if with_tracing:
        kept.append(TRACER_EXTRA)
    return head + (f"[{','.join(sorted(kept))}]" if kept else "") + tail


def requirements(pyproject: Path = PYPROJECT, *, with_tracing: bool = False) -> list[str]:
    """What the functions need from PyPI: the core's and the aws extra's requirements, without
    the command line's (typer, rich, PyYAML) and what the Lambda runtime provides; powertools
    with its tracer (the X-Ray SDK) only `with_tracing`."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["aws"]]
    out = []
    for requirement in wanted:
        name = _name(requirement)
        if name in CLI_ONLY or name in RUNTIME_PROVIDED:
            continue
        if name == POWERTOOLS:
            requirement = _powertools(requirement, with_tracing)
        out.append(requirement)
    return sorted(out, key=_name)


def version(pyproject: Path = PYPROJECT) -> str:
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


def entry_points_text(pyproject: Path = PYPROJECT) -> str:
    """The entry points of the packaged code: of the providers, only the one in the zip."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = []
    for group, entries in sorted(project.get("entry-points", {}).items()):
        packaged = {
            name: target
            for name, target in entries.items()
            if target.split(".", 1)[0] in SOURCES or group != PROVIDERS_GROUP
        }
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {target}" for name, target in sorted(packaged.items()))
        lines.append("")
    return "\n".join(lines)


def excluded(relative: str) -> bool:
    parts = relative.split("/")
    return bool(EXCLUDED_DIRS.intersection(parts[:-1])) or relative.endswith(EXCLUDED_SUFFIXES)


def tree(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(name in the zip, file) for every file under root, caches and tests left out."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = f"{prefix}{path.relative_to(root).as_posix()}"
        if not excluded(name):
            yield name, path


def own_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for package, source in SOURCES.items():
        if not source.is_dir():
            raise PackageError(f"{source}: the {package} package is missing")
        for name, path in tree(source, f"{package}/"):
            if not name.startswith(LEFT_OUT_PACKAGES):
                files[name] = path.read_bytes()
    if SSM_DOCUMENT in files:
        files[SSM_DOCUMENT_JSON] = ssm_documents_json(files.pop(SSM_DOCUMENT))
    dist_info = f"quiesce-{version()}.dist-info"
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: quiesce\nVersion: {version()}\n".encode()
    )
    files[f"{dist_info}/entry_points.txt"] = entry_points_text().encode()
    files[f"{dist_info}/top_level.txt"] = b"quiesce\nquiesce_aws\n"
    files[f"{dist_info}/RECORD"] = "".join(
        f"{name},,\n" for name in sorted([*files, f"{dist_info}/RECORD"])
    ).encode()
    return files


def ssm_documents_json(text: bytes) -> bytes:
    """The SSM documents as JSON, their placeholders left for quiesce_aws.hooks to fill in."""
    documents = yaml.safe_load(text.decode("utf-8"))
    return (json.dumps(documents, indent=2, ensure_ascii=False) + "\n").encode()


def pip_install(
    target: Path,
    python: str,
    architecture: str,
    constraint: Path | None,
    *,
    with_tracing: bool = False,
) -> None:
    """Installs the functions' requirements into target as the Lambda runtime's wheels."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
    ]
    for platform in PLATFORMS[python]:
        command += ["--platform", f"{platform}_{MACHINES[architecture]}"]
    if constraint is not None:
        command += ["--constraint", str(constraint)]
    command += requirements(with_tracing=with_tracing)
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as exc:
        raise PackageError(
            f"pip could not install the dependencies (exit {exc.returncode}); use --deps-from "
            "with a folder installed beforehand to build without an index"
        ) from None


def _distribution_files(root: Path, dist_info: Path) -> set[str]:
    record = dist_info / "RECORD"
    names = {f"{dist_info.name}/{p.name}" for p in dist_info.iterdir() if p.is_file()}
    if record.is_file():
        for line in record.read_text(encoding="utf-8").splitlines():
            name = line.rsplit(",", 2)[0]
            if name and not name.startswith("../"):
                names.add(name)
    return names


def dependency_files(root: Path, include_boto3: bool) -> dict[str, bytes]:
    """The files of a pip --target folder, without scripts, caches and (unless asked) the
    distributions the Lambda runtime provides."""
    dropped: set[str] = set()
    if not include_boto3:
        for dist_info in sorted(root.glob("*.dist-info")):
            name = _name(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
            if name in RUNTIME_PROVIDED:
                dropped |= _distribution_files(root, dist_info)
    files = {}
    for name, path in tree(root, ""):
        if name.startswith("bin/") or name in dropped:
            continue
        files[name] = path.read_bytes()
    return files


def unused(name: str) -> bool:
    """Whether a file of the bundled packages is one the functions never read (UNUSED, stubs)."""
    return name.endswith(STUB_SUFFIXES) or any(
        name.startswith(part) if part.endswith("/") else name == part for part in UNUSED
    )


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _headers_only(metadata: bytes) -> bytes:
    """A METADATA file without its body (the project's long description, read by nothing at
    run time): the header fields, name and version among them, as they are."""
    head, blank, _ = metadata.partition(b"\n\n")
    return head + b"\n" if blank else metadata


def prune(files: dict[str, bytes]) -> dict[str, bytes]:
    """The dependencies' files without what the functions never read: the UNUSED parts, type
    stubs and the long descriptions in METADATA; each RECORD then lists what is left, with
    the hashes and sizes of the files as they are in the zip."""
    kept = {name: data for name, data in files.items() if not unused(name)}
    for name in [n for n in kept if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]:
        kept[name] = _headers_only(kept[name])
    for name in [n for n in kept if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]:
        lines = []
        for line in kept[name].decode("utf-8").splitlines():
            listed = line.rsplit(",", 2)[0]
            if listed == name:
                lines.append(f"{name},,")
            elif listed in kept:
                data = kept[listed]
                lines.append(f"{listed},{_record_hash(data)},{len(data)}")
        kept[name] = "".join(f"{line}\n" for line in lines).encode()
    return kept


def write_zip(files: dict[str, bytes], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that the permissions below are honoured
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, files[name], compresslevel=9)
    os.replace(partial, output)


def check_policy(policy: Path) -> bytes:
    """The policy (YAML, or JSON when its name ends in .json), validated, as the JSON the
    functions read: the same data, which must validate to the same policy."""
    try:
        raw = policy.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"{policy}: cannot be read: {exc}") from None
    try:
        parsed = parse_policy(text, path=str(policy))
        name = str(policy)
        data = read_json(text, name) if is_json(name) else read_yaml(text, name)[0]
    except PolicyError as exc:
        raise PackageError("\n".join(exc.problems)) from None
    others = sorted(provider_names(parsed) - {"aws"})
    if others:
        raise PackageError(
            f"{policy}: members with provider {', '.join(others)} cannot be backed up by the "
            "AWS functions"
        )
    try:
        bundled = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise PackageError(
            f"{policy}: cannot be written as JSON ({exc}); quote dates and times as strings"
        ) from None
    try:
        same = parse_policy(bundled, path=POLICY_NAME) == parsed
    except PolicyError as exc:
        same = False
        detail = "; ".join(exc.problems)
    else:
        detail = "it validates to another policy"
    if not same:
        raise PackageError(f"{policy}: its JSON form is not the same policy ({detail})")
    return bundled.encode()


def build(
    policy: Path,
    output: Path,
    *,
    python: str = "3.12",
    architecture: str = "x86_64",
    with_dependencies: bool = True,
    deps_from: Path | None = None,
    include_boto3: bool = False,
    constraint: Path | None = None,
    with_tracing: bool = False,
    prune_unused: bool = True,
) -> dict[str, bytes]:
    """Builds the zip and returns its entries."""
    files = own_files()
    files[POLICY_NAME] = check_policy(policy)
    dependencies: dict[str, bytes] = {}
    if deps_from is not None:
        if not deps_from.is_dir():
            raise PackageError(f"{deps_from}: not a folder")
        dependencies = dependency_files(deps_from, include_boto3)
    elif with_dependencies:
        staging = Path(tempfile.mkdtemp(prefix="quiesce-aws-deps-"))
        try:
            pip_install(staging, python, architecture, constraint, with_tracing=with_tracing)
            dependencies = dependency_files(staging, include_boto3)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if prune_unused:
        dependencies = prune(dependencies)
    ours = ("quiesce/", "quiesce_aws/", "quiesce-", POLICY_NAME)
    clashes = sorted(name for name in dependencies if name.startswith(ours))
    if clashes:
        raise PackageError(
            f"the dependencies bring files of their own into Quiesce's: {', '.join(clashes[:3])}"
        )
    files.update(dependencies)
    write_zip(files, output)
    return files


def source_code_hash(path: Path) -> str:
    """What Terraform's filebase64sha256() gives for the file."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="package_aws.py",
        description=(
            "Builds the Lambda zip of Quiesce on AWS: the quiesce and quiesce_aws packages, "
            "the policy (validated) as policy.json, and the third-party packages the Lambda "
            "Python runtime lacks. The output is deterministic."
        ),
    )
    parser.add_argument(
        "--policy", type=Path, required=True, help="the policy file (YAML, or JSON: *.json)"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="the zip (default: %(default)s)"
    )
    parser.add_argument(
        "--python",
        choices=sorted(PLATFORMS),
        default="3.12",
        help="the Lambda runtime's Python version (default: %(default)s)",
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(MACHINES),
        default="x86_64",
        help="the functions' architecture, as in infra/aws's var.architecture "
        "(default: %(default)s)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--deps-from",
        type=Path,
        metavar="DIR",
        help="take the dependencies from a folder filled beforehand by `pip install --target` "
        "(no index needed)",
    )
    source.add_argument(
        "--no-deps",
        action="store_true",
        help="leave the third-party packages out (for tests, or with a Lambda layer that "
        "provides them); such a zip does not run on its own",
    )
    parser.add_argument(
        "--include-boto3",
        action="store_true",
        help="also package boto3/botocore instead of using the runtime's",
    )
    parser.add_argument(
        "--with-tracing",
        action="store_true",
        help="also package the X-Ray SDK (aws-lambda-powertools[tracer]), so the functions "
        "trace their handlers when tracing is on; without it they create no tracer",
    )
    parser.add_argument(
        "--no-prune",
        action="store_true",
        help="bundle the third-party packages whole, with the parts the functions never import "
        "(powertools' event handler and other utilities, pydantic.v1, type stubs, long "
        "descriptions)",
    )
    parser.add_argument(
        "--constraint",
        type=Path,
        metavar="FILE",
        help="a pip constraints file pinning the dependencies' versions",
    )
    args = parser.parse_args(argv)
    try:
        files = build(
            args.policy,
            args.output,
            python=args.python,
            architecture=args.architecture,
            with_dependencies=not args.no_deps,
            deps_from=args.deps_from,
            include_boto3=args.include_boto3,
            constraint=args.constraint,
            with_tracing=args.with_tracing,
            prune_unused=not args.no_prune,
        )
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = args.output.stat().st_size
    print(
        f"{args.output}: {len(files)} files, {size / 1e6:.1f} MB, "
        f"sha256 (base64) {source_code_hash(args.output)}",
        file=sys.stderr,
    )
    if args.no_deps:
        print("warning: built without third-party packages (--no-deps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
