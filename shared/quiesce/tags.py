"""The tags (labels, metadata) every snapshot Quiesce makes carries, whatever the provider:
`find`, retention and the orphan sweep recognise Quiesce's own snapshots by them, and never
touch one without `quiesce:managed`."""

from __future__ import annotations

from quiesce.ports import SnapshotCall

MANAGED_TAG = "quiesce:managed"
POINT_TAG = "quiesce:recovery-point"
RUN_TAG = "quiesce:run-id"
#: On a copy of a snapshot in another region: the source snapshot, and the region.
COPY_OF_TAG = "quiesce:copy-of"
REGION_TAG = "quiesce:region"


def snapshot_tags(call: SnapshotCall) -> dict[str, str]:
    """The tags of a snapshot taken for `call`."""
    return {
        MANAGED_TAG: "true",
        "quiesce:policy": call.policy,
        "quiesce:group": call.group,
        RUN_TAG: call.run_id,
        POINT_TAG: call.recovery_point,
        "quiesce:member": call.member,
        "quiesce:machine": call.machine.machine_id,
        "quiesce:consistency": call.consistency,
    }
