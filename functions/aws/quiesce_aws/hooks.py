"""Hooks on EC2 instances through SSM Run Command and the Quiesce command document.

Every hook call becomes a SendCommand of the "Quiesce-RunHook" document (ssm_document.yaml)
whose parameters are only the run's identifiers and the NAME of a hook declared in the
instance's root-owned allowlist (/etc/quiesce/hooks.json, installed by the member's
Quiesce-InstallHooks association): the document passes them as flags to the guest hook runner
that a State Manager association installed on the instance, and the runner prints one JSON
result that comes back in the invocation's output. No argv, environment, script path or shell
text is ever sent (docs/guest-protocol.md).

`run_many` sends calls that share their parameters (the machines of one member in one phase)
as one command per 50 instance ids, all commands at once, and never uses Targets (which ramps
up slowly). It then follows every command with one ListCommandInvocations call per round
(results included; 16 commands polled at once), falling back to one GetCommandInvocation per
instance where the list call is unavailable or an output was cut. A call that has no answer
when its budget (its hook's timeouts and retries, plus slack for delivery) has passed comes
back timed_out/NoAnswer; a pre hook's watchdog thaws that machine by itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.errors import ProviderError
from quiesce.guest.protocol import (
    REMOTE,
    RemoteHookRunner,
    Request,
    Stopwatch,
    Timing,
    argument_problem,
    ended,
    parse_answer,
    state_word,
    windows_refusal,
    with_stderr,
)
from quiesce.guest.quiesce_guest import DEFAULT_CONFIG
from quiesce.ports import HookCall, fan_out
from quiesce.providers.registry import expect_member
from quiesce.record import HookResult, HookStatus
from quiesce_aws.clients import ClientFactory, chunks
from quiesce_aws.member import AwsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import SSM_THROTTLING, Backoff, error_code, error_message

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient

log = logging.getLogger(__name__)

DOCUMENT_FILE = Path(__file__).with_name("ssm_document.yaml")
#: The document names Terraform gives the documents of ssm_document.yaml.
RUN_HOOK_DOCUMENT = "Quiesce-RunHook"
INSTALL_RUNNER_DOCUMENT = "Quiesce-InstallRunner"
INSTALL_HOOKS_DOCUMENT = "Quiesce-InstallHooks"
#: Replaced by the runner's SHA-256 when the documents are created.
SHA256_PLACEHOLDER = "__RUNNER_SHA256__"
#: Replaced by the hook library's SHA-256 (the install document pins it next to the runner's).
HOOKS_SHA256_PLACEHOLDER = "__HOOKS_SHA256__"
#: The document's one step: the plugin whose output carries the runner's result.
STEP_NAME = "runHook"
#: Where the install document puts the runner on every instance.
RUNNER_INSTALL_PATH = "/usr/local/lib/quiesce/quiesce_guest.py"
#: Where the install document puts the hook library on every instance.
LIBRARY_INSTALL_PATH = "/usr/local/lib/quiesce/quiesce_hooks.py"
#: Where the member's allowlist association puts the hook allowlist (the runner's default).
ALLOWLIST_PATH = DEFAULT_CONFIG

#: What quiesces a Windows instance instead of hooks.
WINDOWS_QUIESCER = "VSS (AWSEC2-CreateVssSnapshot)"
#: The tag of the instances hooks may be sent to (infra/aws instance_tag).
INSTANCE_TAG = "quiesce:enabled"
#: SendCommand takes at most 50 instance ids.
MAX_INSTANCES_PER_COMMAND = 50
#: At most this many commands are polled, or invocations read, at once.
POLL_CONCURRENCY = 16
#: SendCommand's TimeoutSeconds: how long SSM tries to deliver (its minimum).
DELIVERY_TIMEOUT_SECONDS = 30
#: ListCommandInvocations keeps the first 2,500 characters of a plugin's output.
LIST_OUTPUT_LIMIT = 2500
#: How the agent separates stdout from stderr in a plugin's combined output.
ERROR_SEPARATOR = re.compile(r"\n?-{5,}ERROR-{5,}\n?")

#: Statuses that are not final yet.
IN_FLIGHT = frozenset({"pending", "inprogress", "delayed", "cancelling"})

SEND_PERMISSIONS = [
    Permission("ssm:SendCommand", f"arn:aws:ssm:*:*:document/{RUN_HOOK_DOCUMENT}"),
    Permission(
        "ssm:SendCommand",
        "arn:aws:ec2:*:*:instance/*",
        {f"ssm:resourceTag/{INSTANCE_TAG}": "true"},
    ),
    # Neither supports resource-level permissions.
    Permission("ssm:ListCommandInvocations", "*"),
    Permission("ssm:GetCommandInvocation", "*"),
]


# ------------------------------------------------------------------------------ the documents


def runner_sha256(path: Path | None = None) -> str:
    """The SHA-256 of the guest hook runner this package ships (what the documents pin)."""
    if path is None:
        from quiesce.guest import RUNNER_PATH

        path = Path(RUNNER_PATH)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_sha256(path: Path | None = None) -> str:
    """The SHA-256 of the hook library this package ships (what the install document pins)."""
    if path is None:
        from quiesce.hooklib import LIBRARY_PATH

        path = LIBRARY_PATH
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_documents(
    sha256: str | None = None, hooks_sha256: str | None = None
) -> dict[str, dict[str, Any]]:
    """The documents of ssm_document.yaml ("run_hook", "install_runner", "install_hooks"), the
    runner's and the hook library's SHA-256 filled in (default: the shipped files')."""
    # The Lambda zip carries the documents as JSON (scripts/package_aws.py), and no YAML parser.
    rendered = DOCUMENT_FILE.with_suffix(".json")
    source = rendered if rendered.is_file() else DOCUMENT_FILE
    text = source.read_text(encoding="utf-8")
    text = text.replace(SHA256_PLACEHOLDER, sha256 or runner_sha256())
    text = text.replace(HOOKS_SHA256_PLACEHOLDER, hooks_sha256 or library_sha256())
    if source is rendered:
        docs: dict[str, dict[str, Any]] = json.loads(text)
        return docs
    import yaml

    docs = yaml.safe_load(text)
    return docs


def render_documents(sha256: str | None = None, hooks_sha256: str | None = None) -> dict[str, str]:
    """The documents' JSON content, by the names Terraform creates them under."""
    docs = load_documents(sha256, hooks_sha256)
    return {
        RUN_HOOK_DOCUMENT: json.dumps(docs["run_hook"], indent=2),
        INSTALL_RUNNER_DOCUMENT: json.dumps(docs["install_runner"], indent=2),
        INSTALL_HOOKS_DOCUMENT: json.dumps(docs["install_hooks"], indent=2),
    }


@dataclass(frozen=True)
class ParameterRule:
    """One document parameter's constraints, as SSM enforces them."""

    name: str
    type: str
    allowed_values: tuple[str, ...] | None = None
    allowed_pattern: str | None = None
    max_items: int | None = None

    def problems(self, values: Sequence[str]) -> list[str]:
        if self.type == "String" and len(values) != 1:
            return [f"{self.name} takes exactly one value"]
        if self.max_items is not None and len(values) > self.max_items:
            return [f"{self.name} takes at most {self.max_items} items"]
        out = []
        for value in values:
            if self.allowed_values is not None and value not in self.allowed_values:
                out.append(f"{self.name} {value!r} is not one of {', '.join(self.allowed_values)}")
            elif self.allowed_pattern is not None and not re.fullmatch(self.allowed_pattern, value):
                out.append(f"{self.name} {value!r} does not match {self.allowed_pattern}")
        return out


@functools.cache
def parameter_rules() -> dict[str, ParameterRule]:
    """The run-hook document's parameters and their constraints (from ssm_document.yaml)."""
    params = load_documents("0" * 64)["run_hook"]["parameters"]
    rules = {}
    for name, spec in params.items():
        allowed = spec.get("allowedValues")
        rules[name] = ParameterRule(
            name=name,
            type=spec["type"],
            allowed_values=tuple(str(v) for v in allowed) if allowed is not None else None,
            allowed_pattern=spec.get("allowedPattern"),
            max_items=spec.get("maxItems"),
        )
    return rules


def parameter_problems(parameters: dict[str, list[str]]) -> list[str]:
    """What SSM would refuse in these parameters (unknown names, patterns, allowed values)."""
    rules = parameter_rules()
    problems = []
    for name, values in parameters.items():
        rule = rules.get(name)
        if rule is None:
            problems.append(f"{name} is not a parameter of the document")
        else:
            problems.extend(rule.problems(values))
    return problems


# --------------------------------------------------------------------------- the parameters


#: The document's parameter for each field of a request.
PARAMETER_NAMES = {
    "phase": "Phase",
    "run_id": "RunId",
    "member": "Member",
    "hook": "Hook",
    "expires_at": "ExpiresAt",
    "restore_path": "RestorePath",
}


def hook_parameters(call: HookCall, phase: str, sent_at: float | None = None) -> dict[str, Any]:
    """The document parameters of one call: the request's identifiers and hook name, and SSM's
    bound on the runner (values that equal the defaults are left out)."""
    request = Request.for_call(call, phase, sent_at=sent_at)
    params = {PARAMETER_NAMES[name]: [value] for name, value in request.fields().items()}
    params["ExecutionTimeout"] = [str(REMOTE.execution(call.hook, phase))]
    return params


# ----------------------------------------------------------------------------- the results


@dataclass(frozen=True)
class Invocation:
    """One instance's invocation of a command, from either list or get."""

    instance_id: str
    status: str
    details: str = ""
    output: str = ""
    error: str = ""
    response_code: int | None = None
    cut: bool = False  # the output may be incomplete (the list call keeps 2,500 characters)

    @property
    def state(self) -> str:
        """The normalized status: StatusDetails where it is finer than Status."""
        details, status = state_word(self.details), state_word(self.status)
        if details in STATE_RESULTS or details in IN_FLIGHT or details in ("success", "failed"):
            return details
        return status


def stdout_of(output: str) -> str:
    """The standard output part of a plugin's combined output."""
    return ERROR_SEPARATOR.split(output, maxsplit=1)[0]


def parse_result(output: str) -> HookResult | None:
    """The runner's one-line JSON result in a plugin's output, or None when there is none."""
    return parse_answer(stdout_of(output))


#: Final statuses other than Success/Failed: (status, code, what it means).
STATE_RESULTS: dict[str, tuple[HookStatus, str, str]] = {
    "deliverytimedout": (
        HookStatus.TIMED_OUT,
        "TimedOut",
        "SSM could not deliver the command in time (the instance is stopped, unreachable or "
        "its agent is not running): the hook did not run",
    ),
    "executiontimedout": (
        HookStatus.TIMED_OUT,
        "TimedOut",
        "SSM stopped the hook runner after the document's execution timeout",
    ),
    "timedout": (HookStatus.TIMED_OUT, "TimedOut", "the command timed out"),
    "cancelled": (HookStatus.FAILED, "Cancelled", "the command was cancelled"),
    "undeliverable": (
        HookStatus.FAILED,
        "Undeliverable",
        "SSM could not deliver the command: the instance is not a managed node any more, or "
        "it was terminated",
    ),
    "terminated": (
        HookStatus.FAILED,
        "Terminated",
        "the command was terminated on the instance before it completed",
    ),
    "invalidplatform": (
        HookStatus.FAILED,
        "InvalidPlatform",
        "the instance's platform does not run the Quiesce document (it is for Linux; Windows "
        "members are quiesced by VSS)",
    ),
    "skipped": (
        HookStatus.FAILED,
        "InvalidPlatform",
        "the document's step was skipped: the instance is not a Linux instance",
    ),
    "accessdenied": (
        HookStatus.REFUSED,
        "AccessDenied",
        "SSM refused to run the document on the instance (access denied)",
    ),
}


def invocation_result(inv: Invocation, watch: Stopwatch) -> HookResult | None:
    """What a finished invocation came to; None while it is still in flight."""
    state = inv.state
    if state in IN_FLIGHT:
        return None
    where = f"on {inv.instance_id}"
    if state in ("success", "failed"):
        return ended(
            watch,
            succeeded=state == "success",
            output=stdout_of(inv.output),
            error=inv.error,
            exit_code=inv.response_code,
            where=where,
            script="the document",
        )
    if state in STATE_RESULTS:
        status, code, meaning = STATE_RESULTS[state]
        details = f" ({inv.details})" if inv.details else ""
        return watch.result(status, code, f"{meaning}{details} {where}")
    message = f"the command ended with status {inv.status} ({inv.details}) {where}"
    code = re.sub(r"[^A-Za-z]", "", inv.status) or "Failed"
    return watch.failed(code, with_stderr(message, inv.error))


def send_failure(exc: BaseException, watch: Stopwatch, document: str) -> HookResult:
    """A HookResult for a SendCommand that did not go through."""
    code = error_code(exc) or getattr(exc, "code", None) or type(exc).__name__
    text = error_message(exc)
    if code in ("AccessDeniedException", "AccessDenied"):
        return watch.refused(
            "AccessDenied",
            f"not allowed to send {document} to the instance: {text}; the role needs "
            f"ssm:SendCommand on the document and the instance must be tagged "
            f"{INSTANCE_TAG}=true",
        )
    if code == "InvalidInstanceId":
        return watch.failed(
            "Undeliverable",
            f"the instance is not a managed node SSM can reach (agent not running or not "
            f"registered, no instance profile, or the instance is stopped): {text}",
        )
    if code == "InvalidDocument":
        return watch.failed(
            "InvalidDocument",
            f"the SSM document {document} does not exist in this region or account: {text}",
        )
    if code == "InvalidParameters":
        return watch.refused("BadParameter", text)
    return watch.failed(str(code), f"SendCommand failed: {text}")


# ------------------------------------------------------------------------------ the adapter


@dataclass
class _Command:
    """One SendCommand and the calls waiting for its invocations."""

    region: str
    instance_ids: list[str]
    parameters: dict[str, list[str]]
    comment: str
    timeout: float
    indexes: dict[str, list[int]]  # instance id -> indexes of the calls it answers
    command_id: str | None = None
    watch: Stopwatch = field(default_factory=Stopwatch)
    deadline: float = 0.0
    waiting: set[str] = field(default_factory=set)
    last_error: str | None = None


class ListUnavailableError(Exception):
    """ListCommandInvocations cannot be used here (not allowed, or not implemented)."""


class SsmHookRunner(RemoteHookRunner):
    """The HookRunner port over SSM Run Command and the Quiesce-RunHook document."""

    POLL_INTERVAL = 0.5  # the first poll; then 1.5 times longer each round, up to 2 s

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "run": SEND_PERMISSIONS,
        "run_many": SEND_PERMISSIONS,
        "check": SEND_PERMISSIONS,
    }

    def __init__(
        self,
        clients: ClientFactory,
        *,
        document: str = RUN_HOOK_DOCUMENT,
        document_version: str | None = None,
        backoff: Backoff | None = None,
        max_poll_interval: float = 2.0,
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(**timing)
        self.clients = clients
        self.document = document
        self.document_version = document_version
        self.backoff = backoff or Backoff(sleep=self.sleep)
        self.max_poll_interval = max_poll_interval
        self.use_list = True

    # ------------------------------------------------------------------------------ the port

    def run_many(self, calls: Sequence[HookCall]) -> list[HookResult | BaseException]:
        return self._run(calls, None)

    # ------------------------------------------------------------------------------ the flow

    def send(self, call: HookCall, phase: str) -> HookResult:
        result = self._run([call], phase)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _run(
        self, calls: Sequence[HookCall], phase: str | None
    ) -> list[HookResult | BaseException]:
        results: list[HookResult | BaseException | None] = [None] * len(calls)
        commands = self._plan(calls, phase, results)
        pieces = fan_out(self._send, commands) if commands else []
        sent: list[_Command] = []
        for planned, outcome in zip(commands, pieces, strict=True):
            answered = [(planned, outcome)] if isinstance(outcome, BaseException) else outcome
            for command, failure in answered:
                if failure is None:
                    sent.append(command)
                    continue
                result = send_failure(failure, command.watch, self.document)
                for indexes in command.indexes.values():
                    for i in indexes:
                        results[i] = result
        self._follow(sent, results)
        out: list[HookResult | BaseException] = []
        for r in results:
            assert r is not None, "every call is answered, refused or given up on"
            out.append(r)
        return out

    def _plan(
        self,
        calls: Sequence[HookCall],
        phase: str | None,
        results: list[HookResult | BaseException | None],
    ) -> list[_Command]:
        """Checks every call's parameters and groups the calls into commands of <= 50."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        prepared: dict[int, tuple[str, dict[str, list[str]], float]] = {}
        sent_at = self.wall_clock()  # one moment for all: equal calls stay equal, and batch
        for i, call in enumerate(calls):
            call_phase = phase or call.phase
            refusal = windows_refusal(call, machine="instance", quiesced_by=WINDOWS_QUIESCER)
            if refusal is not None:
                results[i] = refusal
                continue
            try:
                region = (
                    call.machine.attributes.get("region")
                    or expect_member(call.spec, AwsMember).region
                )
            except ProviderError as exc:
                results[i] = exc
                continue
            params = hook_parameters(call, call_phase, sent_at)
            extra = argument_problem(call, call_phase)
            problems = ([extra] if extra else []) + parameter_problems(params)
            if problems:
                results[i] = Stopwatch().bad_parameters(
                    ["the Quiesce SSM document would refuse", *problems],
                    "it carries only identifiers and a declared hook's name: no quotes, "
                    "backslashes, $, backticks, braces, spaces, control characters, and no / in "
                    "a hook name",
                )
                continue
            key = (region, json.dumps(params, sort_keys=True))
            groups[key].append(i)
            prepared[i] = (region, params, REMOTE.answer(call.hook, call_phase))
        commands: list[_Command] = []
        for (region, _), indexes in groups.items():
            by_instance: dict[str, list[int]] = defaultdict(list)
            for i in indexes:
                by_instance[calls[i].machine.machine_id].append(i)
            _, params, timeout = prepared[indexes[0]]
            first = calls[indexes[0]]
            comment = f"quiesce {params['Phase'][0]} {first.run_id} {first.member}"[:100]
            for ids in chunks(sorted(by_instance), MAX_INSTANCES_PER_COMMAND):
                commands.append(
                    _Command(
                        region=region,
                        instance_ids=ids,
                        parameters=params,
                        comment=comment,
                        timeout=timeout,
                        indexes={iid: by_instance[iid] for iid in ids},
                    )
                )
        return commands

    def _send(self, command: _Command) -> list[tuple[_Command, BaseException | None]]:
        """Sends one command; an instance SSM does not manage fails the whole call, so then
        the ids are halved until the culprits are alone and the others got their command."""
        command.watch = Stopwatch(self.clock)
        try:
            command.command_id = self._send_command(command)
        except (ClientError, ProviderError, BotoCoreError) as exc:
            if error_code(exc) == "InvalidInstanceId" and len(command.instance_ids) > 1:
                half = len(command.instance_ids) // 2
                out = []
                for ids in (command.instance_ids[:half], command.instance_ids[half:]):
                    part = _Command(
                        region=command.region,
                        instance_ids=ids,
                        parameters=command.parameters,
                        comment=command.comment,
                        timeout=command.timeout,
                        indexes={iid: command.indexes[iid] for iid in ids},
                    )
                    out.extend(self._send(part))
                return out
            log.warning("SendCommand to %d instance(s) failed: %s", len(command.instance_ids), exc)
            return [(command, exc)]
        command.deadline = self.clock() + command.timeout
        command.waiting = set(command.instance_ids)
        return [(command, None)]

    def _follow(
        self, commands: list[_Command], results: list[HookResult | BaseException | None]
    ) -> None:
        """Polls until every command has answered or passed its deadline."""
        interval = self.poll_interval
        while True:
            open_commands = [c for c in commands if c.waiting]
            if not open_commands:
                return
            self._poll_all(open_commands, results)
            now = self.clock()
            for command in open_commands:
                if command.waiting and now >= command.deadline:
                    self._give_up(command, results)
            waiting = [c for c in commands if c.waiting]
            if not waiting:
                return
            next_deadline = min(c.deadline for c in waiting)
            self.sleep(max(0.0, min(interval, next_deadline - now)))
            interval = min(interval * 1.5, self.max_poll_interval)

    def _poll_all(
        self, commands: list[_Command], results: list[HookResult | BaseException | None]
    ) -> None:
        """One round: every open command polled, POLL_CONCURRENCY at a time (a phase of many
        members has a command per member; one after the other, a round would grow with them)."""

        def poll(command: _Command) -> None:
            self._poll(command, results)

        for group in chunks(commands, POLL_CONCURRENCY):
            for outcome in fan_out(poll, group):
                if isinstance(outcome, BaseException):
                    raise outcome

    def _give_up(self, command: _Command, results: list[HookResult | BaseException | None]) -> None:
        for instance_id in sorted(command.waiting):
            what = (
                f"no answer from {instance_id} within {command.timeout:g}s of sending "
                f"(command {command.command_id})"
            )
            if command.last_error:
                what += f" (last polling error: {command.last_error})"
            result = command.watch.no_answer(what)
            for i in command.indexes[instance_id]:
                results[i] = result
        command.waiting.clear()

    def _poll(self, command: _Command, results: list[HookResult | BaseException | None]) -> None:
        invocations: dict[str, Invocation] = {}
        if self.use_list:
            try:
                invocations = self._list_invocations(command)
            except ListUnavailableError as exc:
                log.info("ListCommandInvocations unavailable (%s): using GetCommandInvocation", exc)
                self.use_list = False
            except (ClientError, ProviderError, BotoCoreError) as exc:
                command.last_error = error_message(exc)
                return
        if not self.use_list:
            invocations = self._get_invocations(command, sorted(command.waiting))
        for instance_id in sorted(command.waiting):
            inv = invocations.get(instance_id)
            if inv is None:
                continue
            if inv.cut and inv.state not in IN_FLIGHT and parse_result(inv.output) is None:
                # The list call kept only the start of the output: read the whole of it.
                whole = self._get_invocations(command, [instance_id]).get(instance_id)
                inv = whole or inv
            result = invocation_result(inv, command.watch)
            if result is None:
                continue
            for i in command.indexes[instance_id]:
                results[i] = result
            command.waiting.discard(instance_id)

    # ------------------------------------------------------------------------------ SSM I/O

    def _ssm(self, region: str) -> SSMClient:
        return self.clients.ssm(region)

    def _send_command(self, command: _Command) -> str:
        client = self._ssm(command.region)
        kwargs: dict[str, Any] = {
            "DocumentName": self.document,
            "InstanceIds": list(command.instance_ids),
            "Parameters": command.parameters,
            "TimeoutSeconds": DELIVERY_TIMEOUT_SECONDS,
            "Comment": command.comment,
            "MaxConcurrency": "100%",
            "MaxErrors": "100%",
        }
        if self.document_version:
            kwargs["DocumentVersion"] = self.document_version
        response = self.backoff.call(
            lambda: client.send_command(**kwargs),
            retry_on=SSM_THROTTLING,
            what=f"SendCommand of {self.document}",
        )
        return str(response["Command"]["CommandId"])

    def _list_invocations(self, command: _Command) -> dict[str, Invocation]:
        """Every invocation of the command with its plugin's output, in one call per 50."""
        client = self._ssm(command.region)
        found: dict[str, Invocation] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "CommandId": command.command_id,
                "Details": True,
                "MaxResults": 50,
            }
            if token:
                kwargs["NextToken"] = token
            try:
                page = self.backoff.call(
                    lambda kwargs=kwargs: client.list_command_invocations(**kwargs),  # type: ignore[misc]
                    retry_on=SSM_THROTTLING,
                    what="ListCommandInvocations",
                )
            except NotImplementedError as exc:  # a backend without the call (moto)
                raise ListUnavailableError("not implemented") from exc
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                code = error_code(exc)
                if code in ("AccessDeniedException", "UnknownOperationException") or status in (
                    404,
                    501,
                ):
                    raise ListUnavailableError(error_message(exc)) from exc
                raise
            for item in page.get("CommandInvocations", []):
                plugins = item.get("CommandPlugins", [])
                plugin = next((p for p in plugins if p.get("Name") == STEP_NAME), None)
                if plugin is None and plugins:
                    plugin = plugins[0]
                output = str((plugin or {}).get("Output") or "")
                found[item.get("InstanceId", "")] = Invocation(
                    instance_id=item.get("InstanceId", ""),
                    status=str(item.get("Status", "")),
                    details=str(item.get("StatusDetails", "")),
                    output=output,
                    response_code=(plugin or {}).get("ResponseCode"),
                    cut=len(output) >= LIST_OUTPUT_LIMIT - 10,
                )
            token = page.get("NextToken")
            if not token:
                return found

    def _get_invocations(self, command: _Command, instance_ids: list[str]) -> dict[str, Invocation]:
        """GetCommandInvocation for each instance, a few at a time."""

        def one(instance_id: str) -> Invocation | None:
            return self._get_invocation(command, instance_id)

        found: dict[str, Invocation] = {}
        for group in chunks(instance_ids, POLL_CONCURRENCY):
            for instance_id, outcome in zip(group, fan_out(one, group), strict=True):
                if isinstance(outcome, BaseException):
                    command.last_error = error_message(outcome)
                elif outcome is not None:
                    found[instance_id] = outcome
        return found

    def _get_invocation(self, command: _Command, instance_id: str) -> Invocation | None:
        client = self._ssm(command.region)
        try:
            item = self.backoff.call(
                lambda: client.get_command_invocation(
                    CommandId=str(command.command_id), InstanceId=instance_id
                ),
                retry_on=SSM_THROTTLING,
                what="GetCommandInvocation",
            )
        except ClientError as exc:
            if error_code(exc) == "InvocationDoesNotExist":
                return None  # not registered yet, right after SendCommand
            raise
        return Invocation(
            instance_id=instance_id,
            status=str(item.get("Status", "")),
            details=str(item.get("StatusDetails", "")),
            output=str(item.get("StandardOutputContent") or ""),
            error=str(item.get("StandardErrorContent") or ""),
            response_code=item.get("ResponseCode"),
        )
