"""Copies of EBS snapshots in another region (a group's `copies:`).

`copy_snapshot` starts one CopySnapshot, called in the DESTINATION region with the source's
region and id (boto3 signs the presigned URL EC2 needs for that). It returns at once with the
replica pending: EBS copies the data in the background, minutes to hours, and the replica's
state is then read like any snapshot's (DescribeSnapshots in its region, which its location,
an ARN in that region, names). The replica keeps its source's point in time (`fixed_at`).

Encryption: with a key (`copies[].key`), the replica is encrypted with it (Encrypted and
KmsKeyId); without, it is encrypted as its source is, with the destination region's default
EBS key when the source is encrypted. A snapshot can be copied only once it is completed.

The replica is tagged with what the core hands over (the source's tags, quiesce:copy-of and
quiesce:region) and always quiesce:managed=true: `delete` and `find` treat it as Quiesce's own.
CopySnapshot takes no client token, so a call whose outcome is unknown is not repeated (a
repeat could make a second replica); only throttling and the concurrent-copy limit, which
mean nothing was started, are retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.errors import ProviderError
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import EC2_THROTTLING, Backoff, call_failed, error_code, error_message
from quiesce_aws.tagging import tag_list

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client

#: EC2 answers this when a region already runs its limit of concurrent snapshot copies.
COPY_LIMITS = frozenset({"ResourceLimitExceeded"})
#: EC2 keeps at most 50 tags on a resource.
MAX_TAGS = 50

#: What EbsSnapshotter.copy_to_region calls: CopySnapshot of Quiesce's snapshots only, creating
#: only replicas tagged quiesce:managed=true (tagged in the same call), and the keys of the
#: copies through EC2 only.
COPY_PERMISSIONS = [
    Permission(
        "ec2:CopySnapshot",
        "arn:aws:ec2:*::snapshot/*",
        {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
    ),
    Permission(
        "ec2:CopySnapshot",
        "arn:aws:ec2:*::snapshot/*",
        {f"aws:RequestTag/{MANAGED_TAG}": "true"},
    ),
    Permission(
        "ec2:CreateTags",
        "arn:aws:ec2:*::snapshot/*",
        {"ec2:CreateAction": "CopySnapshot"},
    ),
    # A customer managed key of a copy (copies[].key) or of an encrypted source: EBS uses it
    # for the caller, through EC2 only.
    *(
        Permission(action, "arn:aws:kms:*:*:key/*", {"kms:ViaService": "ec2.*.amazonaws.com"})
        for action in (
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncrypt*",
        )
    ),
]


def copy_snapshot(
    ec2: EC2Client,
    snapshot: SnapshotRef,
    *,
    source_region: str,
    region: str,
    key: str | None,
    tags: dict[str, str],
    backoff: Backoff,
    arn: Callable[[str], str],
) -> SnapshotRef:
    """Starts the copy of `snapshot` (in `source_region`) with the destination region's
    client `ec2`; returns the pending replica, located by `arn(replica id)`."""
    if region == source_region:
        raise ProviderError(
            f"snapshot {snapshot.id} is in {region} already: a copy goes to another region",
            code="SameRegion",
        )
    wanted = {**tags, MANAGED_TAG: "true"}
    if len(wanted) > MAX_TAGS:
        raise ProviderError(
            f"snapshot {snapshot.id}: its copy would carry {len(wanted)} tags; EC2 keeps at "
            f"most {MAX_TAGS}",
            code="TooManyTags",
        )
    params: dict[str, Any] = {
        "SourceRegion": source_region,
        "SourceSnapshotId": snapshot.id,
        "Description": (
            f"Quiesce copy of {snapshot.id} ({source_region}), recovery point "
            f"{tags.get('quiesce:recovery-point', '?')}"
        )[:255],
        "TagSpecifications": [
            {
                "ResourceType": "snapshot",
                "Tags": tag_list(wanted),
            }
        ],
    }
    if key:
        params["Encrypted"] = True
        params["KmsKeyId"] = key
    started = utcnow()
    try:
        answer = backoff.call(
            lambda: ec2.copy_snapshot(**params),
            retry_on=EC2_THROTTLING | COPY_LIMITS,
            what=f"CopySnapshot of {snapshot.id} to {region}",
        )
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc) or "CopyFailed"
        hint = ""
        if code == "IncorrectState":
            hint = " (a snapshot can be copied once it is completed)"
        elif code.startswith("KMS") or "kms" in error_message(exc).lower():
            hint = (
                f" (the key {key or 'of the source'} must be usable by this role in {region}: "
                "its key policy and kms grants through EC2)"
            )
        raise call_failed(
            f"CopySnapshot of {snapshot.id} from {source_region} to {region} failed",
            exc,
            code,
            hint,
        ) from exc
    replica = str(answer.get("SnapshotId") or "")
    if not replica:
        raise ProviderError(
            f"CopySnapshot of {snapshot.id} to {region} returned no snapshot id",
            code="CopyFailed",
        )
    return SnapshotRef(
        id=replica,
        provider=snapshot.provider,
        machine_id=snapshot.machine_id,
        volume=snapshot.volume,
        method=snapshot.method,
        state=SnapshotState.PENDING,
        started_at=started,
        fixed_at=snapshot.fixed_at,
        size_bytes=snapshot.size_bytes,
        location=arn(replica),
        tags=wanted,
        reported_consistency=snapshot.reported_consistency,
    )
