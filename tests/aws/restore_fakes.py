"""What the restore, copy and drill tests need beyond moto, on the adapters' own clients.

moto keeps a snapshot copy, an image and an instance in the region of the client that made
them, as EC2 does; where it leaves out documented behaviour, the tests add it with botocore
event hooks on the very clients the adapters use (never by replacing an adapter's method):

- RegisterImage: moto ignores the block device mappings, the root device name and the tags of
  the request, and invents a snapshot of its own for the image. EC2 registers the image on the
  snapshots it is given, with the tags asked for, and makes no snapshot. `model_register_image`
  makes moto's image so.
- DescribeInstanceInformation is not in moto. `SsmAgents` answers it like SSM does for the
  instances of the region: a running instance's agent is Online once it has registered (after
  `boot_polls` looks, modelling the boot), a stopped or terminated one is absent; agents can be
  kept offline.
- Command invocations: `answer_hooks` answers every SendCommand in a region like the guest
  runner does (moto's invocations have no output), succeeding or failing per instance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ssm.models import ssm_backends

from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef
from quiesce_aws.clients import SessionClients
from quiesce_aws.inventory import Ec2Inventory
from quiesce_aws.member import AwsMember
from quiesce_aws.snapshots import EbsSnapshotter

from .conftest import ACCOUNT, REGION, Wire, runner_result

#: The region the points are copied to and restored in.
DR_REGION = "eu-west-1"
RUN = "20261202T040000Z-d0d0d0"
POINT = f"rp-{RUN}"


def model_register_image(wire: Wire, ec2: Any, region: str) -> None:
    """RegisterImage as EC2 does it: on the given snapshots, tagged, no snapshot of its own."""
    sent = wire.sent(ec2, "RegisterImage")

    def edit(parsed: dict[str, Any]) -> None:
        if "ImageId" not in parsed:
            return
        params = sent[-1]
        if "BlockDeviceMappings" not in params:
            return  # an image of the tests' own
        backend = ec2_backends[ACCOUNT][region]
        image = backend.amis[parsed["ImageId"]]
        invented = image.ebs_snapshot
        root = next(
            m for m in params["BlockDeviceMappings"] if m["DeviceName"] == params["RootDeviceName"]
        )
        image.ebs_snapshot = backend.snapshots[root["Ebs"]["SnapshotId"]]
        image.root_device_name = params["RootDeviceName"]
        image.architecture = params.get("Architecture")
        backend.snapshots.pop(invented.id, None)
        for spec in params.get("TagSpecifications", []):
            if spec["ResourceType"] == "image":
                image.add_tags({t["Key"]: t["Value"] for t in spec["Tags"]})

    wire.after(ec2, "RegisterImage", edit)


class SsmAgents:
    """DescribeInstanceInformation of a region, from moto's instances (see the module doc)."""

    def __init__(self, wire: Wire, ssm: Any, region: str, boot_polls: int = 1) -> None:
        self.region = region
        self.boot_polls = boot_polls
        self.looks: dict[str, int] = {}
        self.offline: set[str] = set()
        self.asked: list[list[str]] = []
        wire.answer(ssm, "DescribeInstanceInformation", self.answer)

    def answer(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = [v for f in params.get("Filters", []) for v in f.get("Values", [])]
        self.asked.append(wanted)
        backend = ec2_backends[ACCOUNT][self.region]
        items = []
        for instance_id in wanted:
            instance = backend.instances.get(instance_id) if hasattr(backend, "instances") else None
            if instance is None:
                try:
                    instance = backend.get_instance(instance_id)
                except Exception:
                    continue
            if instance.state != "running":
                continue
            self.looks[instance_id] = self.looks.get(instance_id, 0) + 1
            if self.looks[instance_id] <= self.boot_polls:
                continue  # still booting: the agent has not registered yet
            status = "ConnectionLost" if instance_id in self.offline else "Online"
            items.append({"InstanceId": instance_id, "PingStatus": status, "PlatformType": "Linux"})
        return {"InstanceInformationList": items}


def answer_hooks(
    wire: Wire,
    ssm: Any,
    region: str,
    fails: Callable[[str, dict[str, Any]], bool] = lambda _i, _p: False,
) -> list[tuple[str, dict[str, Any]]]:
    """Every SendCommand in `region` is answered like the guest runner: succeeded, or failed
    where `fails(instance id, parameters)`. Returns the (instance, parameters) of each call."""
    calls: list[tuple[str, dict[str, Any]]] = []
    sent = wire.sent(ssm, "SendCommand")

    def edit(parsed: dict[str, Any]) -> None:
        if "Command" not in parsed:
            return
        command = ssm_backends[ACCOUNT][region].get_command_by_id(parsed["Command"]["CommandId"])
        targets = set(sent[-1].get("InstanceIds", []))
        for invocation in command.invocations:
            instance_id = invocation["InstanceId"]
            if instance_id not in targets:
                continue
            calls.append((instance_id, command.parameters))
            if fails(instance_id, command.parameters):
                text = runner_result("failed", "ExecutionFailed", message="orders table is empty")
                invocation.update({"Status": "Failed", "StatusDetails": "Failed"})
            else:
                text = runner_result()
            invocation["StandardOutputContent"] = text + "\n"

    wire.after(ssm, "SendCommand", edit)
    return calls


def isolated_network(ec2: Any, region: str) -> tuple[str, str]:
    """A subnet that gives every instance a public IP by default, and a closed security
    group: (subnet id, group id)."""
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone=f"{region}b")[
        "Subnet"
    ]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    group = ec2.create_security_group(
        GroupName="quiesce-isolated", Description="no way in or out", VpcId=vpc
    )["GroupId"]
    return subnet, group


def aws_member(name: str, instance_ids: list[str], **fields: Any) -> AwsMember:
    return AwsMember.model_validate(
        {
            "name": name,
            "provider": "aws",
            "region": REGION,
            "select": {"instance_ids": instance_ids},
            "hooks": {"verify": {"run": ["/etc/quiesce/hooks/verify.sh"], "timeout_seconds": 10}},
            **fields,
        }
    )


def take_point(
    clients: SessionClients, member: AwsMember, run_id: str = RUN
) -> tuple[list[Machine], list[SnapshotRef]]:
    """The member's instances as the inventory resolves them, and a snapshot of each volume
    (completed: moto's snapshots are)."""
    machines = Ec2Inventory(clients).resolve(member)
    snapshotter = EbsSnapshotter(clients, default_region=REGION)
    refs: list[SnapshotRef] = []
    for machine in machines:
        refs += snapshotter.take(
            SnapshotCall(
                run_id=run_id,
                policy="shop",
                group="orders",
                member=member.name,
                machine=machine,
                recovery_point=f"rp-{run_id}",
                consistency="application",
                spec=member,
            )
        )
    return machines, refs


def leftovers(region: str) -> dict[str, list[str]]:
    """What exists in moto's region that a restore could have made, by kind (instances that
    are not terminated; every image, volume, network interface and snapshot)."""
    backend = ec2_backends[ACCOUNT][region]
    return {
        "instances": sorted(
            i.id
            for r in backend.reservations.values()
            for i in r.instances
            if i.state != "terminated"
        ),
        "images": sorted(backend.amis),
        "volumes": sorted(backend.volumes),
        "network_interfaces": sorted(backend.enis),
        "snapshots": sorted(backend.snapshots),
    }


def tags_of(item: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", item.get("TagSet", []))}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
