"""scripts/package_aws.py builds one deterministic Lambda zip: the quiesce and quiesce_aws
packages (with the guest hook runner and the SSM documents as JSON), their entry points, the
validated policy as policy.json, and the third-party packages the Lambda runtime lacks; never
tests, caches, bytecode, the command line, PyYAML, the X-Ray SDK (unless --with-tracing), what
the runtime already has, or the parts of the dependencies the functions never import. The
zip's functions run without a YAML parser or the X-Ray SDK."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package_aws.py"
sys.path.insert(0, str(ROOT / "scripts"))
import package_aws  # noqa: E402

POLICY = """\
version: 1
name: shop
groups:
  orders:
    max_freeze_seconds: 30
    members:
      - name: db
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders}}
        hooks:
          pre: {run: [/etc/quiesce/hooks/pause.sh], timeout_seconds: 10}
          post: {run: [/etc/quiesce/hooks/resume.sh], timeout_seconds: 10}
triggers:
  - {name: nightly, group: orders, schedule: "0 3 * * *"}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "my-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def built(policy: Path, tmp_path: Path) -> Path:
    out = tmp_path / "dist" / "quiesce-aws.zip"
    assert package_aws.main(["--policy", str(policy), "-o", str(out), "--no-deps"]) == 0
    return out


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def fake_pip_target(root: Path) -> Path:
    """What `pip install --target` leaves: packages, dist-info with RECORD, bin/, caches."""
    files = {
        "pydantic/__init__.py": "VERSION = '2'\n",
        "pydantic/__pycache__/__init__.cpython-312.pyc": "",
        "pydantic-2.9.0.dist-info/METADATA": "Name: pydantic\n",
        "pydantic-2.9.0.dist-info/RECORD": "pydantic/__init__.py,,\n",
        "botocore/__init__.py": "",
        "botocore/data/ec2.json": "{}",
        "botocore-1.35.0.dist-info/METADATA": "Name: botocore\n",
        "botocore-1.35.0.dist-info/RECORD": (
            "botocore/__init__.py,,\nbotocore/data/ec2.json,,\n"
            "botocore-1.35.0.dist-info/RECORD,,\n../../bin/x,,\n"
        ),
        "bin/jp.py": "#!/usr/bin/env python\n",
        "annotated_types/tests/test_x.py": "",
        "annotated_types/__init__.py": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ---------------------------------------------------------------------------------- contents


def test_the_zip_holds_both_packages_the_runner_the_library_the_document_and_the_policy(
    built: Path, policy: Path
) -> None:
    entries = set(names(built))
    for expected in (
        "quiesce/__init__.py",
        "quiesce/engine/run.py",
        "quiesce/guest/quiesce_guest.py",
        "quiesce/hooklib/quiesce_hooks.py",
        "quiesce_aws/handler.py",
        "quiesce_aws/provider.py",
        "quiesce_aws/ssm_document.json",
        "policy.json",
    ):
        assert expected in entries, expected
    assert "quiesce_aws/ssm_document.yaml" not in entries
    assert "policy.yaml" not in entries
    with zipfile.ZipFile(built) as archive:
        assert json.loads(archive.read("policy.json")) == yaml.safe_load(policy.read_text())
        documents = json.loads(archive.read("quiesce_aws/ssm_document.json"))
        runner = archive.read("quiesce/guest/quiesce_guest.py")
        library = archive.read("quiesce/hooklib/quiesce_hooks.py")
    assert runner == (ROOT / "shared" / "quiesce" / "guest" / "quiesce_guest.py").read_bytes()
    # The functions expand a policy's `hooks: {use: ...}` with the library's own command line.
    assert library == (ROOT / "shared" / "quiesce" / "hooklib" / "quiesce_hooks.py").read_bytes()
    # The SSM documents, as the sources' YAML says (placeholders left for the adapter).
    source = ROOT / "functions" / "aws" / "quiesce_aws" / "ssm_document.yaml"
    assert documents == yaml.safe_load(source.read_text())


def test_a_json_policy_is_bundled_as_it_is_and_a_yaml_one_as_the_same_data(
    policy: Path, tmp_path: Path
) -> None:
    as_json = tmp_path / "policy.json"
    as_json.write_text(json.dumps(yaml.safe_load(POLICY)))
    out = tmp_path / "j.zip"
    assert package_aws.main(["--policy", str(as_json), "-o", str(out), "--no-deps"]) == 0
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("policy.json")) == yaml.safe_load(POLICY)
    assert package_aws.check_policy(as_json) == package_aws.check_policy(policy)


def test_the_zip_declares_the_aws_provider_entry_point(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        (dist_info,) = {n.split("/")[0] for n in archive.namelist() if ".dist-info/" in n}
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert dist_info == f"quiesce-{package_aws.version()}.dist-info"
    assert "[quiesce.providers]\naws = quiesce_aws.spec:SPEC\n" in entry_points
    assert "azure" not in entry_points  # not in this zip
    assert "gcp" not in entry_points
    assert "Name: quiesce" in metadata


def test_tests_caches_bytecode_and_the_command_line_are_left_out(built: Path) -> None:
    for name in names(built):
        parts = name.split("/")
        assert "__pycache__" not in parts, name
        assert "tests" not in parts, name
        assert "test" not in parts, name
        assert not name.endswith((".pyc", ".pyo")), name
        assert not name.startswith(("quiesce/cli/", "quiesce/demo/")), name


def test_excluded_paths_are_recognised_wherever_they_are(tmp_path: Path) -> None:
    for name in ("a/__pycache__/b.pyc", "a/b.pyc", "pkg/tests/test_x.py", "x/.mypy_cache/y"):
        assert package_aws.excluded(name), name
    for name in ("quiesce/engine/run.py", "quiesce_aws/ssm_document.yaml", "pkg/testing.py"):
        assert not package_aws.excluded(name), name


# ----------------------------------------------------------------------------- determinism


def test_two_builds_of_the_same_sources_are_byte_identical(policy: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    for out in (first, second):
        assert package_aws.main(["--policy", str(policy), "-o", str(out), "--no-deps"]) == 0
    assert first.read_bytes() == second.read_bytes()


def test_entries_are_sorted_with_a_fixed_time_and_mode(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


# ---------------------------------------------------------------------------- dependencies


def test_requirements_are_what_lambda_lacks_and_the_functions_import() -> None:
    wanted = {package_aws._name(r): r for r in package_aws.requirements()}
    assert {"pydantic", "aws-lambda-powertools"} <= set(wanted)
    # The functions read JSON, and trace only when the package carries the X-Ray SDK.
    assert "[" not in wanted["aws-lambda-powertools"]
    assert not {"boto3", "botocore", "typer", "rich", "pyyaml", "aws-xray-sdk"} & set(wanted)

    traced = {package_aws._name(r): r for r in package_aws.requirements(with_tracing=True)}
    assert traced["aws-lambda-powertools"].startswith("aws-lambda-powertools[tracer]")
    assert set(traced) == set(wanted)


@pytest.mark.parametrize(
    ("declared", "tracing", "expected"),
    [
        ("aws-lambda-powertools[tracer]>=2.30", False, "aws-lambda-powertools>=2.30"),
        ("aws-lambda-powertools[tracer]>=2.30", True, "aws-lambda-powertools[tracer]>=2.30"),
        ("aws-lambda-powertools>=2.30", True, "aws-lambda-powertools[tracer]>=2.30"),
        ("aws-lambda-powertools[parser,tracer]>=3", False, "aws-lambda-powertools[parser]>=3"),
    ],
)
def test_the_tracer_extra_follows_with_tracing(declared: str, tracing: bool, expected: str) -> None:
    assert package_aws._powertools(declared, tracing) == expected


def test_dependencies_come_in_without_scripts_caches_or_the_runtimes_boto(
    policy: Path, tmp_path: Path
) -> None:
    deps = fake_pip_target(tmp_path / "deps")
    out = tmp_path / "with-deps.zip"
    args = ["--policy", str(policy), "-o", str(out), "--deps-from", str(deps)]
    assert package_aws.main(args) == 0
    entries = set(names(out))
    assert {
        "pydantic/__init__.py",
        "pydantic-2.9.0.dist-info/RECORD",
        "annotated_types/__init__.py",
    } <= entries
    assert not {n for n in entries if n.startswith(("botocore", "bin/"))}
    assert not {n for n in entries if "__pycache__" in n or "/tests/" in n}

    assert package_aws.main([*args, "--include-boto3"]) == 0
    assert "botocore/data/ec2.json" in names(out)


def fake_powertools_and_pydantic(root: Path) -> Path:
    """A pip --target folder with parts the functions import and parts they never do."""
    files = {
        "aws_lambda_powertools/__init__.py": "",
        "aws_lambda_powertools/logging/logger.py": "",
        "aws_lambda_powertools/utilities/data_classes/sns_event.py": "",
        "aws_lambda_powertools/utilities/serialization.py": "",
        "aws_lambda_powertools/utilities/parser/models.py": "",
        "aws_lambda_powertools/event_handler/openapi/swagger_ui/swagger-ui-bundle.min.js": "x",
        "pydantic/main.py": "",
        "pydantic/mypy.py": "",
        "pydantic/v1/main.py": "",
        "pydantic/v1/py.typed": "",
        "pydantic_core/__init__.py": "",
        "pydantic_core/_pydantic_core/__init__.pyi": "",
        "pydantic-2.9.0.dist-info/METADATA": (
            "Metadata-Version: 2.4\nName: pydantic\nVersion: 2.9.0\n"
            "Description-Content-Type: text/markdown\n\n# Pydantic\n\nThe long description.\n"
        ),
        "pydantic-2.9.0.dist-info/licenses/LICENSE": "MIT\n",
        "pydantic-2.9.0.dist-info/RECORD": (
            "pydantic/main.py,sha256=old,1\npydantic/mypy.py,,\npydantic/v1/main.py,,\n"
            "pydantic/v1/py.typed,,\npydantic/__pycache__/main.cpython-312.pyc,,\n"
            "pydantic-2.9.0.dist-info/METADATA,sha256=old,2\n"
            "pydantic-2.9.0.dist-info/licenses/LICENSE,,\npydantic-2.9.0.dist-info/RECORD,,\n"
        ),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_parts_of_the_dependencies_the_functions_never_import_are_left_out(
    policy: Path, tmp_path: Path
) -> None:
    """powertools' event handler and unused utilities, pydantic.v1 and its mypy plugin, type
    stubs and long descriptions stay out (tests/aws/test_cold_start.py runs the functions
    without them); what the functions import, the licenses and the metadata's fields stay in,
    and each RECORD lists exactly what is left, hashed as it is in the zip."""
    deps = fake_powertools_and_pydantic(tmp_path / "deps")
    out = tmp_path / "pruned.zip"
    assert (
        package_aws.main(["--policy", str(policy), "-o", str(out), "--deps-from", str(deps)]) == 0
    )
    with zipfile.ZipFile(out) as archive:
        entries = set(archive.namelist())
        metadata = archive.read("pydantic-2.9.0.dist-info/METADATA").decode()
        record = archive.read("pydantic-2.9.0.dist-info/RECORD").decode()
        contents = {name: archive.read(name) for name in entries}
    assert {
        "aws_lambda_powertools/__init__.py",
        "aws_lambda_powertools/logging/logger.py",
        "aws_lambda_powertools/utilities/data_classes/sns_event.py",
        "pydantic/main.py",
        "pydantic_core/__init__.py",
        "pydantic-2.9.0.dist-info/licenses/LICENSE",
    } <= entries
    for name in (
        "aws_lambda_powertools/utilities/serialization.py",
        "aws_lambda_powertools/utilities/parser/models.py",
        "aws_lambda_powertools/event_handler/openapi/swagger_ui/swagger-ui-bundle.min.js",
        "pydantic/mypy.py",
        "pydantic/v1/main.py",
        "pydantic/v1/py.typed",
        "pydantic_core/_pydantic_core/__init__.pyi",
    ):
        assert name not in entries, name
    assert metadata == (
        "Metadata-Version: 2.4\nName: pydantic\nVersion: 2.9.0\n"
        "Description-Content-Type: text/markdown\n"
    )
    listed = {}
    for line in record.splitlines():
        name, digest, size = line.rsplit(",", 2)
        listed[name] = (digest, size)
    assert set(listed) == {
        "pydantic/main.py",
        "pydantic-2.9.0.dist-info/METADATA",
        "pydantic-2.9.0.dist-info/licenses/LICENSE",
        "pydantic-2.9.0.dist-info/RECORD",
    }
    assert listed["pydantic-2.9.0.dist-info/RECORD"] == ("", "")
    for name, (digest, size) in listed.items():
        if name.endswith("/RECORD"):
            continue
        data = contents[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert (digest, size) == (f"sha256={expected.decode()}", str(len(data))), name

    # --no-prune bundles them whole, as pip installed them.
    whole = tmp_path / "whole.zip"
    args = ["--policy", str(policy), "-o", str(whole), "--deps-from", str(deps), "--no-prune"]
    assert package_aws.main(args) == 0
    with zipfile.ZipFile(whole) as archive:
        assert {"pydantic/v1/main.py", "pydantic_core/_pydantic_core/__init__.pyi"} <= set(
            archive.namelist()
        )
        assert b"The long description." in archive.read("pydantic-2.9.0.dist-info/METADATA")


def test_a_pruned_distribution_is_still_found_with_its_version(
    policy: Path, tmp_path: Path
) -> None:
    deps = fake_powertools_and_pydantic(tmp_path / "deps")
    out = tmp_path / "pruned.zip"
    assert (
        package_aws.main(["--policy", str(policy), "-o", str(out), "--deps-from", str(deps)]) == 0
    )
    task_root = tmp_path / "task"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(task_root)
    code = (
        f"import sys; sys.path[:0] = [{str(task_root)!r}]\n"
        "from importlib import metadata\n"
        "d = metadata.distribution('pydantic')\n"
        "print(d.version, sorted(str(f) for f in d.files))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split(" ", 1)[0] == "2.9.0"
    assert "pydantic/v1/main.py" not in result.stdout
    assert "pydantic/main.py" in result.stdout


def test_unused_names_parts_by_folder_or_file() -> None:
    for name in (
        "aws_lambda_powertools/event_handler/api_gateway.py",
        "aws_lambda_powertools/utilities/serialization.py",
        "pydantic/v1/__init__.py",
        "typing_inspection/typing_objects.pyi",
    ):
        assert package_aws.unused(name), name
    for name in (
        "aws_lambda_powertools/utilities/data_classes/event_bridge_event.py",
        "aws_lambda_powertools/utilities/serialization_other.py",
        "aws_lambda_powertools/metrics/provider/cloudwatch_emf/cloudwatch.py",
        "pydantic/v1.py",
        "pydantic/main.py",
        "quiesce_aws/handler.py",
    ):
        assert not package_aws.unused(name), name


def test_pip_is_asked_for_binary_wheels_of_the_lambda_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(package_aws.subprocess, "run", lambda cmd, check: commands.append(cmd))
    package_aws.pip_install(tmp_path, "3.12", "arm64", None)
    package_aws.pip_install(tmp_path, "3.12", "arm64", None, with_tracing=True)
    command, traced = commands
    assert any(a.startswith("aws-lambda-powertools>") for a in command)
    assert any(a.startswith("aws-lambda-powertools[tracer]") for a in traced)
    assert not any(package_aws._name(a) == "pyyaml" for a in command)
    assert command[command.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in command
    platforms = [command[i + 1] for i, a in enumerate(command) if a == "--platform"]
    assert platforms
    assert all(p.endswith("_aarch64") for p in platforms)
    assert "manylinux2014_aarch64" in platforms


# ----------------------------------------------------------------------------- refusals, CLI


def test_an_invalid_policy_is_refused_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("max_freeze_seconds: 30", "max_freeze_seconds: -1"))
    out = tmp_path / "x.zip"
    assert package_aws.main(["--policy", str(bad), "-o", str(out), "--no-deps"]) == 2
    assert "max_freeze_seconds" in capsys.readouterr().err
    assert not out.exists()


def test_a_policy_with_members_the_functions_cannot_reach_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(
        "version: 1\nname: x\ngroups:\n  g:\n    consistency: crash\n"
        "    members: [{name: m, provider: local, volumes: [/srv]}]\n"
    )
    assert package_aws.main(["--policy", str(local), "-o", str(tmp_path / "x.zip")]) == 2
    assert "provider local" in capsys.readouterr().err


def test_help_describes_the_options() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for option in (
        "--policy",
        "--output",
        "--no-deps",
        "--deps-from",
        "--architecture",
        "--with-tracing",
        "--no-prune",
    ):
        assert option in result.stdout


# ------------------------------------------------------------------------- the zip runs alone


def test_the_handlers_import_from_the_zip_and_read_the_bundled_policy(
    built: Path, tmp_path: Path
) -> None:
    """The zip's own code (not this checkout's) imports with only the third-party packages,
    finds the aws provider by its entry point, and loads policy.json from the task root
    (tests/aws/test_cold_start.py runs it without YAML and the X-Ray SDK)."""
    task_root = tmp_path / "task"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(task_root)
    probe = """
import json, sys
from importlib.metadata import entry_points
from types import SimpleNamespace
import quiesce, quiesce_aws.handler as handler
context = SimpleNamespace(function_name="quiesce-shop-schedule", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:eu-central-1:123456789012:function:f",
    aws_request_id="r-1", get_remaining_time_in_millis=lambda: 900000)
ignored = handler.schedule_handler({"source": "aws.ec2", "detail-type": "x"}, context)
print(json.dumps({
    "quiesce": quiesce.__file__,
    "aws": [e.value for e in entry_points(group="quiesce.providers") if e.name == "aws"],
    "registered": __import__("quiesce.providers.registry").providers.registry.names(),
    "policy": handler.policy().name,
    "ignored": ignored["status"],
    "cli_loaded": any(m.startswith(("typer", "rich", "quiesce.cli")) for m in sys.modules),
}))
"""
    site = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys; sys.path[:0] = [{str(task_root)!r}, {site!r}]" + probe,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={
            "LAMBDA_TASK_ROOT": str(task_root),
            "QUIESCE_POLICY": "policy.json",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Quiesce",
            "AWS_DEFAULT_REGION": "eu-central-1",
            "PATH": "/usr/bin:/bin",
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["quiesce"].startswith(str(task_root))
    assert report["aws"] == ["quiesce_aws.spec:SPEC"]
    assert "aws" in report["registered"]
    assert report["policy"] == "shop"
    assert report["ignored"] == "refused"  # an unknown payload (docs/triggers.md)
    assert report["cli_loaded"] is False
