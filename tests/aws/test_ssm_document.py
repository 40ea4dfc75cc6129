"""The Quiesce SSM documents: typed, constrained parameters, every substitution quoted, the
runner pinned by its hash — and the run-hook script executed here with parameters substituted
the way the SSM Agent substitutes them (a String verbatim, an embedded StringList as its JSON
array), against the real guest runner."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.policy.model import Hook
from quiesce.record import HookStatus
from quiesce_aws.hooks import (
    INSTALL_RUNNER_DOCUMENT,
    RUN_HOOK_DOCUMENT,
    RUNNER_INSTALL_PATH,
    SHA256_PLACEHOLDER,
    STEP_NAME,
    hook_parameters,
    load_documents,
    parameter_problems,
    parameter_rules,
    parse_result,
    render_documents,
    runner_sha256,
)

from .conftest import hook_call, machine

DANGEROUS = ["'", '"', "`", "$", "\\", "{", "}", "\n", "\r", "\x00", "\x1b"]


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return load_documents()


def script_of(doc: dict[str, Any], step: int = 0) -> str:
    return "\n".join(doc["mainSteps"][step]["inputs"]["runCommand"])


def agent_substitute(text: str, doc: dict[str, Any], sent: dict[str, list[str]]) -> str:
    """What the SSM Agent does to a string input: every {{ Name }} is replaced by the value,
    a StringList by its JSON array (Go's json.Marshal: compact, <>& escaped)."""
    for name, spec in doc["parameters"].items():
        if name not in sent and "default" not in spec:
            continue  # a required parameter this step does not use
        if spec["type"] == "StringList":
            value: Any = sent.get(name, spec.get("default", []))
            rendered = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
                rendered = rendered.replace(char, escape)
        else:
            rendered = sent[name][0] if name in sent else str(spec["default"])
        text = re.sub(r"{{\s*" + name + r"\s*}}", rendered.replace("\\", "\\\\"), text)
    return text


# ------------------------------------------------------------------------------ shape


def test_the_run_hook_document_is_schema_2_2_with_one_linux_step(docs: dict[str, Any]) -> None:
    doc = docs["run_hook"]

    assert doc["schemaVersion"] == "2.2"
    (step,) = doc["mainSteps"]
    assert step["action"] == "aws:runShellScript"
    assert step["name"] == STEP_NAME
    assert step["precondition"] == {"StringEquals": ["platformType", "Linux"]}
    assert step["inputs"]["timeoutSeconds"] == "{{ ExecutionTimeout }}"
    assert f"runner={RUNNER_INSTALL_PATH}" in script_of(doc)
    assert "run-args" in script_of(doc)


def test_every_parameter_is_constrained_by_allowed_values_or_an_anchored_pattern(
    docs: dict[str, Any],
) -> None:
    for name, spec in docs["run_hook"]["parameters"].items():
        pattern = spec.get("allowedPattern")
        assert spec.get("allowedValues") or pattern, name
        if pattern:
            assert pattern.startswith("^"), name
            assert pattern.endswith("$"), name
        if spec["type"] == "StringList":
            assert spec.get("maxItems"), name


def test_every_substitution_in_the_script_sits_between_single_quotes(docs: dict[str, Any]) -> None:
    script = script_of(docs["run_hook"])
    uses = list(re.finditer(r"{{\s*(\w+)\s*}}", script))

    assert {m.group(1) for m in uses} == set(docs["run_hook"]["parameters"]) - {"ExecutionTimeout"}
    for use in uses:
        assert script[use.start() - 1] == "'", use.group(0)
        assert script[use.end()] == "'", use.group(0)


@pytest.mark.parametrize("char", DANGEROUS, ids=repr)
def test_no_parameter_admits_quotes_dollar_backticks_backslashes_braces_or_control_characters(
    docs: dict[str, Any], char: str
) -> None:
    for name, spec in docs["run_hook"]["parameters"].items():
        pattern = spec.get("allowedPattern")
        if pattern is not None:
            assert not re.fullmatch(pattern, f"/etc/{char}x"), (name, char)
            assert not re.fullmatch(pattern, f"A=/etc/{char}x"), (name, char)
        else:
            assert not any(char in value for value in spec["allowedValues"]), name


def test_script_paths_admit_no_spaces_but_arguments_do(docs: dict[str, Any]) -> None:
    params = docs["run_hook"]["parameters"]

    assert not re.fullmatch(params["Script"]["allowedPattern"], "/etc/my hooks/pause.sh")
    assert not re.fullmatch(params["ThawScript"]["allowedPattern"], "/etc/my hooks/resume.sh")
    assert re.fullmatch(params["Args"]["allowedPattern"], "two words; and more")


def test_a_trailing_newline_cannot_slip_past_an_anchored_pattern() -> None:
    rules = parameter_rules()

    assert rules["RunId"].problems(["run-1\n"])
    assert rules["Member"].problems(["db\n"])
    assert not rules["RunId"].problems(["run-1"])


def test_rendering_pins_the_shipped_runners_hash_in_both_documents() -> None:
    rendered = render_documents()
    sha = runner_sha256()

    assert set(rendered) == {RUN_HOOK_DOCUMENT, INSTALL_RUNNER_DOCUMENT}
    for content in rendered.values():
        assert SHA256_PLACEHOLDER not in content
        assert sha in content
    run_hook = json.loads(rendered[RUN_HOOK_DOCUMENT])
    install = json.loads(rendered[INSTALL_RUNNER_DOCUMENT])
    assert f"pinned={sha}" in script_of(run_hook)
    assert install["parameters"]["Sha256"]["default"] == sha


# ------------------------------------------------------------------------------ running it


@pytest.fixture
def instance(tmp_path: Path) -> dict[str, Path]:
    """This machine as an instance: the runner installed in a private folder, hooks, state."""
    root = tmp_path / "instance"
    (root / "lib").mkdir(parents=True, mode=0o755)
    runner = root / "lib" / "quiesce_guest.py"
    shutil.copyfile(RUNNER_PATH, runner)
    runner.chmod(0o755)
    hooks = root / "hooks"
    hooks.mkdir(mode=0o755)
    echo = hooks / "echo-args.sh"
    echo.write_text("#!/bin/sh\nprintf '[%s]\\n' \"$@\"\n")
    echo.chmod(0o755)
    return {"root": root, "runner": runner, "hook": echo, "state": root / "state"}


def run_document(docs: dict[str, Any], instance: dict[str, Path], sent: dict[str, Any]) -> str:
    doc = docs["run_hook"]
    assert parameter_problems(sent) == []
    script = agent_substitute(script_of(doc), doc, sent)
    script = script.replace(RUNNER_INSTALL_PATH, str(instance["runner"]))
    path = instance["root"] / "_script.sh"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "QUIESCE_GUEST_STATE_DIR": str(instance["state"])}
    done = subprocess.run(
        ["sh", str(path)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    return done.stdout + ("\n----------ERROR-------\n" + done.stderr if done.stderr else "")


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_the_script_hands_every_argument_to_the_hook_literally(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    args = ["two words", "; touch /tmp/quiesce-pwned", "<&>|*", "ünï", "--opt=1,2", "#x", ""]
    hook = Hook(run=[str(instance["hook"]), *args], env={"MODE": "fast; slow"})
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "verify", hook=hook), "verify")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert result.status is HookStatus.SUCCEEDED, result
    assert result.output == "".join(f"[{a}]\n" for a in args)
    assert not Path("/tmp/quiesce-pwned").exists()


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_a_pre_and_a_post_run_through_the_document_and_the_watchdog_is_stopped(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    hook = Hook(run=[str(instance["hook"]), "pause"])
    thaw = Hook(run=[str(instance["hook"]), "resume"])
    call = hook_call(machine("i-0abc12345"), "pre", hook=hook, thaw=thaw, run_id="doc-run-1")
    post = hook_call(machine("i-0abc12345"), "post", hook=thaw, run_id="doc-run-1")

    held = parse_result(run_document(docs, instance, hook_parameters(call, "pre")))
    thawed = parse_result(run_document(docs, instance, hook_parameters(post, "post")))

    assert held is not None
    assert held.code == "Succeeded", held
    assert thawed is not None
    assert thawed.code == "Succeeded", thawed
    assert thawed.by == "orchestrator"
    state = json.loads((instance["state"] / "runs" / "doc-run-1--db.json").read_text())
    assert state["watchdog_stopped_at"] is not None


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_a_runner_that_is_not_the_pinned_version_is_refused_before_anything_runs(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    with open(instance["runner"], "a") as runner:
        runner.write("\n# changed\n")
    marker = instance["root"] / "ran"
    hook_file = instance["root"] / "hooks" / "mark.sh"
    hook_file.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook_file.chmod(0o755)
    sent = hook_parameters(
        hook_call(machine("i-0abc12345"), "verify", hook=Hook(run=[str(hook_file)])), "verify"
    )

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "RunnerHashMismatch")
    assert not marker.exists()


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_a_missing_runner_is_reported_as_runner_missing(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    instance["runner"].unlink()
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "post"), "post")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "RunnerMissing")
    assert "Quiesce-InstallRunner" in result.message


# ------------------------------------------------------------------------------ installing


def test_the_install_document_downloads_then_checks_the_pinned_hash(docs: dict[str, Any]) -> None:
    doc = docs["install_runner"]
    download, install = doc["mainSteps"]

    assert doc["schemaVersion"] == "2.2"
    assert download["action"] == "aws:downloadContent"
    assert download["inputs"]["sourceType"] == "S3"
    assert install["action"] == "aws:runShellScript"
    assert re.fullmatch(
        doc["parameters"]["SourceUrl"]["allowedPattern"],
        "https://my-bucket.s3.eu-central-1.amazonaws.com/quiesce/0.1.0/quiesce_guest.py",
    )
    assert not re.fullmatch(
        doc["parameters"]["SourceUrl"]["allowedPattern"], "https://example.com/quiesce_guest.py"
    )


def _install(docs: dict[str, Any], root: Path, sha: str) -> subprocess.CompletedProcess[str]:
    doc = docs["install_runner"]
    script = agent_substitute(script_of(doc, 1), doc, {"Sha256": [sha]})
    script = script.replace("/usr/local/lib/quiesce", str(root / "lib"))
    script = script.replace("/var/lib/quiesce", str(root / "state"))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root")
def test_the_install_script_installs_the_pinned_runner_root_owned(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    incoming = tmp_path / "lib" / ".incoming"
    incoming.mkdir(parents=True)
    shutil.copyfile(RUNNER_PATH, incoming / "quiesce_guest.py")

    done = _install(docs, tmp_path, runner_sha256())

    assert done.returncode == 0, done.stderr
    installed = tmp_path / "lib" / "quiesce_guest.py"
    assert installed.read_bytes() == RUNNER_PATH.read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o755
    assert installed.stat().st_uid == 0
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert not incoming.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root")
def test_the_install_script_refuses_a_download_that_is_not_the_pinned_runner(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    incoming = tmp_path / "lib" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "quiesce_guest.py").write_text("print('not the runner')\n")

    done = _install(docs, tmp_path, runner_sha256())

    assert done.returncode == 1
    assert "not installed" in done.stderr
    assert not (tmp_path / "lib" / "quiesce_guest.py").exists()
