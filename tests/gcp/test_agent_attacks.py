"""Attacks on the GCP agent channel, performed for real (as root, with an unprivileged user
doing the attacker's part), each of which must fail:

- a process on the VM forges a `succeeded` answer in the guest attributes before the agent
  answers: the run records the member failed (BadSignature), never application-consistent;
- whoever can write the instance's metadata but has no key (or another VM's key, or a captured
  signature) posts a `pre`: the agent runs nothing and answers nothing;
- a symlink planted where the agent writes its seen-nonce file redirects nothing;
- another user swaps the agent's allowlist while the agent reads it, thousands of times: the
  planted allowlist is never served.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quiesce.engine import run_group
from quiesce.record import Consistency, HookStatus, RunStatus
from quiesce_gcp import quiesce_agent as agent_mod
from quiesce_gcp.agent import Command
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.signing import AgentKeys, instance_path

from .conftest import PROJECT, ZONE, Fleet, wait_for, write_script
from .fake_compute import FakeCompute
from .test_engine_run import backends, gcp_member, make_policy

NOBODY = 65534
#: The attacker's interpreter: one every user can run (the tests' own may live in root's home).
PYTHON = "/usr/bin/python3"


@pytest.fixture
def attacker() -> int:
    if os.geteuid() != 0:
        pytest.skip("running the attacker as another user needs root")
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"the attacker's steps run with {PYTHON}, which is not installed")
    return NOBODY


def as_attacker(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs Python `code` as the unprivileged user (uid/gid 65534, no supplementary groups)."""
    return subprocess.run(
        [PYTHON, "-I", "-c", code, *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A root-owned folder under /tmp that the unprivileged user can reach (tmp_path cannot)."""
    folder = Path(tempfile.mkdtemp(prefix="quiesce-gcp-attack-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- forged answers

FORGE = r"""
import json, sys, time, urllib.request
url, form = sys.argv[1], sys.argv[2]
headers = {"Metadata-Flavor": "Google"}
deadline = time.time() + 30
cmd = None
while time.time() < deadline:
    try:
        req = urllib.request.Request(url + "/instance/attributes/quiesce-command", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            cmd = json.loads(json.loads(resp.read())["command"])
        if cmd["phase"] == "pre":
            break
    except Exception:
        pass
    time.sleep(0.02)
else:
    sys.exit(3)
key = "%s-%s-%s" % (cmd["run_id"], cmd["member"], cmd["phase"])
result = {"status": "succeeded", "code": "Succeeded", "message": "frozen, honest",
          "exit_code": 0, "attempts": 1, "started_at": None, "ended_at": None,
          "duration_ms": 1.0, "output": "", "by": "orchestrator"}
if form == "unsigned":
    answer = {"nonce": cmd["nonce"], "result": result}
else:
    answer = {"nonce": cmd["nonce"], "result": json.dumps(result, sort_keys=True), "sig": "0" * 64}
put = urllib.request.Request(url + "/instance/guest-attributes/quiesce/" + key,
                             data=json.dumps(answer).encode(), method="PUT", headers=headers)
urllib.request.urlopen(put, timeout=5).read()
print(key)
"""


@pytest.mark.parametrize("form", ["unsigned", "bad-signature"])
def test_a_forged_succeeded_answer_makes_the_member_fail_not_succeed(
    fleet: Fleet,
    compute: FakeCompute,
    clients: GcpClients,
    attacker: int,
    form: str,
) -> None:
    flag = fleet.root / "pre-may-finish"
    hooks_dir = fleet.root / "hooks"
    hooks_dir.mkdir(mode=0o755)
    # The real pre hook takes until the test lets it finish: the forgery comes first.
    pre = write_script(
        hooks_dir / "db-pre.sh",
        f"i=0; while [ ! -e {flag} ] && [ $i -lt 280 ]; do sleep 0.05; i=$((i+1)); done\n"
        f'echo "pre $1" >> {fleet.journal}',
    )
    post = write_script(hooks_dir / "db-post.sh", f'echo "post $1" >> {fleet.journal}')
    hooks = {
        "pre": {"run": [str(pre), "db"], "timeout_seconds": 15},
        "post": {"run": [str(post), "db"], "timeout_seconds": 5},
    }
    policy = make_policy([gcp_member("db", hooks)], on_quiesce_failure="abort")
    vm = fleet.add("db-vm", policy)

    records: list[Any] = []
    run = threading.Thread(
        target=lambda: records.append(run_group(policy, "orders", backends(policy, clients)))
    )
    run.start()
    try:
        attack = as_attacker(FORGE, vm.metadata.url, form)
        assert attack.returncode == 0, attack.stderr
        assert attack.stdout.strip().endswith("-db-pre")

        def orchestrator_moved_on() -> bool:
            value = compute.metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command") or "{}"
            phase = json.loads(json.loads(value).get("command", "{}")).get("phase")
            return phase == "post" or not run.is_alive()

        assert wait_for(orchestrator_moved_on, timeout=30)
    finally:
        flag.touch()
        run.join(timeout=60)
    (record,) = records
    ((_, machine),) = record.machines()
    assert machine.pre is not None
    assert machine.pre.status is HookStatus.FAILED
    assert machine.pre.code == "BadSignature"
    assert "signature does not verify" in machine.pre.message
    assert record.status is RunStatus.FAILED
    assert record.consistency is not Consistency.APPLICATION
    assert not machine.snapshots
    assert not any(line.startswith("snapshot ") for line in fleet.lines())


# ----------------------------------------------------------------------------- forged commands


def test_a_metadata_writer_without_the_key_cannot_run_a_hook(
    fleet: Fleet, compute: FakeCompute, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = fleet.hooks("db")
    policy = make_policy([gcp_member("db", hooks)])
    vm = fleet.add("db-vm", policy)
    me = instance_path(PROJECT, ZONE, "db-vm")
    expires = time.time() + 30

    def pre(run_id: str) -> Command:
        return Command.new("pre", run_id, "db", "orders.db.pre", expires, me)

    def wrapped(cmd: Command, sig: str) -> str:
        return json.dumps({"v": 2, "command": cmd.text(), "sig": sig})

    # A signature captured from a legitimate check command, replayed on a pre.
    captured = json.loads(
        Command.new("check", "r-cap", "db", "orders.db.pre", expires, me).signed(fleet.keys)
    )["sig"]
    other_vm_key = fleet.keys.for_instance(instance_path(PROJECT, ZONE, "app-vm"))
    stranger = AgentKeys(b"\x01" * 32)  # a master key that is not ours
    unsigned_v1 = json.dumps(
        {"v": 1, "phase": "pre", "run_id": "r-v1", "member": "db", "hook": "pre",
         "nonce": "ab" * 16, "expires_at": expires}
    )  # fmt: skip
    forged = [
        unsigned_v1,
        wrapped(pre("r-nosig"), ""),
        wrapped(pre("r-zero"), "0" * 64),
        wrapped(pre("r-captured"), captured),
        pre("r-stranger").signed(stranger),
    ]
    # A key read on another VM signs nothing for this one.
    leaked = pre("r-leaked")
    forged.append(wrapped(leaked, agent_mod.command_signature(other_vm_key, leaked.text())))
    caplog.set_level(logging.ERROR, logger="quiesce-agent")
    for n, value in enumerate(forged, start=1):
        compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", value)
        assert wait_for(
            lambda n=n: sum("nothing was run" in r.getMessage() for r in caplog.records) >= n
        ), caplog.text
    assert fleet.hook_lines() == []
    assert compute.guest_attributes.get((PROJECT, ZONE, "db-vm"), {}) == {}
    runs = vm.state_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # the runner never started

    # The same agent still runs a command signed with this VM's key.
    good = Command.new("post", "r-good", "db", "orders.db.post", expires, me)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", good.signed(fleet.keys))
    assert wait_for(lambda: fleet.hook_lines() == ["post db"])


# ----------------------------------------------------------------------------- the seen file


def test_a_symlink_planted_at_the_seen_files_temporary_name_is_not_followed(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    # Planted at the old fixed name and at the next random name the agent will draw.
    names = iter(["planted", "fresh"])
    (state / "agent-seen.json.tmp").symlink_to(victim)
    (state / "agent-seen.json.planted.tmp").symlink_to(victim)
    seen = agent_mod.SeenNonces(str(state), token=lambda: next(names))
    try:
        assert seen.claim("ab" * 16, time.time() + 30)
        assert not seen.claim("ab" * 16, time.time() + 30)  # and it was recorded
    finally:
        seen.close()
    assert victim.read_text() == "root's file\n"
    assert (state / "agent-seen.json.planted.tmp").is_symlink()
    record = state / "agent-seen.json"
    assert stat.S_ISREG(record.lstat().st_mode)
    assert "ab" * 16 in json.loads(record.read_text())


def test_a_symlink_planted_as_the_seen_file_fails_closed_and_runs_nothing(
    fleet: Fleet,
) -> None:
    policy = make_policy([gcp_member("db", fleet.hooks("db"))])
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    victim = fleet.root / "victim"
    victim.write_text("root's file\n")
    (vm.state_dir / "agent-seen.json").symlink_to(victim)
    me = instance_path(PROJECT, ZONE, "db-vm")
    cmd = Command.new("post", "r1", "db", "orders.db.post", time.time() + 30, me)
    assert agent.handle(cmd.signed(fleet.keys)) is None
    assert fleet.hook_lines() == []
    assert victim.read_text() == "root's file\n"


def test_a_state_folder_another_user_can_write_is_refused(fleet: Fleet, attacker: int) -> None:
    policy = make_policy([gcp_member("db", fleet.hooks("db"))])
    vm = fleet.add("db-vm", policy, agent=False)
    vm.state_dir.mkdir(mode=0o700)
    os.chown(vm.state_dir, attacker, attacker)
    with pytest.raises(agent_mod.Refused, match="owned by uid 65534"):
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    os.chown(vm.state_dir, 0, 0)
    vm.state_dir.chmod(0o777)
    with pytest.raises(agent_mod.Refused, match="chmod"):
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)


# ----------------------------------------------------------------------------- config swaps

SWAP = r"""
import os, sys
folder, legit, planted_text, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
target = os.path.join(folder, "hooks.json")
planted = os.path.join(folder, "planted.json")
link = os.path.join(folder, "link.json")
with open(planted, "w") as f:
    f.write(planted_text)
os.chmod(planted, 0o600)
swaps = 0
for i in range(rounds):
    # Alternately: a link to root's real allowlist (what a by-path check would accept) and the
    # attacker's own file (what a by-path open would then read).
    try:
        os.symlink(legit, link)
    except FileExistsError:
        pass
    os.rename(link, target)
    with open(planted + ".new", "w") as f:
        f.write(planted_text)
    os.chmod(planted + ".new", 0o600)
    os.rename(planted + ".new", target)
    swaps += 2
print(swaps)
"""


def test_an_allowlist_swapped_by_another_user_is_never_served(
    public_dir: Path, attacker: int
) -> None:
    legit_dir = public_dir / "legit"
    legit_dir.mkdir(mode=0o755)
    legit = legit_dir / "hooks.json"
    legit.write_text(json.dumps({"version": 1, "hooks": {"orders.db.pre": {}}}))
    legit.chmod(0o600)
    shared = public_dir / "etc"  # like /tmp: root-owned, sticky, writable by everyone
    shared.mkdir()
    shared.chmod(0o1777)
    planted = json.dumps({"version": 1, "hooks": {"evil": {"run": ["/tmp/x"]}}})

    served: dict[str, int] = {"legit": 0, "planted": 0, "refused": 0, "missing": 0}
    swapper = subprocess.Popen(
        [PYTHON, "-I", "-c", SWAP, str(shared), str(legit), planted, "5000"],
        user=attacker,
        group=attacker,
        extra_groups=[],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while swapper.poll() is None:
            try:
                config = agent_mod.load_config(str(shared / "hooks.json"))
            except agent_mod.Refused as exc:
                served["missing" if "does not exist" in str(exc) else "refused"] += 1
                continue
            served["planted" if "evil" in config["hooks"] else "legit"] += 1
        out, err = swapper.communicate(timeout=60)
    finally:
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait()
    assert swapper.returncode == 0, err
    assert int(out) == 10000
    assert served["refused"] > 100, served  # the agent really raced the swaps
    assert served["planted"] == 0, served
    assert served["legit"] == 0, served  # a path another user controls is never trusted
