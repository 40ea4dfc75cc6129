"""Pydantic models of the policy file.

Every field carries a description and an example: ``quiesce schema`` prints them as JSON Schema,
and docs/policy.md is generated from the same models.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union

from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema

from quiesce.policy.base import StrictModel
from quiesce.policy.recovery import Copy, RestoreSite, check_copies
from quiesce.triggers.model import Trigger

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: The guest runner's rule for hook names (quiesce_guest.HOOK_NAME_RE, which a test keeps equal):
#: the runner, a large standalone script, is imported only when a hook sets environment names.
HOOK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HOOK_NAME_PATTERN = "^" + HOOK_NAME_RE.pattern + "$"
HookPhaseName = Literal["pre", "post", "verify"]
#: Upper bounds that keep every duration a finite number a run can compute with.
MAX_HOOK_SECONDS = 3600
MAX_DURABILITY_SECONDS = 7 * 24 * 3600
MAX_AGE_DAYS = 36500


def default_hook_name(group: str, member: str, phase: str) -> str:
    """The name a policy's hook has in the machines' allowlists unless it sets `name`."""
    return f"{group}.{member}.{phase}"


def hook_name(hook: Hook, group: str, member: str, phase: str) -> str:
    """The name the channels send for `hook`: its `name`, or `<group>.<member>.<phase>`."""
    return hook.name or default_hook_name(group, member, phase)


def _env_names(value: dict[str, str], field: str) -> dict[str, str]:
    if not value:
        return value
    from quiesce.guest.quiesce_guest import env_name_problem

    for name, text in value.items():
        problem = env_name_problem(name)
        if problem:
            raise ValueError(f"{field}.{name}: {problem}")
        if "\x00" in text:
            raise ValueError(f"{field}.{name}: must not contain NUL bytes")
    return value


class Hook(StrictModel):
    """A hook run on the machine by the guest hook runner, without a shell.

    The machine runs only what its root-owned hook allowlist declares (docs/guest-protocol.md);
    channels carry the hook's `name`. `run`, `sha256`, `env` and `secret_env` are the
    declaration the allowlist is built from (`quiesce hooks allowlist`), and `quiesce plan`
    shows whether each machine's declaration matches it."""

    name: str | None = Field(
        default=None,
        pattern=HOOK_NAME_PATTERN,
        description=(
            "The hook's name in the machines' allowlists. Default: `<group>.<member>.<phase>`."
        ),
        examples=["orders.db.pre"],
    )
    run: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "The argv the allowlist declares, run without a shell. The first item is the "
            "script: an absolute path, or for `local` members a path starting with `./` or "
            "`../`, resolved against the policy file's folder. Required for `local` members; "
            "cloud members may give only `name` when the machines already declare the hook. "
            "The script must be a regular file owned by root (or the invoking user) on a path "
            "no one else can write."
        ),
        examples=[["./hooks/pause.sh", "db"]],
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Optional pin: the hook is refused unless the script's SHA-256 matches.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=MAX_HOOK_SECONDS,
        description=(
            "Seconds one attempt may take; then its whole process group is killed. The default "
            "(30) fits the default max_freeze_seconds (60) of a group."
        ),
        examples=[10],
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=5,
        description="How many more attempts after a failed or timed-out one.",
        examples=[1],
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra environment variables for the script. Names that change which code runs "
            "(`LD_*`, `BASH_ENV`, `ENV`, `PYTHON*`, `PERL*`, `IFS`, `PATH`, `QUIESCE_*`, ...) "
            "are refused. Values are part of the machine's allowlist, never sent in a channel; "
            "put secrets in `secret_env`."
        ),
        examples=[{"DB_NAME": "orders"}],
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "`NAME: /absolute/path/on/the/machine`: the variable's value is read on the machine "
            "from that root-only file (mode 0600 or 0400) when the hook runs, and output lines "
            "containing it are redacted. Becomes the allowlist's `env_files`."
        ),
        examples=[{"PGPASSWORD": "/etc/quiesce/secrets/orders-pg"}],
    )

    @field_validator("run")
    @classmethod
    def _no_empty_args(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value[0].strip():
            raise ValueError("the first item (the script) must not be empty")
        if any("\x00" in arg for arg in value):
            raise ValueError("arguments must not contain NUL bytes")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _env_names(value, "env")

    @field_validator("secret_env")
    @classmethod
    def _secret_paths(cls, value: dict[str, str]) -> dict[str, str]:
        _env_names(value, "secret_env")
        for name, path in value.items():
            if not path.startswith("/"):
                raise ValueError(
                    f"secret_env.{name}: {path!r} must be the absolute path of a root-only file "
                    "on the machine"
                )
        return value

    @model_validator(mode="after")
    def _declared_somewhere(self) -> Hook:
        if self.run is None and self.name is None:
            raise ValueError(
                "give run (the argv the machines' allowlists declare) or name (a hook the "
                "machines already declare)"
            )
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"secret_env: {', '.join(both)} is set in env too; keep one")
        return self

    @property
    def budget_seconds(self) -> float:
        """The longest this hook can take, over all attempts."""
        return self.timeout_seconds * (self.retries + 1)


class Hooks(StrictModel):
    """The member's hooks. `pre` quiesces, `post` resumes, `verify` checks a restored copy."""

    pre: Hook | None = Field(
        default=None,
        description="Quiesces the application (pause writes, flush, or freeze filesystems).",
        examples=[{"run": ["./hooks/pause.sh", "db"], "timeout_seconds": 10}],
    )
    post: Hook | None = Field(
        default=None,
        description=(
            "Resumes the application. Runs for every member whose pre hook started, also when "
            "it failed or timed out, and is armed as the watchdog's thaw."
        ),
        examples=[{"run": ["./hooks/resume.sh", "db"], "timeout_seconds": 10}],
    )
    verify: Hook | None = Field(
        default=None,
        description=(
            "Checks a restored copy; run by `quiesce restore` once every member of the point is "
            "restored, with the member's restored folder as its last argument and in "
            "`QUIESCE_RESTORE_PATH` (the other members' copies are in the same parent folder)."
        ),
        examples=[{"run": ["./hooks/verify.sh"], "timeout_seconds": 60}],
    )

    use: str | None = Field(
        default=None,
        description=(
            "A workload of the hook library (`quiesce hooks list`: fsfreeze, postgresql, mysql, "
            "redis) instead of `pre`/`post`/`verify`: its tested hooks, each declared with the "
            "options in `with` (docs/databases.md)."
        ),
        examples=["postgresql"],
    )
    with_: dict[str, str | int | float | bool | list[str]] = Field(
        default_factory=dict,
        alias="with",
        description=(
            "The library workload's options, named as on its command line without the dashes "
            "(`data`, `wal`, `socket`, `freeze`: [..] for a repeated one, `true` for a flag)."
        ),
        examples=[{"data": "/var/lib/postgresql/15/main", "wal": "/pg_wal"}],
    )
    library: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "How the library is run on the member's machines. Default: "
            "`/usr/local/lib/quiesce/quiesce_hooks.py` (`quiesce hooks install`), and for "
            "`local` members the library shipped with Quiesce, run by this Python."
        ),
        examples=[["/usr/local/lib/quiesce/quiesce_hooks.py"]],
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="For `use`: each pre and post attempt's limit (default 30 s; verify: 600 s).",
        examples=[30],
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    @model_validator(mode="after")
    def _use_or_scripts(self) -> Hooks:
        if self.use is None:
            if self.with_ or self.library or self.timeout_seconds is not None:
                raise ValueError("with, library and timeout_seconds go with use: <workload>")
            return self
        given = [phase for phase in ("pre", "post", "verify") if getattr(self, phase)]
        if given:
            raise ValueError(
                f"give either use: {self.use} or your own hooks, not both ({', '.join(given)})"
            )
        from quiesce.hooklib import library_hooks

        try:
            library_hooks(self.use, dict(self.with_), ["/check"])
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def expanded(self, library: list[str]) -> Hooks:
        """The library workload's hooks (`use`) as pre/post/verify hooks run through `library`
        (unless the policy names its own), or these hooks as they are."""
        if self.use is None:
            return self
        from quiesce.hooklib import library_hooks

        argv = library_hooks(self.use, dict(self.with_), self.library or library)
        timeout = self.timeout_seconds or 30.0
        hooks = {
            phase: Hook(run=run, timeout_seconds=600.0 if phase == "verify" else timeout)
            for phase, run in argv.items()
        }
        return Hooks(**hooks)

    @model_validator(mode="after")
    def _pre_needs_post(self) -> Hooks:
        if self.pre is not None and self.post is None:
            raise ValueError(
                "a pre hook needs a post hook: without one nothing could ever thaw the member"
            )
        return self


class MemberBase(StrictModel):
    """What every member has, whatever its provider. Each provider's member model extends it
    with `provider: Literal["<name>"]` and its own fields (see quiesce.providers.registry)."""

    provider: str = Field(description="Where the member lives: a registered provider's name.")
    name: str = Field(
        pattern=NAME_PATTERN,
        description="The member's name, unique in its group.",
        examples=["db"],
    )
    hooks: Hooks = Field(
        default_factory=Hooks,
        description=(
            "Hooks run on the member's machines. A member without hooks relies on other "
            "members' hooks to hold its writers (for example a journal written by the database's "
            "application)."
        ),
        examples=[{"pre": {"run": ["./hooks/pause.sh"]}, "post": {"run": ["./hooks/resume.sh"]}}],
    )

    @property
    def quiesced_by_platform(self) -> bool:
        """Whether the platform quiesces the member's machines itself (Windows VSS), so an
        application-consistent group needs no pre hook for it."""
        return False

    def library_command(self) -> list[str]:
        """How the hook library is run on this member's machines (unless the policy says)."""
        from quiesce.hooklib import INSTALLED_PATH

        return [INSTALLED_PATH]

    @model_validator(mode="after")
    def _library_hooks(self) -> MemberBase:
        if self.hooks.use is not None:
            object.__setattr__(self, "hooks", self.hooks.expanded(self.library_command()))
        return self

    def alone_reason(self) -> str | None:
        """Why this member must be the only one of its group, or None when it may share."""
        return None

    def local_folders(self) -> list[str]:
        """Folders of this machine the member snapshots: no two in a group may overlap."""
        return []


class LocalMember(MemberBase):
    """A member on this machine: hooks are local processes, volumes are folders."""

    def library_command(self) -> list[str]:
        import sys

        from quiesce.hooklib import LIBRARY_PATH

        return [sys.executable, "-I", str(LIBRARY_PATH)]

    provider: Literal["local"] = Field(
        description="Where the member lives. `local`: this machine.", examples=["local"]
    )
    volumes: list[str] = Field(
        min_length=1,
        description=(
            "Folders to snapshot; relative paths are resolved against the policy file. A "
            "folder and a folder inside it cannot both be listed (in one group)."
        ),
        examples=[["./data/db"]],
    )
    pre_freezes_volumes: bool = Field(
        default=True,
        description=(
            "Whether the pre hook may freeze the volumes' filesystems (fsfreeze). While true, "
            "`quiesce validate` and `plan` refuse a state_dir on the same filesystem as these "
            "volumes: Quiesce's own writes there would block until the thaw. Set false for a "
            "hook that only pauses the application."
        ),
        examples=[True],
    )

    def local_folders(self) -> list[str]:
        return list(self.volumes)

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> LocalMember:
        for phase in ("pre", "post", "verify"):
            hook: Hook | None = getattr(self.hooks, phase)
            if hook is None:
                continue
            if hook.run is None:
                raise ValueError(
                    f"hooks.{phase}.run: local members declare their hooks in the policy: give "
                    "run (Quiesce writes the allowlist for them)"
                )
            script = hook.run[0]
            if not script.startswith(("/", "./", "../")):
                raise ValueError(
                    f"hooks.{phase}.run: {script!r} must be an absolute path or start with ./ "
                    "or ../ (relative to the policy file's folder), e.g. ./" + script
                )
        base = (info.context or {}).get("base_dir")
        if base is None:
            _no_nested(list(self.volumes), "volumes")
            return self
        base_dir = Path(base)

        def resolve(path: str) -> str:
            return str((base_dir / path).resolve()) if not Path(path).is_absolute() else path

        def resolve_hook(hook: Hook | None) -> Hook | None:
            if hook is None or hook.run is None:
                return hook
            script = hook.run[0]
            if script.startswith(("./", "../")):
                return hook.model_copy(update={"run": [resolve(script), *hook.run[1:]]})
            return hook

        volumes = [resolve(v) for v in self.volumes]
        _no_nested(volumes, "volumes")
        hooks = Hooks.model_construct(
            pre=resolve_hook(self.hooks.pre),
            post=resolve_hook(self.hooks.post),
            verify=resolve_hook(self.hooks.verify),
        )
        object.__setattr__(self, "volumes", volumes)
        object.__setattr__(self, "hooks", hooks)
        return self


def _no_nested(folders: list[str], field: str) -> None:
    """Refuses a folder listed twice, or a folder and a folder inside it: their snapshots
    would overlap, and a restore would write one over the other."""
    normal = [os.path.normpath(f) for f in folders]
    for i, outer in enumerate(normal):
        for j, inner in enumerate(normal):
            if i == j:
                continue
            if inner == outer and i < j:
                raise ValueError(f"{field}: the folder {folders[i]} is listed twice")
            if inner.startswith(outer.rstrip("/") + "/"):
                raise ValueError(
                    f"{field}: {folders[j]} is inside {folders[i]}; list only the outer folder"
                )


class RemoteMember(MemberBase):
    """A member whose machines are reached over a provider's channel (not this machine): hook
    scripts are absolute paths on those machines, and Windows machines are quiesced by VSS
    through the platform instead of hooks. Providers redeclare `os` to say how they do it."""

    os: Literal["linux", "windows"] = Field(
        default="linux",
        description="`windows`: quiesced by VSS through the platform instead of hooks.",
        examples=["linux"],
    )

    @property
    def quiesced_by_platform(self) -> bool:
        return self.os == "windows"

    @model_validator(mode="after")
    def _remote_hooks(self) -> RemoteMember:
        for phase in ("pre", "post", "verify"):
            hook: Hook | None = getattr(self.hooks, phase)
            if hook is not None and hook.run is not None and not hook.run[0].startswith("/"):
                raise ValueError(
                    f"hooks.{phase}.run: {hook.run[0]!r} must be an absolute path on the machine"
                )
        if self.os == "windows" and (self.hooks.pre or self.hooks.post):
            raise ValueError("windows members are quiesced by VSS: remove hooks.pre and hooks.post")
        return self


class Selection(StrictModel):
    """Which machines a member stands for: by their names (ids), or by tags (labels), exactly
    one of the two. `CHOICES` names the provider's two fields."""

    CHOICES: ClassVar[tuple[str, str]]

    @model_validator(mode="after")
    def _exactly_one(self) -> Selection:
        first, second = self.CHOICES
        if (getattr(self, first) is None) == (getattr(self, second) is None):
            raise ValueError(f"give exactly one of {first} or {second}")
        return self


class RegisteredMembers:
    """The members of the loaded providers, told apart by their `provider` field.

    The union is built when the policy model is first used, from the providers
    quiesce.providers.registry has loaded by then: validating a policy first loads the
    providers its members name (`Policy.model_validate`), and loading or registering a provider
    later rebuilds the union (`rebuild`)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from quiesce.providers import registry

        loaded = registry.member_models()
        registry.built_with(loaded)
        models = tuple(loaded.values())
        choices = Union[models] if len(models) > 1 else Union[models[0], models[0]]  # noqa: UP007
        return handler.generate_schema(Annotated[choices, Field(discriminator="provider")])


#: A member of any registered provider (statically: its base).
Member = Annotated[MemberBase, RegisteredMembers()]


class Retention(StrictModel):
    """Which recovery points to keep. A point is deleted when any rule says so."""

    keep_last: int | None = Field(
        default=None, ge=1, description="Keep this many newest recovery points.", examples=[7]
    )
    max_age_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_AGE_DAYS,
        description=f"Delete recovery points older than this (at most {MAX_AGE_DAYS} days).",
        examples=[30],
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Retention:
        if self.keep_last is None and self.max_age_days is None:
            raise ValueError("give keep_last, max_age_days, or both")
        return self


class Group(StrictModel):
    """A consistency group: its members are frozen together and share one recovery point."""

    model_config = ConfigDict(defer_build=True)

    consistency: Literal["application", "crash"] = Field(
        default="application",
        description="`application`: run hooks around the snapshots. `crash`: no hooks are run.",
        examples=["application"],
    )
    on_quiesce_failure: Literal["fallback", "abort"] = Field(
        default="fallback",
        description=(
            "When a pre hook fails or times out. `fallback`: snapshot anyway and record the "
            "point as crash-consistent. `abort`: no snapshot, thaw everything, the run fails."
        ),
        examples=["fallback"],
    )
    max_freeze_seconds: float = Field(
        default=60,
        gt=0,
        le=MAX_HOOK_SECONDS,
        description=(
            "Watchdog bound: every member is thawed by then, counted from the start of its pre "
            "hook, whatever happens to the orchestrator. Each pre hook's budget "
            "(timeout_seconds x (retries + 1)) must be shorter, so the snapshot fits in between; "
            "the defaults (60 here, 30 per hook) fit each other."
        ),
        examples=[30],
    )
    durability_timeout_seconds: float = Field(
        default=3600,
        gt=0,
        le=MAX_DURABILITY_SECONDS,
        description=(
            "How long to wait, after the thaw, for snapshots to become durable before the run "
            f"fails (at most {MAX_DURABILITY_SECONDS} s, 7 days)."
        ),
        examples=[3600],
    )
    retention: Retention | None = Field(
        default=None,
        description="Which recovery points to keep; none: keep all.",
        examples=[{"keep_last": 7}],
    )
    copies: list[Copy] = Field(
        default_factory=list,
        description="Regions every recovery point is copied to, each kept by its own rule.",
        examples=[[{"region": "eu-west-1", "keep_last": 7}]],
    )
    restore: RestoreSite | None = Field(
        default=None,
        description="Where restores and drills launch the group's copies (in its own region; "
        "a copy's region names its own under `copies`).",
        examples=[{"network": "subnet-0abc1234", "security_groups": ["sg-0isolated"]}],
    )
    members: list[Member] = Field(
        min_length=1,
        description="The resources frozen and snapshotted together.",
        examples=[[{"name": "db", "provider": "local", "volumes": ["./data/db"]}]],
    )

    @model_validator(mode="after")
    def _check_members(self) -> Group:
        check_copies(self.copies)
        names = [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"member names must be unique; repeated: {', '.join(dupes)}")
        _no_nested(
            [v for m in self.members for v in m.local_folders()],
            "volumes (of the group's local members)",
        )
        alone = [r for r in (m.alone_reason() for m in self.members) if r is not None]
        if alone and len(self.members) > 1:
            raise ValueError(alone[0])
        if self.consistency == "application":
            vss = [m for m in self.members if m.quiesced_by_platform]
            if not any(m.hooks.pre for m in self.members) and not vss:
                raise ValueError(
                    "consistency: application needs at least one member with a pre hook (or a "
                    "windows member quiesced by VSS); use consistency: crash for hook-less "
                    "snapshots"
                )
            for m in self.members:
                pre = m.hooks.pre
                if pre is not None and pre.budget_seconds >= self.max_freeze_seconds:
                    raise ValueError(
                        f"member {m.name!r}: the pre hook may take up to {pre.budget_seconds:g}s "
                        f"(timeout_seconds x (retries + 1)), which does not fit in "
                        f"max_freeze_seconds ({self.max_freeze_seconds:g}s): the watchdog would "
                        "thaw before the snapshot"
                    )
        return self


class Policy(StrictModel):
    """A Quiesce policy file."""

    model_config = ConfigDict(defer_build=True)

    version: Literal[1] = Field(description="Policy format version.", examples=[1])
    name: str = Field(
        pattern=NAME_PATTERN, description="The policy's name, used in events.", examples=["orders"]
    )
    state_dir: str = Field(
        default=".quiesce",
        description=(
            "Local catalog, event bus and snapshots; relative paths are resolved against the "
            "policy file's folder."
        ),
        examples=[".quiesce"],
    )
    groups: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Group] = Field(
        min_length=1,
        description="The consistency groups, by name.",
        examples=[
            {
                "orders": {
                    "consistency": "application",
                    "members": [
                        {
                            "name": "db",
                            "provider": "local",
                            "volumes": ["./data/db"],
                            "hooks": {
                                "pre": {"run": ["./hooks/pause.sh"]},
                                "post": {"run": ["./hooks/resume.sh"]},
                            },
                        }
                    ],
                }
            }
        ],
    )

    triggers: list[Trigger] = Field(
        default_factory=list,
        description=(
            "What starts runs: schedules, deployments, alerts. A trigger event only selects a "
            "trigger; it never carries hooks, scripts or commands."
        ),
        examples=[
            [
                {"name": "nightly", "group": "orders", "schedule": "0 4 * * *"},
                {"name": "pre-deploy", "group": "orders", "on": "deploy"},
            ]
        ],
    )

    @model_validator(mode="after")
    def _check_triggers(self) -> Policy:
        names = [t.name for t in self.triggers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"trigger names must be unique; repeated: {', '.join(dupes)}")
        for i, trigger in enumerate(self.triggers):
            if trigger.group not in self.groups:
                raise ValueError(
                    f"triggers[{i}] ({trigger.name}): group {trigger.group!r} is not in the "
                    f"policy; known groups: {', '.join(sorted(self.groups))}"
                )
            if trigger.action == "drill":
                group = self.groups[trigger.group]
                sites = {c.region: c.restore for c in group.copies}
                if trigger.region is None and group.restore is None:
                    raise ValueError(
                        f"triggers[{i}] ({trigger.name}): a drill of group {trigger.group!r} "
                        "needs the group's `restore:` site (the isolated network its copies "
                        "are launched into)"
                    )
                if trigger.region is not None and sites.get(trigger.region) is None:
                    raise ValueError(
                        f"triggers[{i}] ({trigger.name}): a drill in {trigger.region} needs a "
                        f"copy of group {trigger.group!r} there with its `restore:` site "
                        f"(copies: [{{region: {trigger.region}, restore: {{network: ...}}}}])"
                    )
        return self

    @model_validator(mode="after")
    def _name_hooks(self) -> Policy:
        """Gives every hook its allowlist name; one name stands for one declaration."""
        placed: list[tuple[str, str, Hook, float | None, Hook | None]] = []
        for group_name, group in self.groups.items():
            for member in group.members:
                for phase in ("pre", "post", "verify"):
                    hook: Hook | None = getattr(member.hooks, phase)
                    if hook is None:
                        continue
                    where = f"groups.{group_name}.members[{member.name}].hooks.{phase}"
                    name = hook_name(hook, group_name, member.name, phase)
                    if not HOOK_NAME_RE.fullmatch(name):
                        raise ValueError(
                            f"{where}: the default hook name {name!r} is longer than 128 "
                            "characters; give the hook a shorter name"
                        )
                    object.__setattr__(hook, "name", name)
                    pre = phase == "pre"
                    placed.append(
                        (
                            where,
                            phase,
                            hook,
                            group.max_freeze_seconds if pre else None,
                            member.hooks.post if pre else None,
                        )
                    )
        seen: dict[str, tuple[str, tuple[Any, ...]]] = {}
        for where, phase, hook, freeze, thaw in placed:
            assert hook.name is not None
            key = (phase, hook, freeze, thaw.name if thaw else None)
            first = seen.setdefault(hook.name, (where, key))
            if first[1] != key:
                raise ValueError(
                    f"{where}: the hook name {hook.name!r} is also used by {first[0]} for "
                    "another declaration (phase, run, env, timeouts, thaw or max_freeze_seconds "
                    "differ); one name stands for one declaration on the machines"
                )
        return self

    @model_validator(mode="after")
    def _resolve_state_dir(self, info: ValidationInfo) -> Policy:
        base = (info.context or {}).get("base_dir")
        if base is not None and not Path(self.state_dir).is_absolute():
            object.__setattr__(self, "state_dir", str((Path(base) / self.state_dir).resolve()))
        return self

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Validates a policy, after loading the providers its members name (and only those)."""
        _load_named_providers(obj)
        return super().model_validate(obj, **kwargs)

    def group(self, name: str) -> Group:
        from quiesce.errors import UnknownGroupError

        try:
            return self.groups[name]
        except KeyError:
            raise UnknownGroupError(name, sorted(self.groups)) from None


def named_providers(data: Any) -> set[str]:
    """The providers the members of a policy's raw data name."""
    found: set[str] = set()
    groups = data.get("groups") if isinstance(data, dict) else None
    for group in groups.values() if isinstance(groups, dict) else ():
        members = group.get("members") if isinstance(group, dict) else None
        for member in members if isinstance(members, list) else ():
            provider = member.get("provider") if isinstance(member, dict) else None
            if isinstance(provider, str):
                found.add(provider)
    return found


def _load_named_providers(data: Any) -> None:
    from quiesce.providers import registry

    registry.load(named_providers(data))


def rebuild() -> None:
    """Rebuilds the models that hold members, after a provider was registered."""
    Group.model_rebuild(force=True)
    Policy.model_rebuild(force=True)


def json_schema() -> dict[str, Any]:
    """The policy's JSON Schema, with descriptions and examples."""
    from quiesce.providers import registry

    registry.specs()  # every installed provider's members
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://quiesce.dev/schemas/policy-v1.json"
    return schema
