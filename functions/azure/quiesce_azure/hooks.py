"""Hooks on Azure VMs through managed Run Command and the guest hook runner.

Every hook call becomes one managed run command resource on the VM
(`PUT …/virtualMachines/{vm}/runCommands/{name}`, a name unique to the run, phase, member and
attempt) whose `source.script` is the FIXED script `RUN_HOOK_SCRIPT`: it calls the guest
runner's `run-args --config /etc/quiesce/hooks.json`, and its only inputs are run command
*parameters*, which the agent hands to the script as environment variables: the run's
identifiers and the NAME of a hook declared in the VM's root-owned allowlist
(docs/guest-protocol.md). No argv, environment value, script path or state folder is sent, and
no input is ever spliced into the script text. Values are checked before anything is sent.

The command runs synchronously (`asyncExecution: false`): the PUT's long-running operation ends
when the script has ended, and the operation's final GET of the resource asks for
`$expand=instanceView`, so that one read carries executionState, exitCode, output and error, and
the runner's one-line JSON result in the output becomes the HookResult (a run command costs its
PUT, the status reads ARM asks for, one GET and the DELETE). Only when that read has no final
instance view (the operation failed, or ARM answered without an Azure-AsyncOperation header)
is the run command read again with the view until it has one. The run command resource is
deleted afterwards (best effort: the DELETE is sent, its completion is not awaited). Members
run in parallel (the port's fan_out).

Why not the *action* form (`POST …/virtualMachines/{vm}/runCommand`): it runs one script at a
time per VM (a pre and the watchdog's or a post's call would queue), takes about 20 s at least,
cannot be cancelled, and keeps only the last 4 KB of output. The managed form runs in parallel,
has `timeoutInSeconds`, and typed `parameters`.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, ClassVar, Unpack
from urllib.parse import urlencode

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.polling.base_polling import LocationPolling, StatusCheckPolling
from azure.mgmt.compute import models
from azure.mgmt.core.polling.arm_polling import (
    ARMPolling,
    AzureAsyncOperationPolling,
    BodyContentPolling,
)

from quiesce.errors import ProviderError
from quiesce.guest.protocol import (
    REMOTE,
    RemoteHookRunner,
    Request,
    Stopwatch,
    Timing,
    argument_problem,
    ended,
    state_word,
    windows_refusal,
)
from quiesce.guest.quiesce_guest import DEFAULT_CONFIG
from quiesce.ports import HookCall
from quiesce.record import HookResult, HookStatus
from quiesce_azure.clients import (
    AzureClientFactory,
    as_json,
    dig,
    parse_vm_id,
)
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, error_code, error_message

log = logging.getLogger(__name__)

#: Where the runner lives on every VM (installed by a VM application or extension).
RUNNER_INSTALL_PATH = "/usr/local/lib/quiesce/quiesce_guest.py"
#: The VM's hook allowlist (installed by infra/azure's install-hooks run command).
ALLOWLIST_PATH = DEFAULT_CONFIG
PYTHON = "/usr/bin/python3"
#: The runner shortens its JSON result to fit the instance view's output.
MAX_RESULT_CHARS = 3500

#: The one script every hook call runs. It is a constant: inputs arrive only as environment
#: variables (run command parameters); "$VAR" expansions in double quotes are never re-parsed.
RUN_HOOK_SCRIPT = f"""#!/bin/sh
# Quiesce: run one hook declared in this VM's hook allowlist through the guest hook runner.
# Inputs are parameters (environment variables) holding identifiers and a hook's name, never
# part of this text.
set -eu
runner={RUNNER_INSTALL_PATH}
allowlist={ALLOWLIST_PATH}
refuse() {{
  printf '{{"status": "refused", "code": "%s", "message": "%s"}}\\n' "$1" "$2"
  exit 0
}}
[ -f "$runner" ] || refuse RunnerMissing \\
  "the Quiesce hook runner $runner is not installed on this VM (docs/azure-deploy.md)"
[ -f "$allowlist" ] || refuse ConfigRefused \\
  "there is no hook allowlist $allowlist on this VM, so no hook is declared: apply the \\
install-hooks run command of infra/azure (docs/azure-deploy.md)"
exec {PYTHON} -I "$runner" run-args --config "$allowlist" \\
  --phase "$QUIESCE_PHASE" --run-id "$QUIESCE_RUN_ID" --member "$QUIESCE_MEMBER" \\
  --hook "$QUIESCE_HOOK" --expires-at "${{QUIESCE_EXPIRES_AT:-}}" \\
  --restore-path "${{QUIESCE_RESTORE_PATH:-}}" --max-result-chars {MAX_RESULT_CHARS}
"""

#: The run command parameter (an environment variable of RUN_HOOK_SCRIPT) for each field of a
#: request.
PARAMETER_NAMES = {
    "phase": "QUIESCE_PHASE",
    "run_id": "QUIESCE_RUN_ID",
    "member": "QUIESCE_MEMBER",
    "hook": "QUIESCE_HOOK",
    "expires_at": "QUIESCE_EXPIRES_AT",
    "restore_path": "QUIESCE_RESTORE_PATH",
}
#: What quiesces a Windows VM instead of hooks.
WINDOWS_QUIESCER = "VSS (an application-consistent restore point)"

#: Run Command's own delivery and extension start-up, on top of the script's time.
DELIVERY_SLACK = 90.0

#: instanceView.executionState values that are final, other than Succeeded/Failed.
STATE_RESULTS: dict[str, tuple[HookStatus, str, str]] = {
    "timedout": (
        HookStatus.TIMED_OUT,
        "TimedOut",
        "Run Command stopped the hook runner after timeoutInSeconds",
    ),
    "cancelled": (HookStatus.FAILED, "Cancelled", "the run command was cancelled"),
}
FINAL_STATES = frozenset({"succeeded", "failed", *STATE_RESULTS})

RUN_PERMISSIONS = [
    Permission("Microsoft.Compute/virtualMachines/read", "resource_group"),
    Permission("Microsoft.Compute/virtualMachines/runCommands/write", "resource_group"),
    Permission("Microsoft.Compute/virtualMachines/runCommands/read", "resource_group"),
    Permission("Microsoft.Compute/virtualMachines/runCommands/delete", "resource_group"),
]


def hook_parameters(call: HookCall, phase: str, sent_at: float | None = None) -> dict[str, str]:
    """The run command's parameters for one call: the request's identifiers and hook name."""
    fields = Request.for_call(call, phase, sent_at=sent_at).fields()
    return {PARAMETER_NAMES[name]: value for name, value in fields.items()}


def parameter_problems(call: HookCall, phase: str, sent_at: float | None = None) -> list[str]:
    """What cannot be sent: a value the runner would refuse, or arguments it cannot carry."""
    request = Request.for_call(call, phase, sent_at=sent_at)
    values = request.fields()
    problems = [
        f"{PARAMETER_NAMES[name]} {values[name]!r} {problem}"
        for name, problem in request.problems().items()
    ]
    extra = argument_problem(call, phase)
    return problems + ([extra] if extra else [])


def run_command_name(call: HookCall, phase: str) -> str:
    """A name unique to the run, phase, member and attempt (ARM: at most 80 characters)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", f"quiesce-{phase}-{call.run_id}-{call.member}")
    return f"{base[:72]}-{secrets.token_hex(3)}"


def run_command_body(location: str, parameters: dict[str, str], timeout: int) -> dict[str, Any]:
    return {
        "location": location,
        "properties": {
            "source": {"script": RUN_HOOK_SCRIPT},
            "parameters": [{"name": k, "value": v} for k, v in parameters.items()],
            "timeoutInSeconds": timeout,
            "asyncExecution": False,
            "treatFailureAsDeploymentFailure": False,
        },
    }


def instance_view_result(view: dict[str, Any], watch: Stopwatch, where: str) -> HookResult | None:
    """What a finished run command came to (its instanceView JSON); None while in flight."""
    state = state_word(view.get("executionState"))
    if state not in FINAL_STATES:
        return None
    if state in STATE_RESULTS:
        status, code, meaning = STATE_RESULTS[state]
        return watch.result(status, code, f"{meaning} {where}")
    exit_code = view.get("exitCode")
    return ended(
        watch,
        succeeded=state == "succeeded",
        output=str(view.get("output") or ""),
        error=str(view.get("error") or ""),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        where=where,
        script="the run command",
    )


class _FinalReadWithInstanceView(AzureAsyncOperationPolling):  # type: ignore[type-arg]
    """ARM's Azure-AsyncOperation polling, whose final GET of the run command (once the
    operation has ended) also asks for its instance view: the result in the same read."""

    def get_final_get_url(self, pipeline_response: Any) -> str | None:
        url: str | None = super().get_final_get_url(pipeline_response)
        if url is None:
            return None
        return f"{url}{'&' if '?' in url else '?'}{urlencode({'$expand': 'instanceView'})}"


def result_polling(ops: Any) -> ARMPolling:
    """The polling of a run command's PUT: ARMPolling with the client's interval (used when
    ARM sends no Retry-After), whose final read carries the instance view."""
    delay = getattr(getattr(ops, "_config", None), "polling_interval", 30)
    return ARMPolling(
        delay,
        lro_algorithms=[
            _FinalReadWithInstanceView(),
            LocationPolling(),
            BodyContentPolling(),
            StatusCheckPolling(),
        ],
    )


class RunCommandHookRunner(RemoteHookRunner):
    """The HookRunner port over managed Run Command and the guest hook runner."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "run": RUN_PERMISSIONS,
        "run_many": RUN_PERMISSIONS,
        "check": RUN_PERMISSIONS,
    }

    def __init__(
        self,
        clients: AzureClientFactory,
        *,
        backoff: Backoff | None = None,
        delivery_slack: float = DELIVERY_SLACK,
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(**timing)
        self.clients = clients
        self.backoff = backoff or Backoff(sleep=self.sleep)
        self.delivery_slack = delivery_slack

    # ------------------------------------------------------------------------------ the flow

    def send(self, call: HookCall, phase: str) -> HookResult:
        watch = Stopwatch(self.clock)
        refusal = windows_refusal(call, machine="VM", quiesced_by=WINDOWS_QUIESCER)
        if refusal is not None:
            return refusal
        vm = parse_vm_id(call.machine.machine_id)
        where = f"on {vm.name} ({vm.resource_group})"
        sent_at = self.wall_clock()
        problems = parameter_problems(call, phase, sent_at)
        if problems:
            return watch.bad_parameters(
                problems,
                "a run command carries only the run's identifiers and a declared hook's name",
            )
        params = hook_parameters(call, phase, sent_at)
        timeout = REMOTE.execution(call.hook, phase)
        name = run_command_name(call, phase)
        client = self.clients.compute(vm.subscription)
        ops = client.virtual_machine_run_commands
        try:
            location = call.machine.attributes.get("location") or self._location(call)
            body = run_command_body(location, params, timeout)
            poller = self.backoff.call(
                lambda: ops.begin_create_or_update(
                    vm.resource_group,
                    vm.name,
                    name,
                    models.VirtualMachineRunCommand(body),
                    polling=result_polling(ops),
                ),
                what=f"PUT run command {name} {where}",
            )
        except (AzureError, ProviderError) as exc:
            return self._send_failure(exc, watch, where)
        try:
            return self._follow(poller, call, vm.resource_group, vm.name, name, timeout, watch)
        finally:
            self._delete(ops, vm.resource_group, vm.name, name)

    def _follow(
        self,
        poller: Any,
        call: HookCall,
        rg: str,
        vm: str,
        name: str,
        timeout: int,
        watch: Stopwatch,
    ) -> HookResult:
        where = f"on {vm} ({rg})"
        deadline = self.clock() + timeout + self.delivery_slack
        ops = self.clients.compute(parse_vm_id(call.machine.machine_id).subscription)
        lro_error: BaseException | None = None
        try:
            final = poller.result(timeout=max(0.0, deadline - self.clock()))
            if poller.done():
                view = dig(as_json(final), "properties", "instanceView") or {}
                result = instance_view_result(view, watch, where)
                if result is not None:
                    return result  # the operation's final read carried the result
        except (AzureError, ProviderError) as exc:
            lro_error = exc  # the instance view may still tell more
        while True:
            try:
                command = self.backoff.call(
                    lambda: ops.virtual_machine_run_commands.get_by_virtual_machine(
                        rg, vm, name, expand="instanceView"
                    ),
                    what=f"GET run command {name} {where}",
                )
                view = dig(as_json(command), "properties", "instanceView") or {}
                result = instance_view_result(view, watch, where)
                if result is not None:
                    return result
            except (AzureError, ProviderError) as exc:
                if lro_error is None:
                    lro_error = exc
            if lro_error is not None:
                return watch.failed(
                    error_code(lro_error) or getattr(lro_error, "code", None) or "RunCommandFailed",
                    f"the run command {name} failed {where}: {error_message(lro_error)}",
                )
            if self.clock() >= deadline:
                return watch.no_answer(
                    f"no result from run command {name} {where} within "
                    f"{timeout + self.delivery_slack:g}s"
                )
            self.sleep(self.poll_interval)

    def _send_failure(self, exc: BaseException, watch: Stopwatch, where: str) -> HookResult:
        code = error_code(exc) or getattr(exc, "code", None) or type(exc).__name__
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        if status == 403 or code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
            return watch.refused(
                "AccessDenied",
                f"not allowed to create a run command {where}: {error_message(exc)}; the "
                "identity needs Microsoft.Compute/virtualMachines/runCommands/write",
            )
        if status == 404:
            return watch.failed("Undeliverable", f"the VM is gone {where}: {error_message(exc)}")
        if code == "OperationNotAllowed" or status == 409:
            return watch.failed(
                "Undeliverable",
                f"Run Command cannot run {where} (VM deallocated or its agent not ready): "
                f"{error_message(exc)}",
            )
        return watch.failed(
            str(code), f"creating the run command failed {where}: {error_message(exc)}"
        )

    def _location(self, call: HookCall) -> str:
        vm = parse_vm_id(call.machine.machine_id)
        client = self.clients.compute(vm.subscription)
        found = self.backoff.call(
            lambda: client.virtual_machines.get(vm.resource_group, vm.name),
            what=f"GET virtual machine {vm.name}",
        )
        return str(as_json(found).get("location") or "")

    def _delete(self, ops: Any, rg: str, vm: str, name: str) -> None:
        """Deletes the run command resource; not awaited, and failures are only logged."""
        try:
            self.backoff.call(
                lambda: ops.begin_delete(rg, vm, name), what=f"DELETE run command {name}"
            )
        except (AzureError, ProviderError) as exc:
            log.warning("could not delete run command %s on %s: %s", name, vm, exc)
