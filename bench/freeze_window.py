"""Freeze window and skew: Quiesce's engine against the naive loop, in one run.

A fake provider whose point-in-time call takes a fixed latency (with jitter) and whose hooks take
a fixed time stands in for a cloud. For each group size, the engine backs up the group once, and
a naive loop — for each machine: freeze, snapshot, thaw, as hand-written backup functions do —
backs up the same group. Both are measured the same way:

- freeze window: from the first member held (pre hook done) to the last thaw started;
- skew: the spread of the times at which the snapshots' points in time were fixed.

With `--repeat N` the engine backs up each group N times (the naive loop runs once) and each row
reports the minimum (`freeze_window_ms`, `skew_ms`) and the median of the N runs: on a shared
machine the minimum is the figure to compare, the median says how noisy the runs were.

Two kinds of provider (each row's `mode`):

- `per-call` (the default): the provider has only `run` and `take`, so the engine makes one call
  per machine and phase, each on its own thread;
- `batch` (`--batch`): the provider also has `run_many` and `take_many`, as a cloud with batch
  APIs does (SSM's SendCommand takes 50 instances): the engine hands each phase over in one
  call, which takes one hook time for all its hooks, or one point-in-time latency for all its
  snapshots, each snapshot's point fixed at its own jitter inside that latency.

`--both` measures both modes, their runs alternated, so both see the same load.

`--floor` adds a third row per size, `thread floor`: no engine at all, only what any engine
that gives each blocking call its own thread must do — a thread per member parked on a lock,
three waves (pre hook, point in time, post hook) with the same timing, each wave released in
one loop by the thread that ends the previous one, nothing recorded but the times, with the
engine's switch interval and the garbage collector paused (quiesce.engine.gil). It is the
least a per-call provider's freeze window can be on this machine and interpreter: each of the
thousand threads of a wave must take the interpreter lock in turn before its call blocks.

Usage: python bench/freeze_window.py [--sizes 1,10,100,1000] [--latency-ms 200] [--jitter-ms 20]
       [--hook-ms 20] [--naive-max-members 1000] [--repeat 1] [--batch | --both] [--json]
       [--markdown]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from quiesce.engine import run_group
from quiesce.engine.gil import dispatch_priority
from quiesce.policy import Policy
from quiesce.ports import (
    Backends,
    HookCall,
    HookRunner,
    Inventory,
    Machine,
    Provider,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import HookResult, HookStatus, SnapshotRef, SnapshotState, utcnow


class Timing:
    def __init__(self, latency_ms: float, jitter_ms: float, hook_ms: float, seed: int) -> None:
        self.latency = latency_ms / 1000
        self.jitter = jitter_ms / 1000
        self.hook = hook_ms / 1000
        self._random = random.Random(seed)

    def point_in_time(self) -> float:
        # No lock: the generator's own state is safe across threads, and a lock here would
        # make a thousand snapshot calls queue for it (the fake's cost, not the engine's).
        return self.latency + self._random.uniform(-self.jitter, self.jitter)


class BenchInventory(Inventory):
    def resolve(self, member: object) -> list[Machine]:
        name = getattr(member, "name")  # noqa: B009
        return [Machine(provider="local", member=name, machine_id=name)]


class BenchHooks(HookRunner):
    def __init__(self, timing: Timing) -> None:
        self.timing = timing

    def check(self, call: HookCall) -> HookResult:
        return HookResult(status=HookStatus.SUCCEEDED, code="Allowed")

    def run(self, call: HookCall) -> HookResult:
        started = utcnow()
        time.sleep(self.timing.hook)
        return HookResult(
            status=HookStatus.SUCCEEDED,
            code="Succeeded",
            attempts=1,
            started_at=started,
            ended_at=utcnow(),
        )


class BenchSnapshots(Snapshotter):
    def __init__(self, timing: Timing) -> None:
        self.timing = timing

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        started = utcnow()
        time.sleep(self.timing.point_in_time())
        fixed = utcnow()
        return [
            SnapshotRef(
                id=f"{call.recovery_point}/{call.member}",
                provider="local",
                machine_id=call.machine.machine_id,
                volume="disk",
                method="bench",
                started_at=started,
                fixed_at=fixed,
                size_bytes=0,
            )
        ]

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        now = utcnow()
        return [
            s.model_copy(update={"state": SnapshotState.COMPLETED, "durable_at": now})
            for s in snapshots
        ]

    def delete(self, snapshot: SnapshotRef) -> None:
        pass

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        return []


class BatchHooks(BenchHooks):
    """A hook runner with a batch API: one call carries every hook of a phase."""

    def run_many(self, calls: Sequence[HookCall]) -> list[HookResult | BaseException]:
        started = utcnow()
        time.sleep(self.timing.hook)
        ended = utcnow()
        return [
            HookResult(
                status=HookStatus.SUCCEEDED,
                code="Succeeded",
                attempts=1,
                started_at=started,
                ended_at=ended,
            )
            for _ in calls
        ]


class BatchSnapshots(BenchSnapshots):
    """A snapshotter with a batch API: one call takes every machine's snapshots; each point in
    time is fixed at its own latency (with jitter) after the call started, and the call returns
    once the last one is."""

    def take_many(self, calls: Sequence[SnapshotCall]) -> list[list[SnapshotRef] | BaseException]:
        started = utcnow()
        offsets = [self.timing.point_in_time() for _ in calls]
        time.sleep(max(offsets, default=0.0))
        return [
            [
                SnapshotRef(
                    id=f"{call.recovery_point}/{call.member}",
                    provider="local",
                    machine_id=call.machine.machine_id,
                    volume="disk",
                    method="bench",
                    started_at=started,
                    fixed_at=started + timedelta(seconds=offset),
                    size_bytes=0,
                )
            ]
            for call, offset in zip(calls, offsets, strict=True)
        ]


#: The providers of each mode: (hook runner, snapshotter).
MODES: dict[str, tuple[type[BenchHooks], type[BenchSnapshots]]] = {
    "per-call": (BenchHooks, BenchSnapshots),
    "batch": (BatchHooks, BatchSnapshots),
}


def policy_for(members: int) -> Policy:
    hooks = {"pre": {"run": ["/bench/pre"], "timeout_seconds": 5}, "post": {"run": ["/bench/post"]}}
    return Policy.model_validate(
        {
            "version": 1,
            "name": "bench",
            "groups": {
                "g": {
                    "max_freeze_seconds": 60,
                    "members": [
                        {
                            "name": f"m{i}",
                            "provider": "local",
                            "volumes": [f"/v/{i}"],
                            "hooks": hooks,
                        }
                        for i in range(members)
                    ],
                }
            },
        }
    )


def ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


def run_engine(members: int, timing: Timing, mode: str = "per-call") -> tuple[float, float]:
    hooks, snapshots = MODES[mode]
    provider = Provider(BenchInventory(), hooks(timing), snapshots(timing))
    backends = Backends({"local": provider}, MemoryStateStore(), MemoryEventBus())
    record = run_group(policy_for(members), "g", backends)
    if record.status.value != "succeeded":
        raise SystemExit(f"engine run failed: {record.errors}")
    assert record.freeze_window_ms is not None
    assert record.skew_ms is not None
    return record.freeze_window_ms, record.skew_ms


def run_floor(members: int, timing: Timing) -> tuple[float, float]:
    """The thread floor (see the module docstring): three waves on parked threads, no engine."""
    latencies = [timing.point_in_time() for _ in range(members)]
    gates = [[threading.Lock() for _ in range(members)] for _ in range(3)]
    for wave in gates:
        for gate in wave:
            gate.acquire()
    ended = [itertools.count(1), itertools.count(1)]
    held = [0.0] * members
    fixed = [0.0] * members
    thawed = [0.0] * members

    def release(wave: int) -> None:
        for gate in gates[wave]:
            gate.release()

    def lane(i: int) -> None:
        gates[0][i].acquire()
        time.sleep(timing.hook)
        held[i] = time.perf_counter()
        if next(ended[0]) == members:
            release(1)
        gates[1][i].acquire()
        time.sleep(latencies[i])
        fixed[i] = time.perf_counter()
        if next(ended[1]) == members:
            release(2)
        gates[2][i].acquire()
        thawed[i] = time.perf_counter()
        time.sleep(timing.hook)

    threads = [threading.Thread(target=lane, args=(i,), daemon=True) for i in range(members)]
    for thread in threads:
        thread.start()
    time.sleep(0.2 + members / 5000)  # every thread parked on its first gate
    with dispatch_priority():  # as the engine holds a group: long switch interval, no GC
        release(0)
        for thread in threads:
            thread.join()
    return (max(thawed) - min(held)) * 1000, (max(fixed) - min(fixed)) * 1000


def run_naive(members: int, timing: Timing) -> tuple[float, float]:
    """for each machine: freeze → snapshot → thaw (one after the other)."""
    hooks, snaps = BenchHooks(timing), BenchSnapshots(timing)
    held: list[datetime] = []
    thawed: list[datetime] = []
    fixed: list[datetime] = []
    spec = policy_for(1).groups["g"].members[0]
    policy = spec.hooks
    assert policy.pre is not None
    assert policy.post is not None
    for i in range(members):
        machine = Machine(provider="local", member=f"m{i}", machine_id=f"m{i}")
        pre = hooks.run(
            HookCall("naive", "bench", "g", f"m{i}", machine, "pre", policy.pre, spec=spec)
        )
        assert pre.ended_at is not None
        held.append(pre.ended_at)
        refs = snaps.take(
            SnapshotCall("naive", "bench", "g", f"m{i}", machine, "rp", "app", spec=spec)
        )
        fixed += [r.fixed_at for r in refs]
        thawed.append(utcnow())
        hooks.run(HookCall("naive", "bench", "g", f"m{i}", machine, "post", policy.post, spec=spec))
    return ms(min(held), max(thawed)), ms(min(fixed), max(fixed))


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=20)
    parser.add_argument("--hook-ms", type=float, default=20)
    parser.add_argument(
        "--naive-max-members",
        type=int,
        default=1000,
        help="skip the naive loop above this size (it takes members x (latency + 2 x hook))",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat",
        type=positive,
        default=1,
        help="back up each group N times with the engine; report the minimum and the median",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--batch",
        action="store_true",
        help="a provider with batch APIs (run_many, take_many): one call per phase",
    )
    which.add_argument(
        "--both",
        action="store_true",
        help="measure the per-call and the batch provider, their runs alternated",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the thread floor: parked threads and the same timing, no engine",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    modes = ["per-call", "batch"] if args.both else ["batch"] if args.batch else ["per-call"]
    if args.floor:
        modes.append("thread floor")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        timings = {
            mode: Timing(args.latency_ms, args.jitter_ms, args.hook_ms, args.seed) for mode in modes
        }
        runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):
            for mode in modes:
                if mode == "thread floor":
                    runs[mode].append(run_floor(size, timings[mode]))
                else:
                    runs[mode].append(run_engine(size, timings[mode], mode))
        naive_window = naive_skew = None
        if size <= args.naive_max_members:
            print(f"naive loop over {size} member(s)…", file=sys.stderr)
            naive_window, naive_skew = run_naive(
                size, Timing(args.latency_ms, args.jitter_ms, args.hook_ms, args.seed)
            )
        for mode in modes:
            windows = [w for w, _ in runs[mode]]
            skews = [s for _, s in runs[mode]]
            row = {
                "members": size,
                "mode": mode,
                "latency_ms": args.latency_ms,
                "jitter_ms": args.jitter_ms,
                "hook_ms": args.hook_ms,
                "runs": args.repeat,
                "freeze_window_ms": round(min(windows), 1),
                "freeze_window_median_ms": round(statistics.median(windows), 1),
                "skew_ms": round(min(skews), 1),
                "skew_median_ms": round(statistics.median(skews), 1),
                "naive_freeze_window_ms": None if naive_window is None else round(naive_window, 1),
                "naive_skew_ms": None if naive_skew is None else round(naive_skew, 1),
                "target_freeze_window_ms": args.latency_ms + args.jitter_ms + 50,
                "target_skew_ms": 50 + 2 * args.jitter_ms,
            }
            rows.append(row)
            if not (args.json or args.markdown):
                print(line(row, len(modes) > 1))
    if args.json:
        print(json.dumps(rows, indent=2))
    if args.markdown:
        print(markdown(rows))
    return 0


def line(row: dict[str, Any], with_mode: bool) -> str:
    spread = ""
    if row["runs"] > 1:
        spread = (
            f" [min of {row['runs']}; median freeze {row['freeze_window_median_ms']} ms,"
            f" skew {row['skew_median_ms']} ms]"
        )
    mode = f" {row['mode']:>12}" if with_mode else ""
    return (
        f"{row['members']:>5} members{mode}: freeze {row['freeze_window_ms']:>9} ms "
        f"(naive {row['naive_freeze_window_ms']}), skew {row['skew_ms']:>7} ms "
        f"(naive {row['naive_skew_ms']}){spread}"
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    def ms(value: float | int | None) -> str:
        return "—" if value is None else f"{value:,} ms"

    def ratio(naive: float | int | None, ours: float | int | None) -> str:
        return "—" if naive is None or not ours else f"{naive / ours:,.0f}x"

    with_mode = len({r.get("mode", "per-call") for r in rows}) > 1
    lines = [
        ("| members | mode " if with_mode else "| members ")
        + "| freeze window | naive freeze window | naive ÷ Quiesce | skew | naive skew "
        "| target window |",
        "|---:|" + (":---|" if with_mode else "") + "---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        window, naive = r["freeze_window_ms"], r["naive_freeze_window_ms"]
        shown_window, shown_skew = ms(window), ms(r["skew_ms"])
        if (r.get("runs") or 1) > 1:  # minimum of the runs, with their median
            shown_window += f" (median {ms(r['freeze_window_median_ms'])})"
            shown_skew += f" (median {ms(r['skew_median_ms'])})"
        mode = f" {r.get('mode', 'per-call')} |" if with_mode else ""
        lines.append(
            f"| {r['members']} |{mode} {shown_window} | {ms(naive)} | {ratio(naive, window)} "
            f"| {shown_skew} | {ms(r['naive_skew_ms'])} "
            f"| ≤ {ms(r['target_freeze_window_ms'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
