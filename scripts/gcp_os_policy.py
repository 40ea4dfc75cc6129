"""Generates the OS Config OS policy assignments that install Quiesce on a policy's GCP members.

    python scripts/gcp_os_policy.py POLICY --bucket BUCKET --master-key-file FILE
                                    [--instance MEMBER=NAME[,NAME...]]...
                                    [--format terraform|gcloud] [-o PATH]

`--format terraform` (default) writes `infra/gcp/os-policy.auto.tfvars.json` (mode 0600: it
holds the VMs' keys): the variables `os_policy_assignments` and `agent_key_assignments` that
infra/gcp's google_os_config_os_policy_assignment resources read. `--format gcloud` writes one
YAML file per assignment into the folder `-o` (default `os-policies/`), for `gcloud compute
os-config os-policy-assignments create NAME --location=ZONE --file=FILE`.

What the assignments install on the member instances (Linux only):

- the guest runner /usr/local/lib/quiesce/quiesce_guest.py, the hook library
  /usr/local/lib/quiesce/quiesce_hooks.py (docs/databases.md) and the agent
  /usr/local/lib/quiesce/quiesce_agent.py, root-owned, mode 0755. They are too large to be inline
  content, so they are fetched from the GCS bucket under a content-addressed name
  (`quiesce/<sha256>/<file>`) into a staging file, and an exec resource installs each only when
  the staged file's SHA-256 is the pinned one (and re-installs whenever the installed file
  drifts from it);
- the machine's hook allowlist /etc/quiesce/hooks.json (mode 0600; quiesce_gcp.agent.allowlist:
  every hook of the policy's members in that zone, the same file from every assignment there);
- for `agent` members: the systemd unit quiesce-agent.service (Restart=always, logs to the
  journal only), an exec resource that keeps it enabled and running (restarted when the unit,
  the agent, its allowlist or its key changes), and, from a separate per-instance assignment,
  the instance's own signing key /etc/quiesce/agent.key (mode 0600): HMAC-SHA256 of the master
  key over projects/P/zones/Z/instances/NAME (quiesce_gcp.signing), so a key read on one VM is
  worth nothing on another;
- for `guest_flush` members: /etc/google/snapshots/pre.sh and post.sh (mode 0700), shims that run
  the member's declared hooks through the runner (`run-args --hook NAME`), and
  `[Snapshots] enabled = true` in /etc/default/instance_configs.cfg.

Assignments are zonal: there is one per (project, zone, channel); the agent assignment of a zone
targets every agent member there, a guest_flush member gets its own (its shims name it). The
instance filter is the members' labels; members selected by instance name are targeted by the
label `quiesce-member=<member>`, which those instances must carry (OS Config filters by labels,
not by names). A key assignment targets one instance by the label `quiesce-instance=<name>`,
which every agent instance must carry; the instances of a member selected by labels must be
named with `--instance MEMBER=NAME,...`. Windows members (VSS through guest flush) need nothing
installed and get none.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from quiesce.errors import QuiesceError
from quiesce.guest import RUNNER_PATH as RUNNER_SOURCE
from quiesce.hooklib import INSTALLED_PATH as LIBRARY_PATH
from quiesce.hooklib import LIBRARY_PATH as LIBRARY_SOURCE
from quiesce.policy import Policy, parse_policy
from quiesce.policy.model import Hook, hook_name
from quiesce_gcp.agent import (
    AGENT_CONFIG_PATH,
    AGENT_KEY_PATH,
    RUNNER_PATH,
    allowlist,
    gcp_members,
)
from quiesce_gcp.member import GcpMember
from quiesce_gcp.signing import AgentKeys, instance_path

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "infra" / "gcp"
DEFAULT_TFVARS = TERRAFORM_DIR / "os-policy.auto.tfvars.json"
AGENT_SOURCE = ROOT / "functions" / "gcp" / "quiesce_gcp" / "quiesce_agent.py"

AGENT_PATH = "/usr/local/lib/quiesce/quiesce_agent.py"
STAGING_DIR = "/var/lib/quiesce/staging"
UNIT_NAME = "quiesce-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
PRE_SH = "/etc/google/snapshots/pre.sh"
POST_SH = "/etc/google/snapshots/post.sh"
INSTANCE_CONFIGS = "/etc/default/instance_configs.cfg"
#: Where a guest-flush pre.sh leaves its run id for post.sh (tmpfs: never frozen).
FLUSH_RUN_FILE = "/run/quiesce/guest-flush-run"
#: The label that targets members selected by instance name.
MEMBER_LABEL = "quiesce-member"
#: The label that targets one instance (for its signing key).
INSTANCE_LABEL = "quiesce-instance"
PYTHON = "/usr/bin/python3"
#: Objects in the bucket: quiesce/<sha256>/<file name> (infra/gcp uploads the same names).
OBJECT_PREFIX = "quiesce"

UNIT = f"""[Unit]
Description=Quiesce guest agent (runs backup hooks asked for through instance metadata)
Wants=network-online.target
After=network-online.target google-guest-agent.service

[Service]
Type=simple
ExecStart={PYTHON} {AGENT_PATH} --config {AGENT_CONFIG_PATH} --python {PYTHON}
Restart=always
RestartSec=2
# Logs go to the journal only, never to a file on a filesystem a hook may freeze.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=quiesce-agent

[Install]
WantedBy=multi-user.target
"""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def object_name(path: Path) -> str:
    return f"{OBJECT_PREFIX}/{sha256_of(path)}/{path.name}"


def _file(rid: str, path: str, permissions: str, **source: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "file": {"path": path, "state": "CONTENTS_MATCH", "permissions": permissions, **source},
    }


def _exec(rid: str, validate: str, enforce: str) -> dict[str, Any]:
    """Exec resources: validate exits 100 when in the desired state, 101 when not; enforce
    exits 100 when it brought the instance there."""
    return {
        "id": rid,
        "exec": {
            "validate": {"interpreter": "SHELL", "script": validate},
            "enforce": {"interpreter": "SHELL", "script": enforce},
        },
    }


def pinned_install(rid: str, source: Path, target: str, bucket: str) -> list[dict[str, Any]]:
    """A GCS object staged, then installed root-owned 0755 only if its SHA-256 is the pin."""
    digest = sha256_of(source)
    staged = f"{STAGING_DIR}/{source.name}"
    check = f'[ "$(sha256sum {target} 2>/dev/null | cut -d" " -f1)" = "{digest}" ]'
    validate = f"{check} && [ \"$(stat -c '%u %a' {target})\" = '0 755' ] && exit 100\nexit 101\n"
    enforce = (
        f'[ "$(sha256sum {staged} | cut -d" " -f1)" = "{digest}" ] || '
        f'{{ echo "{staged}: not the pinned sha256 {digest}" >&2; exit 1; }}\n'
        f"install -D -o root -g root -m 0755 {staged} {target}.new && mv -f {target}.new {target}"
        " && exit 100\nexit 1\n"
    )
    return [
        _file(
            f"{rid}-staged",
            staged,
            "600",
            file={"gcs": {"bucket": bucket, "object": object_name(source)}},
        ),
        _exec(rid, validate, enforce),
    ]


def agent_service() -> dict[str, Any]:
    validate = (
        f"systemctl is-enabled --quiet {UNIT_NAME} && systemctl is-active --quiet {UNIT_NAME} || "
        "exit 101\n"
        # Restart when the unit, the agent or its config changed after the agent started.
        f'started=$(date -d "$(systemctl show -p ActiveEnterTimestamp --value {UNIT_NAME})" +%s)'
        " || exit 101\n"
        f"for f in {UNIT_PATH} {AGENT_PATH} {AGENT_CONFIG_PATH} {AGENT_KEY_PATH}; do\n"
        '  [ "$(stat -c %Y "$f")" -le "$started" ] || exit 101\ndone\nexit 100\n'
    )
    enforce = (
        f"systemctl daemon-reload && systemctl enable {UNIT_NAME} && "
        f"systemctl restart {UNIT_NAME} && exit 100\nexit 1\n"
    )
    return _exec("agent-service", validate, enforce)


def snapshots_enabled() -> dict[str, Any]:
    """`[Snapshots] enabled = true` in instance_configs.cfg (the Google guest agent's switch)."""
    program = (
        "import configparser, sys\n"
        "c = configparser.ConfigParser()\n"
        f"c.read('{INSTANCE_CONFIGS}')\n"
        "ok = c.has_section('Snapshots') and c.get('Snapshots', 'enabled', fallback='') == 'true'\n"
        "if sys.argv[1] == 'validate':\n"
        "    sys.exit(100 if ok else 101)\n"
        "if not c.has_section('Snapshots'):\n"
        "    c.add_section('Snapshots')\n"
        "c.set('Snapshots', 'enabled', 'true')\n"
        f"with open('{INSTANCE_CONFIGS}', 'w') as f:\n"
        "    c.write(f)\n"
    )

    def script(mode: str) -> str:
        return f"{PYTHON} - {mode} <<'EOF'\n{program}EOF\n"

    enforce = (
        script("enforce") + "systemctl restart google-guest-agent 2>/dev/null || true\nexit 100\n"
    )
    return _exec("guest-flush-snapshots-enabled", script("validate") + "exit 101\n", enforce)


_CHECK = (
    f"{PYTHON} -c 'import json, sys; r = json.loads(sys.stdin.read()); "
    'print("quiesce", r.get("status"), r.get("code"), r.get("message"), file=sys.stderr); '
    'sys.exit(0 if r.get("status") == "succeeded" else 1)\''
)


def flush_shims(group_name: str, member: GcpMember) -> tuple[str, str]:
    """pre.sh and post.sh: run the member's declared pre (whose thaw the allowlist names) and
    post through the runner; a non-zero exit makes Compute Engine skip the snapshot."""
    head = (
        "#!/bin/sh\n# Installed by Quiesce's OS policy: the Google guest agent runs this around a\n"
    )
    head += "# guest-flush snapshot. Do not edit: OS Config restores it.\nset -eu\numask 077\n"
    runner = f"{PYTHON} -I {RUNNER_PATH} run-args --config {AGENT_CONFIG_PATH}"
    hooks = member.hooks

    def flags(phase: str) -> str:
        hook: Hook = getattr(hooks, phase)
        name = hook_name(hook, group_name, member.name, phase)
        return shlex.join(["--phase", phase, "--member", member.name, "--hook", name])

    if hooks.pre is None:
        pre = head + "exit 0\n"
    else:
        pre = (
            head
            + f"mkdir -p {FLUSH_RUN_FILE.rsplit('/', 1)[0]}\n"
            + 'run_id="guest-flush-$(date -u +%Y%m%dT%H%M%SZ)-$$"\n'
            + f"printf '%s\\n' \"$run_id\" > {FLUSH_RUN_FILE}\n"
            + f'{runner} --run-id "$run_id" {flags("pre")} | {_CHECK}\n'
        )
    if hooks.post is None:
        post = head + "exit 0\n"
    else:
        post = (
            head
            + f'run_id=$(cat {FLUSH_RUN_FILE} 2>/dev/null || echo "guest-flush-no-pre-$$")\n'
            + f'{runner} --run-id "$run_id" {flags("post")} | {_CHECK}\n'
        )
    return pre, post


def instance_filter(members: Sequence[GcpMember]) -> dict[str, Any]:
    """Labels of each member (OR'ed); members selected by name by quiesce-member=<name>."""
    sets: list[dict[str, Any]] = []
    for member in members:
        labels = member.select.labels if member.select.labels else {MEMBER_LABEL: member.name}
        entry = {"labels": dict(sorted(labels.items()))}
        if entry not in sets:
            sets.append(entry)
    return {"inclusionLabels": sets}


def _policy(pid: str, description: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": pid,
        "description": description,
        "mode": "ENFORCEMENT",
        "allowNoResourceGroupMatch": False,
        "resourceGroups": [{"resources": resources}],
    }


def _name(*parts: str) -> str:
    text = re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())
    return re.sub(r"-+", "-", text).strip("-")[:63]


def assignments(policy: Policy, bucket: str) -> dict[str, dict[str, Any]]:
    """The OS policy assignments (OS Config API shape) by name, without the keys."""
    binaries = [
        *pinned_install("runner", RUNNER_SOURCE, RUNNER_PATH, bucket),
        *pinned_install("library", LIBRARY_SOURCE, LIBRARY_PATH, bucket),
        *pinned_install("agent", AGENT_SOURCE, AGENT_PATH, bucket),
    ]

    def hooks_json(project: str, zone: str) -> dict[str, Any]:
        config = allowlist(policy, zone=(project, zone))
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        return _file("hooks-json", AGENT_CONFIG_PATH, "600", content=text)

    agents: dict[tuple[str, str], list[GcpMember]] = {}
    out: dict[str, dict[str, Any]] = {}
    rollout = {"disruptionBudget": {"percent": 100}, "minWaitDuration": "0s"}
    for group_name, _group, member in gcp_members(policy, ("agent", "guest_flush")):
        if member.hook_channel == "agent":
            agents.setdefault((member.project, member.zone), []).append(member)
            continue
        pre, post = flush_shims(group_name, member)
        resources = [
            *binaries,
            hooks_json(member.project, member.zone),
            _file("pre-sh", PRE_SH, "700", content=pre),
            _file("post-sh", POST_SH, "700", content=post),
            snapshots_enabled(),
        ]
        name = _name("quiesce-flush", member.name, member.zone)
        out[name] = {
            "project": member.project,
            "location": member.zone,
            "description": f"Quiesce guest-flush shims of member {member.name} ({group_name})",
            "osPolicies": [_policy("quiesce-guest-flush", "guest runner and shims", resources)],
            "instanceFilter": instance_filter([member]),
            "rollout": rollout,
        }
    for (project, zone), members in sorted(agents.items()):
        resources = [
            *binaries,
            hooks_json(project, zone),
            _file("agent-unit", UNIT_PATH, "644", content=UNIT),
            agent_service(),
        ]
        name = _name("quiesce-agent", project, zone)
        out[name] = {
            "project": project,
            "location": zone,
            "description": "Quiesce guest agent, hook runner and hooks of "
            + ", ".join(sorted({m.name for m in members})),
            "osPolicies": [_policy("quiesce-agent", "guest agent and runner", resources)],
            "instanceFilter": instance_filter(members),
            "rollout": rollout,
        }
    return out


def agent_instances(
    policy: Policy, named: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str, str]]:
    """(project, zone, instance name) of every agent member's instances: from the policy for
    members selected by name, from `named` (member -> names) for members selected by labels."""
    named = named or {}
    out: set[tuple[str, str, str]] = set()
    for _group, _g, member in gcp_members(policy, ("agent",)):
        names = list(member.select.instances or []) or list(named.get(member.name, []))
        if not names:
            raise QuiesceError(
                f"member {member.name!r} selects its instances by labels, so the OS policy "
                f"cannot know which instances need a signing key: name them with --instance "
                f"{member.name}=NAME[,NAME...]"
            )
        out |= {(member.project, member.zone, name) for name in names}
    return sorted(out)


def key_assignments(
    policy: Policy, keys: AgentKeys, named: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """One assignment per agent instance: its own signing key, root-only, targeted by the label
    quiesce-instance=<name>. These carry secrets: keep their files private."""
    out: dict[str, dict[str, Any]] = {}
    for project, zone, name in agent_instances(policy, named):
        key = keys.for_instance(instance_path(project, zone, name)).hex()
        resources = [_file("agent-key", AGENT_KEY_PATH, "600", content=key + "\n")]
        out[_name("quiesce-key", project, zone, name)] = {
            "project": project,
            "location": zone,
            "description": f"Quiesce agent signing key of {name}",
            "osPolicies": [_policy("quiesce-agent-key", "the agent's signing key", resources)],
            "instanceFilter": {"inclusionLabels": [{"labels": {INSTANCE_LABEL: name}}]},
            "rollout": {"disruptionBudget": {"percent": 100}, "minWaitDuration": "0s"},
        }
    return out


def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def terraform_vars(
    policy: Policy,
    bucket: str,
    keys: AgentKeys,
    named: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The tfvars of infra/gcp: assignments in Terraform's snake_case shape; the key
    assignments in their own (sensitive) variable, as {name: {project, location, instance,
    key}}."""
    key_vars = {}
    for name, body in key_assignments(policy, keys, named).items():
        (resource,) = body["osPolicies"][0]["resourceGroups"][0]["resources"]
        key_vars[name] = {
            "project": body["project"],
            "location": body["location"],
            "instance": body["instanceFilter"]["inclusionLabels"][0]["labels"][INSTANCE_LABEL],
            "key": resource["file"]["content"].strip(),
        }
    return {
        "os_policy_assignments": {
            name: _snake(body) for name, body in assignments(policy, bucket).items()
        },
        "agent_key_assignments": key_vars,
    }


def gcloud_files(
    policy: Policy,
    bucket: str,
    keys: AgentKeys,
    named: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """One YAML file per assignment, for `gcloud compute os-config os-policy-assignments
    create NAME --location ZONE --project P --file FILE`."""
    files: dict[str, str] = {}
    every = {**assignments(policy, bucket), **key_assignments(policy, keys, named)}
    for name, body in every.items():
        document = {k: v for k, v in body.items() if k not in ("project", "location")}
        files[f"{name}.yaml"] = yaml.safe_dump(document, sort_keys=False, width=1000)
    return files


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner can read (it holds signing keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def parse_instances(values: Sequence[str]) -> dict[str, list[str]]:
    """--instance MEMBER=NAME[,NAME...] flags, as member -> names."""
    out: dict[str, list[str]] = {}
    for value in values:
        member, sep, names = value.partition("=")
        if not sep or not member or not names:
            raise QuiesceError(f"--instance {value!r}: expected MEMBER=NAME[,NAME...]")
        out.setdefault(member, []).extend(n for n in names.split(",") if n)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path)
    parser.add_argument("--bucket", required=True, help="the bucket infra/gcp uploads to")
    parser.add_argument(
        "--master-key-file",
        required=True,
        help="the agent master key (hex), readable by you only; the functions get the same "
        "key from Secret Manager",
    )
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="MEMBER=NAME[,NAME...]",
        help="the instances of an agent member selected by labels (repeatable)",
    )
    parser.add_argument("--format", choices=("terraform", "gcloud"), default="terraform")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    try:
        policy = parse_policy(args.policy.read_text(encoding="utf-8"))
        keys = AgentKeys.from_file(args.master_key_file)
        named = parse_instances(args.instance)
        if args.format == "terraform":
            text = json.dumps(terraform_vars(policy, args.bucket, keys, named), indent=2)
            target = args.output or DEFAULT_TFVARS
            write_private(target, text + "\n")
            print(f"wrote {target} (mode 0600: it holds the VMs' signing keys)")
            return 0
        folder = args.output or Path("os-policies")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, text in gcloud_files(policy, args.bucket, keys, named).items():
            write_private(folder / name, text)
            print(f"wrote {folder / name}")
    except QuiesceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
