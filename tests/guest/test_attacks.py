"""Attacks on the hook runner, performed for real by an unprivileged user created for the test.

Every test here plays the attacker of docs/security.md: a local user without privileges who can
write a shared folder (sticky, like /tmp), plant symlinks, race the runner, or whoever writes
the channel and so chooses a request. Each asserts that nothing of the attacker's ran as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Guest, wait_until

ATTACKER = "quiesce-attacker"


@pytest.fixture(scope="session")
def attacker() -> Iterator[str]:
    """An unprivileged local user, created for these tests and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating an unprivileged user needs root")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd/runuser are not installed")
    created = subprocess.run(["id", ATTACKER], capture_output=True).returncode != 0
    if created:
        subprocess.run(["useradd", "--system", "--no-create-home", ATTACKER], check=True)
    try:
        yield ATTACKER
    finally:
        if created:
            subprocess.run(["userdel", ATTACKER], check=False)


def as_user(user: str, *argv: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True, timeout=30)


@contextlib.contextmanager
def racing(user: str, script: str) -> Iterator[None]:
    """Runs the attacker's shell loop for as long as the block lasts (its whole group)."""
    proc = subprocess.Popen(
        ["runuser", "-u", user, "--", "sh", "-c", script], start_new_session=True
    )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def arena(guest: Guest) -> Iterator[Path]:
    """A folder the attacker can reach: root-owned 0755 under /tmp, with a shared sticky folder
    (mode 1777, root-owned, like /tmp itself) inside."""
    root = Path("/tmp") / f"quiesce-arena-{uuid.uuid4().hex[:10]}"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    shared = root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def evidence(arena: Path) -> Path:
    """Where the attacker's code would leave proof that it ran (as root or not)."""
    return arena / "pwned"


def assert_nothing_ran(arena: Path, result: dict[str, Any], code: str) -> None:
    assert result["status"] == "refused", result
    assert result["code"] == code, result
    assert not evidence(arena).exists(), "the attacker's code ran"


# ---- 1. symlinks and planted files on the hook path -------------------------------------------


def test_a_symlink_planted_in_a_shared_sticky_folder_is_not_followed(
    guest: Guest, arena: Path, attacker: str
) -> None:
    shared = arena / "shared"
    payload = shared / "db"
    as_user(attacker, "ln", "-s", sys.executable, str(shared / "pause.sh"))
    as_user(attacker, "sh", "-c", f"echo \"open('{evidence(arena)}', 'w')\" > {payload}")
    name = guest.declare("verify", guest.hook(shared / "pause.sh", "db"))

    for phase in ("check", "verify"):
        result = guest.run(
            {**guest.request("check", guest.hooks / "x"), "phase": phase, "hook": name}
        )
        assert_nothing_ran(arena, result, "InsufficientPermission")
        assert "symlink" in result["message"]
        assert "owned by uid" in result["message"]


def test_a_script_planted_by_another_user_in_a_shared_sticky_folder_is_refused(
    guest: Guest, arena: Path, attacker: str
) -> None:
    script = arena / "shared" / "pause.sh"
    as_user(attacker, "sh", "-c", f"printf '#!/bin/sh\\ntouch {evidence(arena)}\\n' > {script}")
    as_user(attacker, "chmod", "755", str(script))

    result = guest.run(guest.request("verify", script))

    assert_nothing_ran(arena, result, "InsufficientPermission")


def test_racing_a_symlinked_hook_folder_never_runs_the_attackers_code(
    guest: Guest, arena: Path, attacker: str
) -> None:
    safe = arena / "safe"
    evil = arena / "shared" / "evil"
    safe.mkdir(mode=0o755)
    safe.chmod(0o755)
    as_user(attacker, "mkdir", str(evil))
    for folder, body in ((safe, "true"), (evil, f"touch {evidence(arena)}")):
        if folder == evil:
            as_user(attacker, "sh", "-c", f"echo '{body}' > {folder}/common.sh")
        else:
            (folder / "common.sh").write_text(body + "\n")
    hook = safe / "pause.sh"
    hook.write_text("#!/bin/sh\n. ./common.sh\n")
    hook.chmod(0o755)
    as_user(attacker, "cp", str(hook), str(evil / "pause.sh"))
    link = arena / "shared" / "hooks"
    as_user(attacker, "ln", "-s", str(safe), str(link))
    name = guest.declare("verify", guest.hook(link / "pause.sh"))
    codes = set()
    with racing(attacker, f"while :; do ln -sfn {evil} {link}; ln -sfn {safe} {link}; done"):
        for _ in range(40):
            result = guest.run({**guest.request("verify", guest.hooks / "x"), "hook": name})
            codes.add(result["code"])

    assert not evidence(arena).exists(), "the attacker's common.sh ran as root"
    assert codes <= {"InsufficientPermission", "ScriptNotFound"}, codes


def test_a_hook_path_through_a_root_owned_symlink_still_runs(guest: Guest, arena: Path) -> None:
    script, marker = guest.marking_script("pause.sh")
    link = arena / "shared" / "pause.sh"
    link.symlink_to(script)  # root's own link in a sticky folder: nobody else can replace it

    result = guest.run(guest.request("verify", link))

    assert result["status"] == "succeeded", result
    assert marker.exists()


# ---- 2. the state folder ---------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "folder"])
def test_a_state_folder_planted_by_another_user_is_refused(
    guest: Guest, arena: Path, attacker: str, planted: str
) -> None:
    state = arena / "shared" / "state"
    own = arena / "shared" / "attackers"
    as_user(attacker, "mkdir", str(own))
    if planted == "symlink":
        as_user(attacker, "ln", "-s", str(own), str(state))
    else:
        as_user(attacker, "mkdir", str(state))
    guest.allowlist["state_dir"] = str(state)
    pre, marker = guest.marking_script("pause.sh")
    thaw, _ = guest.marking_script("resume.sh")

    result = guest.run(guest.pre(pre, thaw))

    assert result["code"] == "InsufficientPermission", result
    assert not marker.exists()
    assert os.listdir(own) == []


def test_a_thaw_written_into_the_state_file_after_the_pre_is_never_run(
    guest: Guest, arena: Path
) -> None:
    pre, _ = guest.counting_script("pause.sh")
    thaw, thaw_count = guest.counting_script("resume.sh")
    guest.run(guest.pre(pre, thaw, max_freeze_seconds=0.6))

    def plant(state: dict[str, Any]) -> None:
        state["thaw"] = {"run": ["/bin/sh", "-c", f"touch {evidence(arena)}"]}
        state["hook"] = "elsewhere"

    guest.edit_state(plant)
    assert wait_until(lambda: (guest.state() or {}).get("post") is not None, 5)

    assert guest.count(thaw_count) == 1
    assert not evidence(arena).exists()


# ---- 3. the channel cannot make the runner a root shell -----------------------------------------


@pytest.mark.parametrize(
    ("run", "code"),
    [
        (["/bin/sh", "-c", "touch {pwned}"], "InlineCode"),
        (["/bin/bash", "-ec", "touch {pwned}"], "InlineCode"),
        ([sys.executable, "-c", "open('{pwned}', 'w')"], "InlineCode"),
        ([sys.executable, "-m", "this"], "InlineCode"),
        (["/bin/sh"], "InlineCode"),
        (["/usr/bin/env", "sh", "-c", "touch {pwned}"], "InlineCode"),
        (["/usr/bin/find", "/", "-maxdepth", "0", "-exec", "touch", "{pwned}", ";"], "InlineCode"),
    ],
)
def test_declared_inline_code_and_command_runners_are_refused(
    guest: Guest, arena: Path, run: list[str], code: str
) -> None:
    argv = [arg.replace("{pwned}", str(evidence(arena))) for arg in run]

    result = guest.run(guest.request("verify", {"run": argv}))

    assert_nothing_ran(arena, result, code)


def test_an_interpreter_is_vetted_by_its_script_which_another_user_owns(
    guest: Guest, arena: Path, attacker: str
) -> None:
    script = arena / "shared" / "evil.sh"
    as_user(attacker, "sh", "-c", f"echo 'touch {evidence(arena)}' > {script}")

    result = guest.run(guest.request("verify", {"run": ["/bin/sh", str(script)]}))

    assert_nothing_ran(arena, result, "InsufficientPermission")


def test_an_interpreter_runs_the_checked_script_and_its_pin_covers_the_script(
    guest: Guest,
) -> None:
    script = guest.hooks / "check.py"
    script.write_text("print('checked')\n")
    script.chmod(0o644)
    import hashlib

    pin = hashlib.sha256(script.read_bytes()).hexdigest()

    ran = guest.run(
        guest.request("verify", {"run": [sys.executable, "-I", str(script)], "sha256": pin})
    )
    script.write_text("print('changed')\n")
    changed = guest.run(
        guest.request("verify", {"run": [sys.executable, str(script)], "sha256": pin})
    )

    assert ran["status"] == "succeeded", ran
    assert ran["output"] == "checked\n"
    assert changed["code"] == "HashMismatch"


def test_a_shebang_interpreter_another_user_controls_is_refused(
    guest: Guest, arena: Path, attacker: str
) -> None:
    interpreter = arena / "shared" / "sh"
    as_user(attacker, "cp", "/bin/sh", str(interpreter))
    script = guest.script("pause.sh", "true")
    script.write_text(f"#!{interpreter}\ntouch {evidence(arena)}\n")

    result = guest.run(guest.request("verify", script))

    assert_nothing_ran(arena, result, "InsufficientPermission")


@pytest.mark.parametrize(
    "name",
    ["BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PERL5OPT", "IFS", "PATH"],
)
def test_loader_and_shell_variables_in_a_declaration_refuse_the_allowlist(
    guest: Guest, arena: Path, name: str
) -> None:
    payload = arena / "payload.sh"
    payload.write_text(f"touch {evidence(arena)}\n")
    script = guest.script("pause.sh", "true")

    result = guest.run(guest.request("verify", guest.hook(script, env={name: str(payload)})))

    assert_nothing_ran(arena, result, "ConfigRefused")
    assert name in result["message"]


def test_the_callers_environment_never_reaches_a_hook(guest: Guest, arena: Path) -> None:
    payload = arena / "payload.sh"
    payload.write_text(f"touch {evidence(arena)}\n")
    script = guest.hooks / "pause.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    script.chmod(0o755)
    env = dict(os.environ, BASH_ENV=str(payload), ENV=str(payload))

    result = guest.run(guest.request("verify", script), env=env)

    assert result["status"] == "succeeded", result
    assert not evidence(arena).exists()


# ---- 6. smaller ones: secrets, the allowlist itself, bad input ----------------------------------


def test_secrets_come_from_root_only_files_and_never_leave_in_output(guest: Guest) -> None:
    secret = guest.root / "pg.secret"
    secret.write_text("s3cr3t-Value\n")
    secret.chmod(0o600)
    script = guest.script("pause.sh", 'echo "connecting with $PGPASSWORD"; echo done')

    result = guest.run(
        guest.request("verify", guest.hook(script, env_files={"PGPASSWORD": str(secret)}))
    )

    assert result["status"] == "succeeded", result
    assert "s3cr3t" not in json.dumps(result)
    assert result["output"] == "[redacted: PGPASSWORD]\ndone\n"


def test_a_secret_file_others_can_read_is_refused(guest: Guest) -> None:
    secret = guest.root / "pg.secret"
    secret.write_text("s3cr3t\n")
    secret.chmod(0o644)
    script, marker = guest.marking_script("pause.sh")

    result = guest.run(
        guest.request("verify", guest.hook(script, env_files={"PGPASSWORD": str(secret)}))
    )

    assert result["code"] == "InsufficientPermission"
    assert "chmod 600" in result["message"]
    assert not marker.exists()


def test_an_allowlist_another_user_can_write_or_planted_is_refused(
    guest: Guest, arena: Path, attacker: str
) -> None:
    script, marker = guest.marking_script("pause.sh")
    request = guest.request("verify", script)
    guest.config.chmod(0o666)
    writable = guest.run(request)
    guest.config.chmod(0o644)
    planted = arena / "shared" / "hooks.json"
    as_user(attacker, "sh", "-c", f"echo '{json.dumps(guest.allowlist)}' > {planted}")
    done = subprocess.run(
        [*guest.command(), "run", "--config", str(planted), "--request", json.dumps(request)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert writable["code"] == "ConfigRefused"
    assert json.loads(done.stdout)["code"] == "ConfigRefused"
    assert not marker.exists()


def test_racing_a_swapped_allowlist_never_serves_the_attackers(
    guest: Guest, arena: Path, attacker: str
) -> None:
    safe_script, _ = guest.marking_script("pause.sh")
    guest.declare("verify", safe_script)
    evil = dict(guest.allowlist)
    evil["hooks"] = {
        name: {**entry, "run": ["/bin/sh", "-c", f"touch {evidence(arena)}"]}
        for name, entry in guest.allowlist["hooks"].items()
    }
    name = next(iter(guest.allowlist["hooks"]))
    evil_file = arena / "shared" / "evil.json"
    as_user(attacker, "sh", "-c", f"echo '{json.dumps(evil)}' > {evil_file}")
    link = arena / "shared" / "config.json"
    as_user(attacker, "ln", "-s", str(guest.config), str(link))
    request = {
        "version": 2,
        "run_id": guest.run_id,
        "member": guest.member,
        "phase": "verify",
        "hook": name,
    }
    codes = set()
    swap = f"while :; do ln -sfn {evil_file} {link}; ln -sfn {guest.config} {link}; done"
    with racing(attacker, swap):
        for _ in range(40):
            done = subprocess.run(
                [*guest.command(), "run", "--config", str(link), "--request", json.dumps(request)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            codes.add(json.loads(done.stdout)["code"])

    assert not evidence(arena).exists()
    assert codes == {"ConfigRefused"}, codes


def test_a_deeply_nested_allowlist_is_refused_with_a_clear_error(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")
    request = guest.request("verify", script)
    guest.config.write_text(
        '{"version": 1, "hooks": {}, "agent": ' + "[" * 50_000 + "]" * 50_000 + "}"
    )

    result = guest.run(request)

    assert result["code"] == "ConfigRefused"
    assert str(guest.config) in result["message"]
    assert "nested" in result["message"]
    assert not marker.exists()


def test_a_post_hook_can_never_be_started_as_a_pre(guest: Guest) -> None:
    script, marker = guest.marking_script("resume.sh")
    name = guest.declare("post", script)

    result = guest.run({**guest.request("verify", script), "phase": "pre", "hook": name})

    assert result["code"] == "WrongPhase"
    assert not marker.exists()
    assert guest.state() is None
