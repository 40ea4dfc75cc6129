"""Fixtures of the AWS adapters' tests: moto in-process, the adapters' real boto3 clients, and
botocore event hooks on those clients for the few things moto cannot express.

The hooks (`Wire`) never replace an adapter's method: they sit in botocore's own event chain of
the very client the adapter uses. `sent` records the parameters of every call of an operation
(before they are serialized), `fail` answers a call with an AWS error, `answer` answers it with
a response, and `after` edits what moto answered. Everything else goes to moto.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto import mock_aws
from moto.ec2.models import ec2_backends
from moto.ssm.models import ssm_backends

from quiesce.policy.model import Hook
from quiesce.ports import HookCall, Machine
from quiesce.record import utcnow
from quiesce_aws.clients import SessionClients
from quiesce_aws.member import AwsMember
from quiesce_aws.retry import Backoff

REGION = "eu-central-1"
ACCOUNT = "123456789012"


# ------------------------------------------------------------------------------ moto and clients


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, with fake credentials (nothing can reach a real account).

    moto's ~1,300 public AMIs are not loaded (that takes a second per test); Fleet registers
    the two images the tests launch from."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "QUIESCE_REGION"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One Session for the whole run: it loads each service model once."""
    return boto3.session.Session(region_name=REGION)


@pytest.fixture
def clients(aws: None, boto_session: boto3.session.Session) -> SessionClients:
    """The adapters' client factory: new clients (and so no hooks) in every test."""
    return SessionClients(boto_session)


class Sleeps:
    """An injectable sleep that records its waits (and optionally advances a fake clock)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


def quick_backoff(sleeps: Sleeps, attempts: int = 5) -> Backoff:
    """Backoff with a fixed jitter draw of 0.5, so each delay is exactly half its bound."""
    return Backoff(attempts=attempts, base=0.1, cap=1.0, sleep=sleeps, random=lambda: 0.5)


# ------------------------------------------------------------------------------ instances


class Fleet:
    """EC2 instances in moto: a Linux AMI whose root device is /dev/sda1 (so ExcludeBootVolume
    works in moto), extra data volumes, tags."""

    def __init__(self, ec2: Any) -> None:
        self.ec2 = ec2
        self.linux_ami = ec2.register_image(Name="linux", RootDeviceName="/dev/sda1")["ImageId"]
        self.windows_ami = ec2.register_image(Name="windows", RootDeviceName="/dev/sda1")["ImageId"]
        # RegisterImage cannot say "Windows"; EC2 derives an instance's platform from its AMI.
        ec2_backends[ACCOUNT][REGION].amis[self.windows_ami].platform = "windows"

    def launch(
        self,
        count: int = 1,
        *,
        tags: dict[str, str] | None = None,
        data_volumes: int = 1,
        windows: bool = False,
    ) -> list[str]:
        kwargs: dict[str, Any] = {
            "ImageId": self.windows_ami if windows else self.linux_ami,
            "MinCount": count,
            "MaxCount": count,
            "Placement": {"AvailabilityZone": f"{REGION}a"},
        }
        if tags:
            kwargs["TagSpecifications"] = [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ]
        ids = [i["InstanceId"] for i in self.ec2.run_instances(**kwargs)["Instances"]]
        for instance_id in ids:
            for n in range(data_volumes):
                volume = self.ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8 + n)
                self.ec2.attach_volume(
                    VolumeId=volume["VolumeId"],
                    InstanceId=instance_id,
                    Device=f"/dev/sd{'fghij'[n]}",
                )
        return ids

    def instance(self, instance_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ec2.describe_instances(InstanceIds=[instance_id])[
            "Reservations"
        ][0]["Instances"][0]
        return found

    def root(self, instance_id: str) -> str:
        instance = self.instance(instance_id)
        return next(
            str(b["Ebs"]["VolumeId"])
            for b in instance["BlockDeviceMappings"]
            if b["DeviceName"] == instance["RootDeviceName"]
        )

    def volumes(self, instance_id: str) -> list[str]:
        return sorted(
            str(b["Ebs"]["VolumeId"]) for b in self.instance(instance_id)["BlockDeviceMappings"]
        )


@pytest.fixture
def fleet(clients: SessionClients) -> Fleet:
    return Fleet(clients.ec2(REGION))


def machine(instance_id: str, member: str = "db", **attributes: str) -> Machine:
    attrs = {"region": REGION, "os": "linux", **attributes}
    return Machine(provider="aws", member=member, machine_id=instance_id, attributes=attrs)


def hooked_vm(
    name: str, *, hooks_dir: str = "/etc/quiesce/hooks", verify: bool = False
) -> dict[str, Any]:
    """A policy's EC2 member `name`: the instances tagged role=<name>, paused and resumed by
    <hooks_dir>/<name>-pause.sh and -resume.sh (and, with `verify`, checked by -check.sh)."""
    hooks = {
        "pre": {"run": [f"{hooks_dir}/{name}-pause.sh"], "timeout_seconds": 5},
        "post": {"run": [f"{hooks_dir}/{name}-resume.sh"], "timeout_seconds": 5},
    }
    if verify:
        hooks["verify"] = {"run": [f"{hooks_dir}/{name}-check.sh"], "timeout_seconds": 5}
    return {
        "name": name,
        "provider": "aws",
        "region": REGION,
        "select": {"tags": {"role": name}},
        "hooks": hooks,
    }


def member_of(target: Machine, name: str | None = None) -> AwsMember:
    """The policy member a machine stands for, as declared (its attributes say how)."""
    attrs = target.attributes
    return AwsMember.model_validate(
        {
            "name": name or target.member,
            "provider": "aws",
            "region": attrs.get("region") or REGION,
            "select": {"instance_ids": [target.machine_id]},
            "os": attrs.get("os", "linux"),
            "exclude_boot_volume": attrs.get("exclude_boot_volume") == "true",
        }
    )


def hook_call(
    target: Machine,
    phase: str = "pre",
    *,
    run_id: str = "20261129T100000Z-abc123",
    member: str | None = None,
    hook: Hook | None = None,
    thaw: Hook | None = None,
    max_freeze_seconds: float | None = 30,
) -> HookCall:
    hook = hook or Hook(run=["/etc/quiesce/hooks/pause.sh", "orders"], timeout_seconds=5)
    if phase == "pre" and thaw is None:
        thaw = Hook(run=["/etc/quiesce/hooks/resume.sh", "orders"], timeout_seconds=5)
    return HookCall(
        run_id=run_id,
        policy="shop",
        group="orders",
        member=member or target.member,
        machine=target,
        phase=phase,  # type: ignore[arg-type]
        hook=hook,
        thaw=thaw if phase == "pre" else None,
        max_freeze_seconds=max_freeze_seconds if phase == "pre" else None,
        spec=member_of(target, member),
    )


# ------------------------------------------------------------------------------ the wire


def _event_name(stage: str, client: Any, operation: str) -> str:
    return f"{stage}.{client.meta.service_model.service_id.hyphenize()}.{operation}"


def _request_params(client: Any, request_dict: dict[str, Any]) -> dict[str, Any]:
    body = request_dict.get("body") or b""
    if isinstance(body, bytes):
        body = body.decode()
    if client.meta.service_model.protocol == "json":
        params: dict[str, Any] = json.loads(body or "{}")
        return params
    return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(str(body)).items()}


def aws_error(code: str, message: str = "injected", status: int = 400) -> tuple[Any, Any]:
    http = AWSResponse("https://fake.invalid", status, HTTPHeaders(), None)
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return http, parsed


def aws_answer(parsed: dict[str, Any]) -> tuple[Any, Any]:
    http = AWSResponse("https://fake.invalid", 200, HTTPHeaders(), None)
    return http, {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}}}


class Wire:
    """botocore event hooks on a client the adapter uses (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, dict[str, Any]]] = []

    def sent(self, client: Any, operation: str) -> list[dict[str, Any]]:
        """Every call's parameters, as the adapter passed them; also appended to `log`."""
        calls: list[dict[str, Any]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            with self._lock:
                calls.append(json.loads(json.dumps(params, default=str)))
                self.log.append((operation, calls[-1]))

        client.meta.events.register(
            _event_name("before-parameter-build", client, operation), record
        )
        return calls

    def fail(
        self,
        client: Any,
        operation: str,
        code: str,
        *,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        status: int = 400,
    ) -> list[int]:
        """Answers the next `times` calls (that `when` accepts) with the AWS error `code`."""
        left = [times]

        def inject(params: dict[str, Any], **_: Any) -> tuple[Any, Any] | None:
            with self._lock:
                if left[0] <= 0 or (when is not None and not when(_request_params(client, params))):
                    return None
                left[0] -= 1
            return aws_error(code, status=status)

        client.meta.events.register(_event_name("before-call", client, operation), inject)
        return left

    def answer(
        self,
        client: Any,
        operation: str,
        responder: Callable[[dict[str, Any]], dict[str, Any] | None],
    ) -> None:
        """Answers calls with `responder(params)` (None: let moto answer)."""

        def respond(params: dict[str, Any], **_: Any) -> tuple[Any, Any] | None:
            parsed = responder(_request_params(client, params))
            return None if parsed is None else aws_answer(parsed)

        client.meta.events.register(_event_name("before-call", client, operation), respond)

    def after(self, client: Any, operation: str, edit: Callable[[dict[str, Any]], None]) -> None:
        """Lets `edit` change (or react to) what moto answered."""

        def hook(parsed: dict[str, Any], **_: Any) -> None:
            edit(parsed)

        client.meta.events.register(_event_name("after-call", client, operation), hook)


@pytest.fixture
def wire() -> Wire:
    return Wire()


# ------------------------------------------------------------------------------ SSM in moto


def moto_invocations(command_id: str) -> list[dict[str, Any]]:
    """The invocation records moto keeps for a command (editable: what GetCommandInvocation
    returns). moto adds every instance of the region to a command, not only those sent."""
    command = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id)
    invocations: list[dict[str, Any]] = command.invocations
    return invocations


def runner_result(status: str = "succeeded", code: str = "Succeeded", **fields: Any) -> str:
    """A result line as the guest runner prints it."""
    result = {
        "attempts": 1,
        "by": "orchestrator",
        "code": code,
        "duration_ms": 12.5,
        "ended_at": "2026-11-29T10:00:01.000+00:00",
        "exit_code": 0 if status == "succeeded" else 1,
        "message": f"the hook {code}",
        "output": "",
        "started_at": "2026-11-29T10:00:00.988+00:00",
        "status": status,
        **fields,
    }
    return json.dumps(result, sort_keys=True)


def on_send_command(
    wire: Wire, ssm: Any, change: Callable[[str, dict[str, Any]], dict[str, Any] | None]
) -> None:
    """After every SendCommand, lets `change(command_id, invocation)` return the fields to set
    on each of moto's invocations of the command (what the instance would have answered)."""

    def edit(parsed: dict[str, Any]) -> None:
        if "Command" not in parsed:
            return  # an injected error
        command_id = parsed["Command"]["CommandId"]
        for invocation in moto_invocations(command_id):
            fields = change(command_id, invocation)
            if fields:
                invocation.update(fields)

    wire.after(ssm, "SendCommand", edit)


def answered_by_runner(wire: Wire, ssm: Any, output: str | None = None) -> None:
    """Every invocation answers with a successful runner result (moto's output is empty)."""
    text = output if output is not None else runner_result()
    on_send_command(wire, ssm, lambda _cid, _inv: {"StandardOutputContent": text + "\n"})


def runner_answers(
    wire: Wire, ssm: Any, failing_phase_member: tuple[str, str] | None = None
) -> None:
    """Each instance answers like the runner: succeeded now (or failed, for one phase/member)."""

    def answer(command_id: str, invocation: dict[str, Any]) -> dict[str, Any]:
        params = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id).parameters
        now = utcnow().isoformat()
        key = (params["Phase"][0], params["Member"][0])
        if key == failing_phase_member:
            result = runner_result("failed", "ExecutionFailed", started_at=now, ended_at=now)
        else:
            result = runner_result(started_at=now, ended_at=now)
        return {"StandardOutputContent": result + "\n"}

    on_send_command(wire, ssm, answer)
