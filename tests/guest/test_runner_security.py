"""The runner's security checks: a refused hook is never executed, and says how to fix it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from typing import Any

import pytest

from .conftest import Guest, processes_of


def assert_refused(result: dict[str, Any], code: str, *fix: str) -> None:
    assert result["status"] == "refused", result
    assert result["code"] == code, result
    assert result["attempts"] == 0
    assert result["exit_code"] is None
    for text in fix:
        assert text in result["message"], result["message"]


def test_an_acceptable_hook_passes_the_check_without_being_executed(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")

    result = guest.run(guest.request("check", script))

    assert result["status"] == "succeeded"
    assert result["code"] == "Allowed"
    assert not marker.exists()


def test_a_relative_script_path_is_refused_as_not_absolute_and_never_executed(
    guest: Guest,
) -> None:
    script, marker = guest.marking_script("pause.sh")
    relative = os.path.relpath(script)

    result = guest.run(guest.request("verify", guest.hook(relative)))

    assert_refused(result, "ConfigRefused", "absolute path", str(guest.config))
    assert not marker.exists()


def test_a_missing_script_is_refused_as_script_not_found(guest: Guest) -> None:
    result = guest.run(guest.request("verify", guest.hooks / "missing.sh"))

    assert_refused(result, "ScriptNotFound", str(guest.hooks / "missing.sh"))


def test_a_dangling_symlink_is_refused_as_script_not_found(guest: Guest) -> None:
    link = guest.hooks / "dangling.sh"
    link.symlink_to(guest.hooks / "nowhere.sh")

    result = guest.run(guest.request("verify", link))

    assert_refused(result, "ScriptNotFound")


def test_a_folder_is_refused_as_not_a_regular_file(guest: Guest) -> None:
    folder = guest.hooks / "pause.d"
    folder.mkdir(mode=0o755)

    result = guest.run(guest.request("verify", folder))

    assert_refused(result, "NotARegularFile", "regular file")


def test_a_fifo_is_refused_as_not_a_regular_file_without_blocking(guest: Guest) -> None:
    fifo = guest.hooks / "pause.fifo"
    os.mkfifo(fifo, 0o755)

    result = guest.run(guest.request("verify", fifo))

    assert_refused(result, "NotARegularFile")


def test_a_script_owned_by_another_user_is_refused_and_never_executed(
    guest: Guest, another_uid: int
) -> None:
    script, marker = guest.marking_script("pause.sh")
    os.chown(script, another_uid, 0)

    result = guest.run(guest.request("verify", script))

    assert_refused(
        result, "InsufficientPermission", f"uid {another_uid}", f"chown root:root {script}"
    )
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group", "world"])
def test_a_group_or_world_writable_script_is_refused_and_never_executed(
    guest: Guest, mode: int
) -> None:
    script, marker = guest.marking_script("pause.sh", mode=mode)

    result = guest.run(guest.request("verify", script))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {script}")
    assert not marker.exists()


@pytest.mark.parametrize("phase", ["check", "verify", "pre", "post"])
def test_a_world_writable_script_is_refused_in_every_phase_and_never_executed(
    guest: Guest, phase: str
) -> None:
    script, marker = guest.marking_script("pause.sh", mode=0o777)
    thaw, thaw_marker = guest.marking_script("resume.sh")
    request = guest.pre(script, thaw) if phase == "pre" else guest.request(phase, script)

    result = guest.run(request)

    assert_refused(result, "InsufficientPermission", f"chmod go-w {script}")
    assert not marker.exists()
    assert not thaw_marker.exists()


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group", "world"])
def test_a_script_in_a_group_or_world_writable_folder_is_refused_and_never_executed(
    guest: Guest, mode: int
) -> None:
    folder = guest.hooks / "shared"
    folder.mkdir()
    folder.chmod(mode)
    script, marker = guest.marking_script("pause.sh", folder=folder)

    result = guest.run(guest.request("verify", script))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {folder}")
    assert not marker.exists()


def test_a_writable_grandparent_folder_is_refused_too(guest: Guest) -> None:
    outer = guest.hooks / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o777)
    inner.chmod(0o755)
    script, marker = guest.marking_script("pause.sh", folder=inner)

    result = guest.run(guest.request("verify", script))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {outer}")
    assert not marker.exists()


def test_a_script_in_a_folder_owned_by_another_user_is_refused_and_never_executed(
    guest: Guest, another_uid: int
) -> None:
    folder = guest.hooks / "theirs"
    folder.mkdir(mode=0o755)
    script, marker = guest.marking_script("pause.sh", folder=folder)
    os.chown(folder, another_uid, 0)

    result = guest.run(guest.request("verify", script))

    assert_refused(
        result, "InsufficientPermission", f"uid {another_uid}", f"chown root:root {folder}"
    )
    assert not marker.exists()


def test_a_root_owned_sticky_folder_like_tmp_is_accepted(guest: Guest) -> None:
    folder = guest.hooks / "sticky"
    folder.mkdir()
    folder.chmod(0o1777)
    script, marker = guest.marking_script("pause.sh", folder=folder)

    result = guest.run(guest.request("verify", script))

    assert result["status"] == "succeeded", result
    assert marker.exists()


def test_a_sticky_folder_owned_by_another_user_is_refused(guest: Guest, another_uid: int) -> None:
    folder = guest.hooks / "sticky"
    folder.mkdir()
    folder.chmod(0o1777)
    os.chown(folder, another_uid, 0)
    script, marker = guest.marking_script("pause.sh", folder=folder)

    result = guest.run(guest.request("verify", script))

    assert_refused(result, "InsufficientPermission", str(folder))
    assert not marker.exists()


def test_a_symlink_to_a_safe_script_runs_the_real_script(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")
    link = guest.hooks / "pause-link.sh"
    link.symlink_to(script)

    result = guest.run(guest.request("verify", link))

    assert result["status"] == "succeeded", result
    assert marker.exists()


def test_a_symlink_is_vetted_by_its_target_so_a_writable_target_is_refused(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh", mode=0o777)
    link = guest.hooks / "pause-link.sh"
    link.symlink_to(script)

    result = guest.run(guest.request("verify", link))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {script}")
    assert not marker.exists()


def test_a_symlink_in_a_writable_folder_is_refused_even_if_its_target_is_safe(
    guest: Guest,
) -> None:
    script, marker = guest.marking_script("pause.sh")
    shared = guest.hooks / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    link = shared / "pause.sh"
    link.symlink_to(script)

    result = guest.run(guest.request("verify", link))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {shared}")
    assert not marker.exists()


def test_a_script_not_executable_by_its_owner_is_refused_as_not_executable(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh", mode=0o644)

    result = guest.run(guest.request("verify", script))

    assert_refused(result, "NotExecutable", f"chmod u+x {script}")
    assert not marker.exists()


def test_checks_run_in_order_so_the_first_failing_one_is_reported(guest: Guest) -> None:
    writable_and_not_executable, marker = guest.marking_script("pause.sh", mode=0o666)

    result = guest.run(guest.request("verify", writable_and_not_executable))

    assert_refused(result, "InsufficientPermission")
    assert not marker.exists()


def test_a_matching_sha256_pin_lets_the_hook_run(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")
    digest = hashlib.sha256(script.read_bytes()).hexdigest()

    result = guest.run(guest.request("verify", guest.hook(script, sha256=digest)))

    assert result["status"] == "succeeded", result
    assert marker.exists()


def test_a_sha256_mismatch_is_refused_showing_expected_and_actual_and_never_executed(
    guest: Guest,
) -> None:
    script, marker = guest.marking_script("pause.sh")
    actual = hashlib.sha256(script.read_bytes()).hexdigest()
    pinned = hashlib.sha256(b"the script as it was reviewed").hexdigest()

    result = guest.run(guest.request("verify", guest.hook(script, sha256=pinned)))

    assert_refused(result, "HashMismatch", pinned, actual, f"sha256sum {script}")
    assert not marker.exists()


def test_a_pre_whose_thaw_hook_is_refused_is_refused_and_arms_nothing(guest: Guest) -> None:
    pre, pre_marker = guest.marking_script("pause.sh")
    thaw, thaw_marker = guest.marking_script("resume.sh", mode=0o777)

    result = guest.run(guest.pre(pre, thaw))

    assert_refused(result, "ThawHookRefused", "InsufficientPermission", f"chmod go-w {thaw}")
    assert not pre_marker.exists()
    assert not thaw_marker.exists()
    assert guest.state() is None
    assert processes_of(guest.run_id) == []


def test_a_missing_thaw_hook_refuses_the_pre(guest: Guest) -> None:
    pre, pre_marker = guest.marking_script("pause.sh")

    result = guest.run(guest.pre(pre, guest.hooks / "resume.sh"))

    assert_refused(result, "ThawHookRefused", "ScriptNotFound")
    assert not pre_marker.exists()


def test_the_check_phase_vets_the_thaw_hook_when_given(guest: Guest) -> None:
    pre, _ = guest.marking_script("pause.sh")
    thaw, _ = guest.marking_script("resume.sh", mode=0o646)

    result = guest.run(guest.request("check", pre, thaw=guest.hook(thaw)))

    assert_refused(result, "ThawHookRefused")


def test_a_state_folder_writable_by_others_is_refused_before_anything_runs(guest: Guest) -> None:
    guest.state_dir.mkdir()
    guest.state_dir.chmod(0o777)
    pre, pre_marker = guest.marking_script("pause.sh")
    thaw, _ = guest.marking_script("resume.sh")

    result = guest.run(guest.pre(pre, thaw))

    assert_refused(result, "InsufficientPermission", f"chmod go-w {guest.state_dir}")
    assert not pre_marker.exists()


def test_state_folders_are_created_private(guest: Guest) -> None:
    pre, _ = guest.marking_script("pause.sh")
    post, _ = guest.marking_script("resume.sh")

    guest.run(guest.pre(pre, post))

    for folder in (guest.state_dir, guest.state_dir / "runs"):
        assert folder.stat().st_mode & 0o777 == 0o700


def test_a_stale_request_is_refused_and_never_executed(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")

    result = guest.run(guest.request("verify", script, expires_at=time.time() - 1))

    assert_refused(result, "Stale", "clock")
    assert not marker.exists()


def test_a_request_that_has_not_expired_yet_runs(guest: Guest) -> None:
    script, marker = guest.marking_script("pause.sh")

    result = guest.run(guest.request("verify", script, expires_at=time.time() + 60))

    assert result["status"] == "succeeded", result
    assert marker.exists()


def _without(request: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != name}


@pytest.mark.parametrize(
    ("mangle", "field"),
    [
        (lambda r: "{not json", "request"),
        (lambda r: _without(r, "run_id"), "run_id"),
        (lambda r: {**r, "run_id": "../../etc/passwd"}, "run_id"),
        (lambda r: {**r, "member": "DB"}, "member"),
        (lambda r: {**r, "phase": "freeze"}, "phase"),
        (lambda r: {**r, "version": 1}, "version"),
        (lambda r: {**r, "hook": {"run": ["/bin/sh", "-c", "id"]}}, "hook"),
        (lambda r: {**r, "hook": "../etc/passwd"}, "hook"),
        (lambda r: _without(r, "hook"), "hook"),
        (lambda r: {**r, "thaw": "db.post.1"}, "thaw"),
        (lambda r: {**r, "state_dir": "/tmp/elsewhere"}, "state_dir"),
        (lambda r: {**r, "restore_path": "/restore"}, "restore_path"),
        (lambda r: {**r, "surprise": True}, "surprise"),
        (lambda r: json.dumps(r)[:-1] + ', "x": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested"),
        (lambda r: {**r, "x": [[[[[[[[[[1]]]]]]]]]]}, "nested"),
        (lambda r: {**r, "run_id": "r" * 70_000}, "larger than"),
    ],
)
def test_a_malformed_request_exits_2_with_bad_request_naming_the_field(
    guest: Guest, mangle: Any, field: str
) -> None:
    pre, pre_marker = guest.marking_script("pause.sh")
    thaw, _ = guest.marking_script("resume.sh")
    mangled = mangle(guest.pre(pre, thaw))

    result = guest.run(mangled if isinstance(mangled, str) else json.dumps(mangled), expect_rc=2)

    assert_refused(result, "BadRequest", field)
    assert not pre_marker.exists()
    assert guest.state() is None


def test_a_bad_command_line_exits_2_with_bad_request(guest: Guest) -> None:
    done = subprocess.run(
        [*guest.run_command(), "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert_refused(json.loads(done.stdout), "BadRequest", "--no-such-option")


def test_the_request_can_come_from_a_file_or_from_stdin(guest: Guest) -> None:
    script, _ = guest.marking_script("pause.sh")
    request = json.dumps(guest.request("check", script))
    request_file = guest.root / "request.json"
    request_file.write_text(request)

    for extra, stdin in ((["--request-file", str(request_file)], None), ([], request)):
        done = subprocess.run(
            [*guest.run_command(), *extra],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["code"] == "Allowed"
