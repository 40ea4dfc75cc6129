"""Ec2Restorer on moto: copies of instances launched from a point's replicas in another region
(an image on the snapshots, one instance in the isolated subnet, no public IP, restore tags
only), ready once the SSM agent answers, verified through the same SSM hook runner as
backups, or the volumes attached to an inspection instance; and cleanup by label, which
removes everything a restore made (also one that stopped half-way) and nothing else."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto.ec2.models import ec2_backends

from quiesce.errors import ProviderError
from quiesce.policy.recovery import RestoreSite
from quiesce.ports import HookCall, MachineRestore, RestoredMachine
from quiesce.record import HookStatus, SnapshotRef
from quiesce_aws.clients import SessionClients
from quiesce_aws.hooks import SsmHookRunner
from quiesce_aws.member import AwsMember
from quiesce_aws.restorer import RESTORE_OF_TAG, RESTORE_TAG, Ec2Restorer
from quiesce_aws.snapshots import EbsSnapshotter

from .conftest import ACCOUNT, REGION, FakeClock, Fleet, Sleeps, Wire, quick_backoff
from .restore_fakes import (
    DR_REGION,
    POINT,
    SsmAgents,
    answer_hooks,
    aws_member,
    isolated_network,
    leftovers,
    model_register_image,
    tags_of,
    take_point,
)

LABEL = "drill-20261202t040000z-a1b2c3"
APP_TAGS = {"app": "orders", "quiesce:enabled": "true"}


class Dr:
    """A member's point, copied to DR_REGION, and the isolated network there."""

    def __init__(self, clients: SessionClients, fleet: Fleet, wire: Wire, *, count: int = 1):
        self.clients = clients
        self.ec2 = clients.ec2(DR_REGION)
        self.instances = fleet.launch(count, tags=APP_TAGS, data_volumes=1)
        self.originals = {i: fleet.instance(i) for i in self.instances}
        self.member = aws_member("db", self.instances)
        _, self.refs = take_point(clients, self.member)
        copier = EbsSnapshotter(clients, default_region=REGION)
        self.replicas = [
            copier.copy_to_region(
                r, DR_REGION, None, {**r.tags, "quiesce:copy-of": r.id, "quiesce:region": DR_REGION}
            )
            for r in self.refs
        ]
        self.subnet, self.group = isolated_network(self.ec2, DR_REGION)
        self.site = RestoreSite(network=self.subnet, security_groups=[self.group])
        model_register_image(wire, self.ec2, DR_REGION)
        self.agents = SsmAgents(wire, clients.ssm(DR_REGION), DR_REGION)
        self.before = leftovers(DR_REGION)

    def request(
        self,
        instance: str | None = None,
        *,
        site: RestoreSite | None = None,
        refs: list[SnapshotRef] | None = None,
        member: AwsMember | None = None,
        label: str = LABEL,
        region: str | None = DR_REGION,
    ) -> MachineRestore:
        instance = instance or self.instances[0]
        pool = self.replicas if refs is None else refs
        return MachineRestore(
            point=POINT,
            member="db",
            machine_id=instance,
            snapshots=tuple(r for r in pool if r.machine_id == instance),
            label=label,
            site=site or self.site,
            spec=member or self.member,
            region=region,
        )

    def instance(self, instance_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ec2.describe_instances(InstanceIds=[instance_id])[
            "Reservations"
        ][0]["Instances"][0]
        return found


@pytest.fixture
def restorer(clients: SessionClients, clock: FakeClock, sleeps: Sleeps) -> Ec2Restorer:
    return Ec2Restorer(
        clients,
        default_region=REGION,
        backoff=quick_backoff(sleeps),
        poll_interval=5,
        terminate_timeout=60,
        available_timeout=60,
        clock=clock,
        sleep=sleeps,
    )


@pytest.fixture
def dr(clients: SessionClients, fleet: Fleet, wire: Wire) -> Dr:
    return Dr(clients, fleet, wire)


# ------------------------------------------------------------------------------ launch


def test_a_copy_is_launched_from_the_replicas_in_the_isolated_subnet_with_the_originals_shape(
    restorer: Ec2Restorer, dr: Dr, wire: Wire
) -> None:
    registered = wire.sent(dr.ec2, "RegisterImage")
    launched = wire.sent(dr.ec2, "RunInstances")
    original = dr.originals[dr.instances[0]]

    restored = restorer.launch(dr.request())

    (image,) = registered
    devices = {b["Ebs"]["VolumeId"]: b["DeviceName"] for b in original["BlockDeviceMappings"]}
    replica_device = {devices[r.volume]: r.id for r in dr.replicas}
    assert image["RootDeviceName"] == original["RootDeviceName"]
    assert {m["DeviceName"]: m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]} == (
        replica_device
    )
    assert all(m["Ebs"]["DeleteOnTermination"] for m in image["BlockDeviceMappings"])
    (call,) = launched
    assert call["InstanceType"] == original["InstanceType"]
    (nic,) = call["NetworkInterfaces"]
    assert nic["SubnetId"] == dr.subnet
    assert nic["Groups"] == [dr.group]
    assert nic["AssociatePublicIpAddress"] is False  # although the subnet maps one
    assert call["ClientToken"] == f"{LABEL}/{dr.instances[0]}"

    copy = dr.instance(restored.machine.machine_id)
    assert copy["SubnetId"] == dr.subnet
    assert not copy.get("PublicIpAddress")
    assert tags_of(copy) == {
        RESTORE_TAG: LABEL,
        RESTORE_OF_TAG: dr.instances[0],
        "quiesce:restored-from": POINT,
        "quiesce:member": "db",
        "Name": f"quiesce {LABEL} {dr.instances[0]}",
    }  # none of the original's: the member's selector must not find the copy
    volumes = dr.ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [copy["InstanceId"]]}]
    )["Volumes"]
    assert sorted(v["SnapshotId"] for v in volumes) == sorted(r.id for r in dr.replicas)
    assert all(tags_of(v)[RESTORE_TAG] == LABEL for v in volumes)
    assert restored.machine.attributes["region"] == DR_REGION
    assert restored.source == dr.instances[0]
    assert image_id(restored) in restored.created
    assert copy["InstanceId"] in restored.created
    assert {v["VolumeId"] for v in volumes} <= set(restored.created)
    assert restored.mounts == {}  # its own fstab mounts the volumes where they were


def image_id(restored: RestoredMachine) -> str:
    return next(c for c in restored.created if c.startswith("ami-"))


def test_a_copy_still_pending_is_refused_naming_the_snapshot_and_what_it_is_a_copy_of(
    restorer: Ec2Restorer, dr: Dr, wire: Wire
) -> None:
    def copying(parsed: dict[str, Any]) -> None:
        for item in parsed.get("Snapshots", []):
            item["State"], item["Progress"] = "pending", "12%"

    wire.after(dr.ec2, "DescribeSnapshots", copying)
    launched = wire.sent(dr.ec2, "RunInstances")

    with pytest.raises(ProviderError, match=r"\(the copy of snap-\w+\) is pending \(12%\)") as e:
        restorer.launch(dr.request())
    assert e.value.code == "SnapshotPending"
    assert launched == []
    assert leftovers(DR_REGION) == dr.before


def test_snapshots_of_another_region_are_refused(restorer: Ec2Restorer, dr: Dr) -> None:
    with pytest.raises(ProviderError, match="is in eu-central-1, not eu-west-1") as caught:
        restorer.launch(dr.request(refs=dr.refs))
    assert caught.value.code == "WrongRegion"


def test_a_windows_instance_is_not_launched_and_the_error_points_to_inspect_on(
    restorer: Ec2Restorer, dr: Dr
) -> None:
    windows = dr.member.model_copy(update={"os": "windows"})
    with pytest.raises(ProviderError, match="inspect_on"):
        restorer.launch(dr.request(member=windows))
    assert leftovers(DR_REGION) == dr.before


def test_a_point_without_the_root_volume_cannot_boot_a_copy(restorer: Ec2Restorer, dr: Dr) -> None:
    original = dr.originals[dr.instances[0]]
    root = next(
        b["Ebs"]["VolumeId"]
        for b in original["BlockDeviceMappings"]
        if b["DeviceName"] == original["RootDeviceName"]
    )
    data_only = [r for r in dr.replicas if r.volume != root]

    with pytest.raises(ProviderError, match="no snapshot of the root volume") as caught:
        restorer.launch(dr.request(refs=data_only))
    assert caught.value.code == "NoRootSnapshot"


def strip_shape(dr: Dr) -> list[SnapshotRef]:
    """The replicas as points taken before the shape was recorded would have them."""
    shape = [t for t in dr.replicas[0].tags if t.startswith("quiesce:") and "-" in t[8:]]
    keys = {
        "quiesce:instance-type",
        "quiesce:architecture",
        "quiesce:root-device",
        "quiesce:devices",
        "quiesce:ena",
        "quiesce:boot-mode",
        "quiesce:instance-profile",
    }
    assert keys & set(shape)
    ids = [r.id for r in dr.replicas]
    dr.ec2.delete_tags(Resources=ids, Tags=[{"Key": k} for k in keys])
    return [
        r.model_copy(update={"tags": {k: v for k, v in r.tags.items() if k not in keys}})
        for r in dr.replicas
    ]


def test_without_a_recorded_shape_the_original_instance_is_read_at_launch(
    restorer: Ec2Restorer, dr: Dr, wire: Wire
) -> None:
    old = strip_shape(dr)
    launched = wire.sent(dr.ec2, "RunInstances")

    restorer.launch(dr.request(refs=old))

    assert launched[0]["InstanceType"] == dr.originals[dr.instances[0]]["InstanceType"]


def test_without_a_recorded_shape_and_without_the_original_nothing_is_launched(
    restorer: Ec2Restorer, dr: Dr, clients: SessionClients
) -> None:
    old = strip_shape(dr)
    clients.ec2(REGION).terminate_instances(InstanceIds=[dr.instances[0]])

    with pytest.raises(ProviderError, match="do not say its instance type") as caught:
        restorer.launch(dr.request(refs=old))
    assert caught.value.code == "UnknownShape"
    assert leftovers(DR_REGION) == dr.before


def test_the_originals_instance_profile_goes_to_the_copy_or_the_configured_one(
    clients: SessionClients, dr: Dr, wire: Wire, sleeps: Sleeps, clock: FakeClock
) -> None:
    iam = boto3.client("iam", region_name=REGION)
    profile = iam.create_instance_profile(InstanceProfileName="orders-ssm")["InstanceProfile"][
        "Arn"
    ]
    drill_profile = iam.create_instance_profile(InstanceProfileName="drill-ssm")["InstanceProfile"][
        "Arn"
    ]
    replicas = [
        r.model_copy(update={"tags": {**r.tags, "quiesce:instance-profile": profile}})
        for r in dr.replicas
    ]
    launched = wire.sent(dr.ec2, "RunInstances")
    Ec2Restorer(clients, backoff=quick_backoff(sleeps), clock=clock, sleep=sleeps).launch(
        dr.request(refs=replicas)
    )
    Ec2Restorer(
        clients, instance_profile=drill_profile, backoff=quick_backoff(sleeps), sleep=sleeps
    ).launch(dr.request(refs=replicas, label="other-label"))

    assert launched[0]["IamInstanceProfile"] == {"Arn": profile}
    assert launched[1]["IamInstanceProfile"] == {"Arn": drill_profile}


def test_a_launch_refused_for_the_instance_profile_s_role_names_the_profile_and_the_setting(
    clients: SessionClients, dr: Dr, wire: Wire, sleeps: Sleeps
) -> None:
    profile = "arn:aws:iam::123456789012:instance-profile/orders-ssm"
    wire.fail(dr.ec2, "RunInstances", "UnauthorizedOperation", status=403)
    restorer = Ec2Restorer(
        clients, instance_profile=profile, backoff=quick_backoff(sleeps), sleep=sleeps
    )

    with pytest.raises(ProviderError) as caught:
        restorer.launch(dr.request())

    assert caught.value.code == "UnauthorizedOperation"  # EC2's own code, carried through
    message = str(caught.value)
    assert profile in message
    assert "restore_instance_roles" in message
    assert "is left for the cleanup" in message


# ------------------------------------------------------------------------------ wait_ready


def test_a_copy_is_ready_once_it_runs_and_its_ssm_agent_is_online(
    restorer: Ec2Restorer, dr: Dr, sleeps: Sleeps
) -> None:
    dr.agents.boot_polls = 2
    restored = restorer.launch(dr.request())

    restorer.wait_ready(restored, timeout=600)

    assert dr.agents.asked == [[restored.machine.machine_id]] * 3
    assert sleeps.waits.count(5) == 2


def test_a_copy_whose_agent_never_answers_is_not_ready_and_the_error_says_why(
    restorer: Ec2Restorer, dr: Dr
) -> None:
    restored = restorer.launch(dr.request())
    dr.agents.offline.add(restored.machine.machine_id)

    with pytest.raises(ProviderError, match="SSM agent ConnectionLost") as caught:
        restorer.wait_ready(restored, timeout=60)
    assert caught.value.code == "NotReady"
    assert "VPC endpoints" in str(caught.value)


def test_a_copy_that_stopped_is_not_waited_for(restorer: Ec2Restorer, dr: Dr) -> None:
    restored = restorer.launch(dr.request())
    dr.ec2.stop_instances(InstanceIds=[restored.machine.machine_id])

    with pytest.raises(ProviderError, match="is stopped: it will not come up"):
        restorer.wait_ready(restored, timeout=600)


# ------------------------------------------------------------------------------ verify


def test_the_ssm_hook_runner_sends_the_verify_hook_to_the_copy_in_its_region(
    restorer: Ec2Restorer, dr: Dr, clients: SessionClients, wire: Wire
) -> None:
    restored = restorer.launch(dr.request())
    copy_id = restored.machine.machine_id
    calls = answer_hooks(wire, clients.ssm(DR_REGION), DR_REGION, lambda i, _p: i != copy_id)
    runner = SsmHookRunner(clients, poll_interval=0.01)
    hook = dr.member.hooks.verify
    assert hook is not None

    result = runner.run(verify_call(restored, dr.member))

    assert result.status is HookStatus.SUCCEEDED, result.message
    ((_instance, params),) = [c for c in calls if c[0] == copy_id]
    assert params["Phase"] == ["verify"]
    assert params["Hook"] == ["orders.db.verify"]
    assert params["RunId"] == [LABEL]


def test_a_failing_verify_hook_on_the_copy_comes_back_failed(
    restorer: Ec2Restorer, dr: Dr, clients: SessionClients, wire: Wire
) -> None:
    restored = restorer.launch(dr.request())
    answer_hooks(wire, clients.ssm(DR_REGION), DR_REGION, lambda _i, _p: True)

    result = SsmHookRunner(clients, poll_interval=0.01).run(verify_call(restored, dr.member))

    assert result.status is HookStatus.FAILED
    assert "orders table is empty" in result.message + result.output


def verify_call(restored: RestoredMachine, member: AwsMember) -> HookCall:
    assert member.hooks.verify is not None
    return HookCall(
        run_id=LABEL,
        policy="shop",
        group="orders",
        member=restored.member,
        machine=restored.machine,
        phase="verify",
        hook=member.hooks.verify,
        extra_args=tuple(restored.mounts.values()),
        spec=member,
    )


# ------------------------------------------------------------------------------ inspect_on


def test_inspect_on_attaches_a_volume_of_each_snapshot_to_the_inspection_instance(
    restorer: Ec2Restorer, dr: Dr, clients: SessionClients, sleeps: Sleeps
) -> None:
    inspector = dr.ec2.run_instances(
        ImageId=dr.ec2.register_image(Name="inspector")["ImageId"],
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": f"{DR_REGION}c"},
    )["Instances"][0]["InstanceId"]
    site = RestoreSite(network=dr.subnet, inspect_on=inspector)

    restored = restorer.launch(dr.request(site=site))
    restorer.wait_ready(restored, timeout=600)

    assert restored.machine.machine_id == inspector
    assert sorted(restored.mounts.values()) == ["/dev/sdf", "/dev/sdg"]
    assert sorted(restored.mounts) == sorted(r.volume for r in dr.refs)
    volumes = dr.ec2.describe_volumes(VolumeIds=restored.created)["Volumes"]
    assert {v["AvailabilityZone"] for v in volumes} == {f"{DR_REGION}c"}
    assert sorted(v["SnapshotId"] for v in volumes) == sorted(r.id for r in dr.replicas)
    assert {a["InstanceId"] for v in volumes for a in v["Attachments"]} == {inspector}

    done = restorer.cleanup(LABEL, [DR_REGION])

    assert sorted(done.deleted) == sorted(restored.created)
    assert done.left == []
    assert dr.instance(inspector)["State"]["Name"] == "running"  # not the restore's
    assert (
        dr.ec2.describe_volumes(Filters=[{"Name": f"tag:{RESTORE_TAG}", "Values": [LABEL]}])[
            "Volumes"
        ]
        == []
    )


# ------------------------------------------------------------------------------ cleanup


def test_cleanup_removes_everything_the_restore_made_and_nothing_else(
    restorer: Ec2Restorer, dr: Dr
) -> None:
    bystander = dr.ec2.run_instances(
        ImageId=dr.ec2.register_image(Name="app")["ImageId"], MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    other = restorer.launch(dr.request(label="restore-someone-elses"))
    before = leftovers(DR_REGION)
    restored = restorer.launch(dr.request())
    restorer.wait_ready(restored, timeout=600)

    done = restorer.cleanup(LABEL, [DR_REGION, DR_REGION])

    assert done.left == []
    assert set(restored.created) <= set(done.deleted)
    assert leftovers(DR_REGION) == before
    assert dr.instance(bystander)["State"]["Name"] == "running"
    assert dr.instance(other.machine.machine_id)["State"]["Name"] == "running"
    # The point's replicas are kept: the image only referred to them.
    assert set(r.id for r in dr.replicas) <= set(leftovers(DR_REGION)["snapshots"])


def test_a_restore_interrupted_after_its_image_is_cleaned_up_by_its_label(
    restorer: Ec2Restorer, dr: Dr, wire: Wire
) -> None:
    wire.fail(dr.ec2, "RunInstances", "InsufficientInstanceCapacity")

    with pytest.raises(ProviderError, match=r"image ami-\w+ is left for the cleanup"):
        restorer.launch(dr.request())
    assert len(leftovers(DR_REGION)["images"]) == 1

    done = restorer.cleanup(LABEL, [DR_REGION])

    assert [d for d in done.deleted if d.startswith("ami-")]
    assert leftovers(DR_REGION) == dr.before


def test_what_cleanup_cannot_delete_is_reported_with_the_reason(
    restorer: Ec2Restorer, dr: Dr, wire: Wire
) -> None:
    restored = restorer.launch(dr.request())
    wire.fail(dr.ec2, "TerminateInstances", "UnauthorizedOperation", status=403)

    done = restorer.cleanup(LABEL, [DR_REGION])

    copy = restored.machine.machine_id
    assert [line for line in done.left if line.startswith(copy)] == [
        f"{copy}: could not terminate it: UnauthorizedOperation: injected"
    ]
    assert dr.instance(copy)["State"]["Name"] == "running"
    # Run again once allowed: it finishes the job.
    again = restorer.cleanup(LABEL, [DR_REGION])
    assert copy in again.deleted
    assert again.left == []
    assert leftovers(DR_REGION) == dr.before


def test_cleanup_without_a_region_looks_in_the_default_region(
    restorer: Ec2Restorer, dr: Dr, clients: SessionClients, wire: Wire
) -> None:
    model_register_image(wire, clients.ec2(REGION), REGION)
    here = RestoreSite(network=isolated_network(clients.ec2(REGION), REGION)[0])
    restored = restorer.launch(dr.request(refs=dr.refs, site=here, region=None))

    done = restorer.cleanup(LABEL, [None])

    assert restored.machine.machine_id in done.deleted
    assert ec2_backends[ACCOUNT][REGION].amis.keys().isdisjoint(done.deleted)
