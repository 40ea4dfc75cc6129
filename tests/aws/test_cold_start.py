"""What the Lambda functions import, and that they run without what the zip leaves out.

The zip carries neither PyYAML nor the X-Ray SDK (scripts/package_aws.py): its functions read
policy.json and the SSM documents' JSON, and create a tracer only when tracing is on and the
SDK is there. These tests run the zip's own code in a fresh interpreter whose site-packages
lack yaml, aws_xray_sdk and wrapt altogether (a copy of this virtualenv's, without them), so an
import of any of them anywhere fails as it would on Lambda; and they check that tracing, when
on and packaged, still sends the handler's subsegment to the X-Ray daemon.

The zip also leaves out the parts of its third-party packages the functions never import
(package_aws.UNUSED). The last test runs the zip with those packages pruned, beside nothing but
what the Lambda runtime provides, through every function and every documented payload, traced
and not, and checks that no import asks for a part that was left out.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
import textwrap
import urllib.request
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from quiesce_aws import handler
from quiesce_aws.state import table_definition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import package_aws  # noqa: E402

REGION = "eu-central-1"
TABLE = "quiesce-catalog"
BUS = "quiesce-bus"
#: What the zip leaves out, and this checkout's own (editable) installation.
LEFT_OUT = re.compile(
    r"^(_?yaml|PyYAML-.*|pyyaml-.*|aws_xray_sdk.*|wrapt.*|__editable__.*quiesce.*|quiesce-.*)$",
    re.IGNORECASE,
)

#: Crash-consistent: moto's server cannot answer the SSM invocations of hooks (the hooks'
#: document rules are checked without YAML below, `document_rules`).
POLICY = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "consistency": "crash",
            "durability_timeout_seconds": 60,
            "members": [
                {
                    "name": "db",
                    "provider": "aws",
                    "region": REGION,
                    "select": {"tags": {"app": "orders"}},
                }
            ],
        }
    },
    "triggers": [{"name": "nightly", "group": "orders", "schedule": "0 3 * * *"}],
}

SCHEDULED = {
    "version": "0",
    "id": "d167b752-343a-4b28-afd6-d4de056319e8",
    "detail-type": "Scheduled Event",
    "source": "aws.scheduler",
    "account": "123456789012",
    "time": "2026-02-20T03:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:scheduler:{REGION}:123456789012:schedule/default/nightly"],
    "detail": "{}",
}

PROBE = """
import json, sys
from types import SimpleNamespace
started = set(sys.modules)
import quiesce_aws.handler as handler
imported = set(sys.modules)
context = SimpleNamespace(function_name="quiesce-shop-schedule", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:eu-central-1:123456789012:function:f",
    aws_request_id="r-1", get_remaining_time_in_millis=lambda: 900000)
answers = [handler.schedule_handler(event, context) for event in json.loads(sys.argv[1])]
rules = []
if sys.argv[2] == "document":  # what every SendCommand is checked against
    from quiesce_aws.hooks import parameter_problems, parameter_rules
    rules = sorted(parameter_rules())
    rules += parameter_problems({"Phase": ["thaw"], "Hook": ["orders.db.pre"]})
print(json.dumps({
    "document_rules": rules,
    "file": handler.__file__,
    "tracer": handler.tracer is not None,
    "imported": sorted(imported - started),
    "loaded": sorted(sys.modules),
    "answers": answers,
}, default=str))
"""


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip (without its third-party packages), extracted as Lambda's /var/task."""
    work = tmp_path_factory.mktemp("zip")
    policy = work / "policy.yaml"
    policy.write_text(json.dumps(POLICY))
    out = work / "quiesce-aws.zip"
    package_aws.build(policy, out, with_dependencies=False)
    root = work / "task"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope="module")
def runtime_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This virtualenv's site-packages without yaml, the X-Ray SDK, wrapt and this checkout."""
    overlay = tmp_path_factory.mktemp("site-packages")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not LEFT_OUT.match(entry.name):
            (overlay / entry.name).symlink_to(entry)
    return overlay


def run_zip(
    task_root: Path,
    site: Path,
    events: list[Any],
    env: dict[str, str],
    *,
    document: bool = False,
    probe: str = PROBE,
) -> dict[str, Any]:
    code = f"import site, sys\nsys.path.insert(0, {str(task_root)!r})\n"
    code += f"site.addsitedir({str(site)!r})\n" + probe
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-B",
            "-c",
            code,
            json.dumps(events),
            "document" * document,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=task_root,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_FUNCTION_NAME": "quiesce-shop-schedule",
            "QUIESCE_POLICY": "policy.json",
            "POWERTOOLS_METRICS_NAMESPACE": "Quiesce",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            **env,
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(task_root))
    return report


def test_the_site_of_these_tests_lacks_what_the_zip_leaves_out(
    runtime_site: Path,
) -> None:
    code = f"import site, sys\nsite.addsitedir({str(runtime_site)!r})\n" + textwrap.dedent(
        """
        import importlib.util
        print([importlib.util.find_spec(n) is None for n in ("yaml", "aws_xray_sdk", "wrapt")])
        """
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[True, True, True]"


# ------------------------------------------------------------------ a backup, without them


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_the_zips_schedule_function_backs_up_a_group_without_yaml_or_x_ray(
    task_root: Path, runtime_site: Path, moto_endpoint: str
) -> None:
    """The default deployment (tracing requested by the environment, no SDK in the zip): the
    function reads policy.json, snapshots the instance and records the run, and the adapter
    reads the SSM document's rules from its JSON, with yaml, aws_xray_sdk and wrapt absent."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    image = ec2.register_image(Name="linux", RootDeviceName="/dev/sda1")["ImageId"]
    (instance,) = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "app", "Value": "orders"}]}
        ],
    )["Instances"]
    session.client("dynamodb", endpoint_url=moto_endpoint).create_table(**table_definition(TABLE))
    session.client("events", endpoint_url=moto_endpoint).create_event_bus(Name=BUS)

    report = run_zip(
        task_root,
        runtime_site,
        [SCHEDULED, {"source": "aws.ec2", "detail-type": "x"}],
        {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "QUIESCE_TABLE": TABLE,
            "QUIESCE_EVENT_BUS": BUS,
            "QUIESCE_REGION": REGION,
        },
        document=True,
    )

    ran, refused = report["answers"]
    (outcome,) = ran["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("nightly", "ran")
    result = outcome["result"]
    assert result["recovery_point"]
    snapshots = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[{"Name": "tag:quiesce:run-id", "Values": [result["run_id"]]}],
    )["Snapshots"]
    assert {s["VolumeId"] for s in snapshots} == {
        m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
    }
    assert result["status"] == "succeeded"
    assert refused["status"] == "refused"
    # The SSM document's rules, from its JSON rendering in the zip.
    *names, problem = report["document_rules"]
    assert {"Phase", "RunId", "Member", "Hook", "ExecutionTimeout"} <= set(names)
    assert problem.startswith("Phase 'thaw' is not one of ")

    assert report["tracer"] is False
    loaded = set(report["loaded"])
    assert not {"yaml", "aws_xray_sdk", "wrapt"} & loaded
    assert not {m for m in loaded if m.startswith(("quiesce_azure", "quiesce_gcp"))}


# ------------------------------------------------------------------------ the import itself


def test_importing_the_handler_loads_no_sdk_tracer_or_policy_model_of_another_cloud(
    task_root: Path, runtime_site: Path
) -> None:
    """The import brings the front door and the converter, not boto3, the adapters, the
    tracer, YAML, powertools' event classes or any provider's members; an ignored event needs
    none of them but the event classes either."""
    refused = {"source": "aws.ec2", "detail-type": "x"}
    report = run_zip(task_root, runtime_site, [refused], {"POWERTOOLS_TRACE_DISABLED": "true"})
    assert report["answers"][0]["status"] == "refused"
    imported, loaded = set(report["imported"]), set(report["loaded"])
    assert {"quiesce.triggers.front_door", "quiesce_aws.triggers"} <= imported
    # The converter imports the event classes (the package brings all ~40) for an event.
    assert "aws_lambda_powertools.utilities.data_classes" not in imported
    assert "aws_lambda_powertools.utilities.data_classes" in loaded
    for module in (
        "boto3",
        "quiesce_aws.provider",
        "quiesce_aws.clients",
        "quiesce_aws.member",
        "aws_xray_sdk",
    ):
        assert module not in loaded, module
    assert not {m for m in loaded if m.startswith(("quiesce_azure", "quiesce_gcp"))}


# -------------------------------------------------------------------------------- tracing


@pytest.mark.parametrize(
    ("env", "requested"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "f"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        (
            {"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": " TRUE "},
            False,
        ),
        ({}, False),  # not in Lambda: powertools disables its tracer too
    ],
)
def test_tracing_is_requested_as_powertools_reads_the_environment(
    env: dict[str, str], requested: bool
) -> None:
    assert handler.tracing_requested(env) is requested
    # This virtualenv has the X-Ray SDK: requested is enabled.
    assert handler.tracing_enabled(env) is requested
    assert (handler.make_tracer(env) is not None) is requested


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    """A UDP socket standing in for the X-Ray daemon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(15)
    try:
        yield sock
    finally:
        sock.close()


def test_with_tracing_on_and_the_sdk_packaged_the_handler_is_traced(
    task_root: Path, daemon: socket.socket, tmp_path: Path
) -> None:
    """The zip's code with the X-Ray SDK (as --with-tracing packages it): the handler's
    subsegment reaches the daemon, under the invocation's trace."""
    host, port = daemon.getsockname()
    site = sysconfig.get_paths()["purelib"]
    report = run_zip(
        task_root,
        Path(site),
        [{"source": "aws.ec2", "detail-type": "x"}],
        {
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;"
            "Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": f"{host}:{port}",
        },
    )
    assert report["tracer"] is True
    assert "aws_xray_sdk" in report["loaded"]
    packet, _ = daemon.recvfrom(65535)
    header, _, body = packet.decode().partition("\n")
    assert json.loads(header) == {"format": "json", "version": 1}
    subsegment = json.loads(body)
    assert subsegment["name"] == "## schedule_handler"
    assert subsegment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert subsegment["parent_id"] == "53995c3f42cd8ad8"
    assert subsegment["annotations"]["ColdStart"] is True


# ------------------------------------------------- the zip's pruned third-party packages

PAYLOADS = ROOT / "tests" / "aws" / "payloads"
#: Which function serves each documented payload (tests/aws/payloads), by its file name.
FUNCTIONS = {
    "eventbridge_scheduler": "schedule_handler",
    "codedeploy_": "deploy_handler",
    "codepipeline_": "deploy_handler",
    "cloudwatch_": "alert_handler",
}

#: A trigger for each documented payload, so that every function runs a backup.
PAYLOAD_POLICY = {
    **POLICY,
    "triggers": [
        {"name": "aaaaa", "group": "orders", "schedule": "0 4 * * *"},
        {
            "name": "deployed",
            "group": "orders",
            "on": "deploy",
            "match": {"state": "SUCCESS"},
        },
        {
            "name": "release",
            "group": "orders",
            "on": "deploy",
            "match": {"pipeline": "myPipeline"},
        },
        {
            "name": "cpu",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "ServerCpuTooHigh"},
        },
        {
            "name": "action",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "Test alert"},
        },
        {
            "name": "sns",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "EXAMPLE"},
        },
    ],
}

#: Every handler on every event, with a record of every module an import asks for (found or
#: not: a module that code imports inside `try` would otherwise go unseen).
PATHS_PROBE = """
import json, sys
from types import SimpleNamespace

class Asked:
    names = set()

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        cls.names.add(name)
        return None

sys.meta_path.insert(0, Asked)
import quiesce_aws.handler as handler
context = SimpleNamespace(function_name="quiesce-shop-schedule", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:eu-central-1:123456789012:function:f",
    aws_request_id="r-1", get_remaining_time_in_millis=lambda: 900000)
calls = json.loads(sys.argv[1])
answers = [getattr(handler, function)(event, context) for function, event in calls]
from quiesce_aws.hooks import parameter_problems, parameter_rules
rules = sorted(parameter_rules()) + parameter_problems({"Phase": ["thaw"]})
print(json.dumps({
    "file": handler.__file__,
    "tracer": handler.tracer is not None,
    "answers": answers,
    "rules": rules,
    "asked": sorted(Asked.names),
    "files": {name: getattr(module, "__file__", None) for name, module in sys.modules.items()},
}, default=str))
"""


def payload_calls() -> list[tuple[str, Any]]:
    """(function, event) for every documented payload, and events each function refuses:
    another kind's, an unknown one, a malformed one, one that is not an object."""
    calls: list[tuple[str, Any]] = []
    for path in sorted(PAYLOADS.glob("*.json")):
        (function,) = {f for prefix, f in FUNCTIONS.items() if path.name.startswith(prefix)}
        calls.append((function, json.loads(path.read_text())))
    scheduled = json.loads((PAYLOADS / "eventbridge_scheduler.json").read_text())
    calls += [
        ("deploy_handler", scheduled),
        ("alert_handler", {"source": "aws.ec2", "detail-type": "x"}),
        ("schedule_handler", {**scheduled, "resources": ["not-a-schedule"]}),
        ("deploy_handler", [1, 2]),
    ]
    return calls


@pytest.fixture(scope="module")
def pruned_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip with its third-party packages (this virtualenv's copies, with the X-Ray SDK, as
    --with-tracing bundles them) pruned as package_aws prunes them, extracted."""
    sys.path.insert(0, str(ROOT / "bench"))
    import cold_start

    work = tmp_path_factory.mktemp("pruned")
    policy = work / "policy.json"
    policy.write_text(json.dumps(PAYLOAD_POLICY))
    deps = cold_start.installed_dependencies(work / "deps", with_tracing=True)
    out = work / "quiesce-aws.zip"
    package_aws.build(policy, out, deps_from=deps)
    root = work / "task"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope="module")
def lambda_runtime_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only what the Lambda runtime provides (boto3, botocore and their dependencies), from
    this virtualenv: every other package the functions import must come from the zip."""
    overlay = tmp_path_factory.mktemp("runtime")
    for name in sorted(package_aws.RUNTIME_PROVIDED):
        distribution = metadata.distribution(name)
        tops = {f.parts[0] for f in distribution.files or [] if f.parts[0] != ".."}
        for top in sorted(tops):
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (overlay / top).exists():
                (overlay / top).symlink_to(source)
    return overlay


def _module_file(name: str) -> tuple[str, str]:
    base = name.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


@pytest.mark.parametrize("tracing", [False, True], ids=["untraced", "traced"])
def test_the_pruned_packages_serve_every_function_and_payload(
    pruned_root: Path,
    lambda_runtime_site: Path,
    moto_endpoint: str,
    daemon: socket.socket,
    tracing: bool,
) -> None:
    """The zip's own code, with only the runtime's boto3 beside it, runs every function on every
    documented payload (backups on moto's server) and refuses the others, traced and not,
    while no import asks for a part of powertools or pydantic the zip leaves out."""
    # moto's server keeps its state in this process: start from none.
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    entries = {p.relative_to(pruned_root).as_posix() for p in pruned_root.rglob("*")}
    assert "aws_lambda_powertools/event_handler" not in entries
    assert "pydantic/v1" not in entries
    assert "aws_lambda_powertools/utilities/data_classes/sns_event.py" in entries

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    image = ec2.register_image(Name="linux", RootDeviceName="/dev/sda1")["ImageId"]
    ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "app", "Value": "orders"}]}
        ],
    )
    session.client("dynamodb", endpoint_url=moto_endpoint).create_table(**table_definition(TABLE))
    session.client("events", endpoint_url=moto_endpoint).create_event_bus(Name=BUS)
    host, port = daemon.getsockname()
    calls = payload_calls()

    report = run_zip(
        pruned_root,
        lambda_runtime_site,
        calls,
        {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "QUIESCE_TABLE": TABLE,
            "QUIESCE_EVENT_BUS": BUS,
            "QUIESCE_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
            "AWS_XRAY_DAEMON_ADDRESS": f"{host}:{port}",
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;"
            "Parent=53995c3f42cd8ad8;Sampled=1",
        },
        probe=PATHS_PROBE,
    )

    assert report["tracer"] is tracing
    answers = report["answers"]
    assert len(answers) == len(calls)
    ran = {
        function
        for (function, _), answer in zip(calls, answers, strict=True)
        for outcome in answer.get("outcomes", [])
        if outcome["action"] == "ran" and outcome["result"]["status"] == "succeeded"
    }
    assert ran == {"schedule_handler", "deploy_handler", "alert_handler"}
    assert [a["status"] for a in answers[-4:]] == ["refused"] * 4
    assert {a["status"] for a in answers} == {"fired", "ignored", "refused"}
    assert report["rules"][-1].startswith("Phase 'thaw' is not one of ")

    # Everything third-party came from the zip or the runtime's packages, nothing else.
    for name, file in report["files"].items():
        if file is not None and "site-packages" in file:
            assert file.startswith(str(lambda_runtime_site)), (name, file)
    # No import asked for a left-out part (an import inside `try` would not fail the run).
    asked = set(report["asked"])
    assert "aws_lambda_powertools.utilities.data_classes.sns_event" in asked
    assert ("aws_xray_sdk" in asked) is tracing
    left_out = {n for n in asked if any(package_aws.unused(f) for f in _module_file(n))}
    assert not left_out
