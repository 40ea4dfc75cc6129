"""An instance's shape: what launching a copy of it from its snapshots needs to know.

A copy is launched from an image registered on the instance's snapshots (quiesce_aws.restorer),
so it needs the instance type, the CPU architecture, the boot mode, ENA support, the root
device's name, every volume's device name and the instance profile (the copy's SSM agent
registers with it, which is how verify hooks reach the copy).

The shape is recorded at take time, as tags on each of the instance's snapshots (the inventory
reads it from DescribeInstances into the machine's attributes, and the snapshotter tags it):
a restore then needs nothing from the original, which may be gone, or in a region that is
down. A CopySnapshot copy carries the same tags. Snapshots taken before the shape was recorded
are launched with the shape read from the original instance at launch time, when it still
exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

#: The Machine attribute (quiesce_aws.inventory) -> the snapshot tag it is recorded under.
SHAPE_TAGS = {
    "instance_type": "quiesce:instance-type",
    "architecture": "quiesce:architecture",
    "boot_mode": "quiesce:boot-mode",
    "ena": "quiesce:ena",
    "root_device": "quiesce:root-device",
    "devices": "quiesce:devices",
    "instance_profile": "quiesce:instance-profile",
}
#: EC2 keeps at most 256 characters of a tag's value.
MAX_TAG_VALUE = 256
#: What the tags may hold (EC2 tag values; and the VSS document's tag parameter refuses ,;=).
TAG_VALUE = re.compile(r"^[A-Za-z0-9 _.:/+@-]*$")


def encode_devices(devices: Mapping[str, str]) -> str:
    """`{volume id: device}` as one tag value: "sda1:vol-0abc xvdf:vol-0def" (the /dev/ prefix
    left out, so about ten volumes fit in a tag)."""
    return " ".join(
        f"{device.removeprefix('/dev/')}:{volume}"
        for volume, device in sorted(devices.items(), key=lambda item: item[1])
    )


def decode_devices(text: str) -> dict[str, str]:
    """The `{volume id: device}` of encode_devices (the /dev/ prefix put back)."""
    out: dict[str, str] = {}
    for item in text.split():
        device, sep, volume = item.rpartition(":")
        if sep and device and volume:
            out[volume] = device if device.startswith("/") else f"/dev/{device}"
    return out


def instance_attributes(instance: InstanceTypeDef) -> dict[str, str]:
    """The shape of a described instance, as Machine attributes (the values it has)."""
    devices = {
        str(m["Ebs"]["VolumeId"]): str(m.get("DeviceName", ""))
        for m in instance.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("VolumeId") and m.get("DeviceName")
    }
    out = {
        "instance_type": str(instance.get("InstanceType") or ""),
        "architecture": str(instance.get("Architecture") or ""),
        "boot_mode": str(instance.get("CurrentInstanceBootMode") or instance.get("BootMode") or ""),
        "ena": "" if instance.get("EnaSupport") is None else str(instance["EnaSupport"]).lower(),
        "root_device": str(instance.get("RootDeviceName") or ""),
        "devices": encode_devices(devices),
        "instance_profile": str((instance.get("IamInstanceProfile") or {}).get("Arn") or ""),
    }
    return {k: v for k, v in out.items() if v}


def shape_tags(attributes: Mapping[str, str]) -> dict[str, str]:
    """The snapshot tags of a machine's shape; a value a tag cannot hold is left out (the
    restore then reads it from the original)."""
    out = {}
    for attribute, tag in SHAPE_TAGS.items():
        value = attributes.get(attribute, "")
        if value and len(value) <= MAX_TAG_VALUE and TAG_VALUE.match(value):
            out[tag] = value
    return out


@dataclass(frozen=True)
class Shape:
    """What a copy is launched with (from the snapshots' tags, else the original instance)."""

    instance_type: str
    root_device: str
    #: original volume id -> its device name
    devices: dict[str, str] = field(default_factory=dict)
    architecture: str = "x86_64"
    boot_mode: str | None = None
    ena: bool = True
    instance_profile: str | None = None
    #: where it was read from: "tags", "instance" or both
    source: str = "tags"

    @classmethod
    def from_values(cls, values: Mapping[str, str], source: str) -> Shape | None:
        """The shape of attribute values (shape_tags' keys or attribute names); None when
        the instance type or the root device is missing."""
        get = {a: values.get(t) or values.get(a) or "" for a, t in SHAPE_TAGS.items()}
        if not get["instance_type"] or not get["root_device"]:
            return None
        return cls(
            instance_type=get["instance_type"],
            root_device=get["root_device"],
            devices=decode_devices(get["devices"]),
            architecture=get["architecture"] or "x86_64",
            boot_mode=get["boot_mode"] or None,
            ena=get["ena"] != "false",
            instance_profile=get["instance_profile"] or None,
            source=source,
        )
