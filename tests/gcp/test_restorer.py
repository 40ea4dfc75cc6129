"""GceRestorer against the fake Compute API: copies launched from a machine's snapshots into an
isolated subnetwork, their real guest agent (booted from the disk copy: the original's
allowlist and key) answering, verify hooks through the agent channel, an inspection instance,
and cleanup by label with nothing left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce.policy.model import Policy
from quiesce.policy.recovery import RestoreSite
from quiesce.ports import HookCall, Machine, MachineRestore, SnapshotCall
from quiesce.record import HookStatus, SnapshotRef
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.member import GcpMember
from quiesce_gcp.restorer import GceRestorer, restored_name
from quiesce_gcp.signing import KEY_OF, AgentKeys
from quiesce_gcp.snapshots import GceSnapshotter

from .conftest import MASTER_KEY, PROJECT, ZONE, Fleet, write_script
from .fake_compute import FakeCompute
from .restore_fixtures import Booter, booter, everything, restore_resources

__all__ = ["booter"]

SUBNET = f"projects/{PROJECT}/regions/europe-west1/subnetworks/isolated"
LABEL = "drill-20261202t040000z-abc123"


def verify_hooks(fleet: Fleet, member: str, *, fail: bool = False) -> dict[str, Any]:
    folder = fleet.root / "hooks"
    folder.mkdir(mode=0o755, exist_ok=True)
    body = f'echo "verify $1 $2" >> {fleet.journal}' + ("\nexit 3" if fail else "")
    script = write_script(folder / f"{member}-verify.sh", body)
    return {**fleet.hooks(member), "verify": {"run": [str(script), member], "timeout_seconds": 5}}


def policy_of(fleet: Fleet, *, fail_verify: bool = False) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "restore": {"network": "isolated", "security_groups": ["quiesce-isolated"]},
                    "members": [
                        {
                            "name": "db",
                            "provider": "gcp",
                            "project": PROJECT,
                            "zone": ZONE,
                            "select": {"instances": ["db-vm"]},
                            "hooks": verify_hooks(fleet, "db", fail=fail_verify),
                        }
                    ],
                }
            },
        }
    )


def runner(clients: GcpClients) -> AgentHookRunner:
    return AgentHookRunner(clients, keys=AgentKeys.from_hex(MASTER_KEY), poll_interval=0.05)


def restorer(clients: GcpClients, **kw: Any) -> GceRestorer:
    return GceRestorer(clients, runner(clients), projects=[PROJECT], poll_interval=0.02, **kw)


def snapshots_of(fleet: Fleet, clients: GcpClients, name: str = "db-vm") -> list[SnapshotRef]:
    """Completed snapshots of the VM's disks (boot first), as a backup leaves them."""
    inst = fleet.compute.instances[(PROJECT, ZONE, name)]
    machine = Machine(
        "gcp", "db", name, tuple(d["source"] for d in inst["disks"]), {"project": PROJECT}
    )
    spec = member(name)
    call = SnapshotCall("20261202T040000Z-ABC123", "shop", "orders", "db", machine, "rp-1",
                        "application", spec=spec)  # fmt: skip
    snapper = GceSnapshotter(clients, poll_interval=0.0, fixed_when={"READY"})
    return snapper.take(call)


def member(name: str = "db-vm") -> GcpMember:
    return GcpMember.model_validate(
        {"name": "db", "provider": "gcp", "project": PROJECT, "zone": ZONE,
         "select": {"instances": [name]}}
    )  # fmt: skip


def request(refs: list[SnapshotRef], site: RestoreSite | None = None, **kw: Any) -> MachineRestore:
    return MachineRestore(
        point="rp-1",
        member="db",
        machine_id="db-vm",
        snapshots=tuple(refs),
        label=kw.pop("label", LABEL),
        site=site or RestoreSite(network="isolated", security_groups=["quiesce-isolated"]),
        spec=member(),
        **kw,
    )


def verify_call(fleet: Fleet, policy: Policy, machine: Machine, mounts: list[str]) -> HookCall:
    spec = policy.groups["orders"].members[0]
    assert spec.hooks.verify is not None
    return HookCall(LABEL, "shop", "orders", "db", machine, "verify", spec.hooks.verify,
                    extra_args=tuple(mounts), spec=spec)  # fmt: skip


def test_a_copy_is_launched_isolated_answers_with_the_originals_key_runs_verify_and_is_cleaned_up(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy = policy_of(fleet)
    fleet.add("db-vm", policy, data_disks=1)
    refs = snapshots_of(fleet, clients)
    before = everything(compute)
    gce = restorer(clients)

    restored = gce.launch(request(refs))

    name = restored_name(LABEL, "db-vm")
    assert restored.machine.machine_id == name
    inst = compute.instances[(PROJECT, ZONE, name)]
    assert inst["machineType"].endswith(f"/zones/{ZONE}/machineTypes/e2-standard-2")
    assert inst["networkInterfaces"] == [{"subnetwork": SUBNET}]  # no accessConfigs: no IP
    assert inst["tags"] == {"items": ["quiesce-isolated"]}
    assert inst["serviceAccounts"] == []
    assert inst["labels"] == {"quiesce-restore": LABEL, "quiesce-restore-of": "db-vm"}
    assert {"key": "enable-guest-attributes", "value": "TRUE"} in inst["metadata"]["items"]
    devices = [(d["deviceName"], d["boot"]) for d in inst["disks"]]
    assert devices == [("db-vm-boot", True), ("db-vm-data1", False)]
    for d in inst["disks"]:
        disk = compute.disks[(PROJECT, ZONE, d["source"].rsplit("/", 1)[1])]
        assert disk["sourceSnapshot"].startswith(f"projects/{PROJECT}/global/snapshots/q-")
        assert disk["labels"]["quiesce-restore"] == LABEL
    assert restored.created == [
        *sorted(f"projects/{PROJECT}/zones/{ZONE}/disks/{d['source'].rsplit('/', 1)[1]}"
                for d in inst["disks"]),
        f"projects/{PROJECT}/zones/{ZONE}/instances/{name}",
    ] or set(restored.created) == {  # disks are inserted concurrently
        *(f"projects/{PROJECT}/zones/{ZONE}/disks/{d['source'].rsplit('/', 1)[1]}"
          for d in inst["disks"]),
        f"projects/{PROJECT}/zones/{ZONE}/instances/{name}",
    }  # fmt: skip
    assert restored.mounts == {
        refs[0].volume: "/dev/disk/by-id/google-db-vm-boot",
        refs[1].volume: "/dev/disk/by-id/google-db-vm-data1",
    }
    assert restored.machine.attributes[KEY_OF] == f"projects/{PROJECT}/zones/{ZONE}/instances/db-vm"

    gce.wait_ready(restored, timeout=30)
    assert name in booter.booted

    result = runner(clients).run(
        verify_call(fleet, policy, restored.machine, list(restored.mounts.values()))
    )
    assert result.status is HookStatus.SUCCEEDED, result.message
    # The agent channel carries references to declared hooks, never arguments: the hook runs
    # as declared (the copy keeps the original's device names, so its paths hold there).
    assert "verify db " in fleet.lines()
    assert f"answer {name} {LABEL}-db-verify" in fleet.lines()
    # The command named the copy; the original never saw one.
    assert compute.metadata_value(PROJECT, ZONE, name, "quiesce-command")
    assert compute.metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command") is None

    done = gce.cleanup(LABEL, [None])
    assert done.left == []
    assert sorted(done.deleted) == sorted(restored.created)
    assert restore_resources(compute) == []
    assert everything(compute) == before


def test_a_failed_verify_on_the_copy_is_a_failed_result(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy = policy_of(fleet, fail_verify=True)
    fleet.add("db-vm", policy)
    gce = restorer(clients)
    restored = gce.launch(request(snapshots_of(fleet, clients)))
    gce.wait_ready(restored, timeout=30)
    result = runner(clients).run(verify_call(fleet, policy, restored.machine, []))
    assert result.status is HookStatus.FAILED
    assert result.exit_code == 3
    assert gce.cleanup(LABEL, [None]).left == []
    assert restore_resources(compute) == []


def test_a_copy_holding_another_key_is_refused_not_trusted(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    fleet.add("db-vm", policy_of(fleet))
    booter.other_key["db-vm"] = "7a" * 32
    gce = restorer(clients)
    restored = gce.launch(request(snapshots_of(fleet, clients)))
    with pytest.raises(ProviderError, match="does the copy hold the key of projects/") as err:
        gce.wait_ready(restored, timeout=2)
    # The agent drops the command (its key does not verify it): no answer, and nothing ran.
    assert err.value.code == "AgentNotAnswering"
    assert not [line for line in fleet.lines() if line.startswith("answer qr-")]
    assert gce.cleanup(LABEL, [None]).left == []


def test_a_copy_whose_agent_never_answers_is_not_ready(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    fleet.add("db-vm", policy_of(fleet))
    booter.silent.add("db-vm")
    gce = restorer(clients)
    restored = gce.launch(request(snapshots_of(fleet, clients)))
    with pytest.raises(ProviderError, match="did not answer within 1s") as err:
        gce.wait_ready(restored, timeout=1)
    assert err.value.code == "AgentNotAnswering"
    assert compute.instances[(PROJECT, ZONE, restored.machine.machine_id)]["status"] == "RUNNING"
    gce.cleanup(LABEL, [None])
    assert restore_resources(compute) == []


def test_a_subnetwork_of_another_region_is_refused_before_anything_is_made(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    fleet.add("db-vm", policy_of(fleet), agent=False)
    refs = snapshots_of(fleet, clients)
    site = RestoreSite(network=f"projects/{PROJECT}/regions/us-east1/subnetworks/iso")
    with pytest.raises(ProviderError, match="is in us-east1, but the copies launch in"):
        restorer(clients).launch(request(refs, site))
    assert restore_resources(compute) == []


def test_an_unknown_machine_type_is_refused_before_anything_is_made(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    fleet.add("db-vm", policy_of(fleet), agent=False)
    refs = snapshots_of(fleet, clients)
    del compute.instances[(PROJECT, ZONE, "db-vm")]  # the original is gone
    with pytest.raises(ProviderError, match="machine type is unknown") as err:
        restorer(clients).launch(request(refs))
    assert err.value.code == "MachineTypeUnknown"
    assert restore_resources(compute) == []


def test_a_launch_interrupted_halfway_leaves_only_labelled_disks_that_cleanup_removes(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    fleet.add("db-vm", policy_of(fleet), agent=False)
    fleet.add("other-vm", policy_of(fleet), agent=False)
    refs = snapshots_of(fleet, clients)
    before = everything(compute)
    compute.refuse_instances = "Quota 'CPUS' exceeded. Limit: 8.0 in region europe-west1."
    gce = restorer(clients)
    with pytest.raises(ProviderError) as err:
        gce.launch(request(refs))
    assert "Quota 'CPUS' exceeded" in str(err.value)
    assert f"quiesce restore-cleanup {LABEL}" in str(err.value)
    left = restore_resources(compute, LABEL)
    assert len(left) == 2
    assert all(r.startswith("disks/qr-") for r in left)
    # Another restore's resources and everything unlabelled stay.
    compute.refuse_instances = None
    other = gce.launch(request(refs, label="restore-other"))

    done = gce.cleanup(LABEL, [None])

    assert done.left == []
    assert sorted(done.deleted) == sorted(f"projects/{PROJECT}/zones/{ZONE}/{r}" for r in left)
    assert restore_resources(compute, LABEL) == []
    assert len(restore_resources(compute, "restore-other")) == 3
    gce.cleanup("restore-other", [None])
    assert everything(compute) == before
    assert other.created


def test_a_repeated_launch_with_the_same_label_takes_what_exists(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    fleet.add("db-vm", policy_of(fleet), agent=False)
    refs = snapshots_of(fleet, clients)
    gce = restorer(clients)
    first = gce.launch(request(refs))
    again = gce.launch(request(refs))
    assert sorted(again.created) == sorted(first.created)
    assert len(restore_resources(compute, LABEL)) == 3


def test_inspect_on_attaches_the_disks_and_cleanup_detaches_them(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, tmp_path: Path
) -> None:
    policy = policy_of(fleet)
    fleet.add("db-vm", policy, agent=False)
    inspector = fleet.add("inspect-vm", policy)
    refs = snapshots_of(fleet, clients)
    before = everything(compute)
    site = RestoreSite(
        network="isolated", inspect_on=f"projects/{PROJECT}/zones/{ZONE}/instances/inspect-vm"
    )
    gce = restorer(clients)

    restored = gce.launch(request(refs, site))

    assert restored.machine.machine_id == "inspect-vm"
    assert KEY_OF not in restored.machine.attributes  # its own agent, its own key
    assert [c.split("/")[-2] for c in restored.created] == ["disks", "disks"]
    attached = [d["deviceName"] for d in compute.instances[(PROJECT, ZONE, "inspect-vm")]["disks"]]
    restored_disks = [c.rsplit("/", 1)[1] for c in restored.created]
    assert attached[2:] == restored_disks or sorted(attached[2:]) == sorted(restored_disks)
    assert sorted(restored.mounts.values()) == sorted(
        f"/dev/disk/by-id/google-{d}" for d in restored_disks
    )
    assert len(compute.instances) == 2  # nothing launched
    gce.wait_ready(restored, timeout=30)
    result = runner(clients).run(verify_call(fleet, policy, restored.machine, []))
    assert result.status is HookStatus.SUCCEEDED, result.message
    assert inspector.name == "inspect-vm"

    done = gce.cleanup(LABEL, [None])

    assert done.left == []
    assert everything(compute) == before
    assert [d["deviceName"] for d in compute.instances[(PROJECT, ZONE, "inspect-vm")]["disks"]] == [
        "inspect-vm-boot",
        "inspect-vm-data1",
    ]


def test_a_verify_hook_on_the_guest_flush_channel_fails_instead_of_passing_unrun(
    clients: GcpClients,
) -> None:
    spec = GcpMember.model_validate(
        {"name": "win", "provider": "gcp", "project": PROJECT, "zone": ZONE,
         "hook_channel": "guest_flush", "select": {"instances": ["win-1"]},
         "hooks": {"verify": {"run": ["/usr/local/bin/check"]}}}
    )  # fmt: skip
    assert spec.hooks.verify is not None
    machine = Machine("gcp", "win", "qr-0-win-1", (), {"project": PROJECT, "zone": ZONE})
    call = HookCall(LABEL, "shop", "orders", "win", machine, "verify", spec.hooks.verify,
                    spec=spec)  # fmt: skip
    result = runner(clients).run(call)
    assert result.status is HookStatus.FAILED
    assert result.code == "NoHookChannel"
