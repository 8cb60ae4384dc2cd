"""Benchmark: one sync on 1, 2 and 4 worker processes (``--processes N``), small objects and large blobs.

Not a test: it prints a table. The small-object tree is listing_bench.py's (a third blobs, two
thirds links in repositories named like Debian's packages, so the shards' fixed name table has
real names to cut); the large-blob tree is ``bulk_registry``'s blobs. Every row is one
``regmig sync`` into an empty bucket of a fresh Ceph RGW (or moto), run under GNU time: client
CPU is every process of the run (the pass and its workers), peak RSS is the largest single
process (GNU time's maximum over the process tree), and each run's bucket must hold every object.

Measured figures are the rows. This machine has two cores and the server shares them, so the
wall-clock rows say what this machine does; the projection says what the client would reach
where the server is elsewhere and each process has a core: ``objects / client CPU seconds`` per
core, times N. It is labelled projected.

Two sizes (``--objects 20000,80000``) separate what a run pays once (the fork server, each
worker's start, its clients, each shard's listings) from what it pays per object: the marginal
CPU per object is the slope between the sizes, and what a run of ten million objects pays per
object. ``--repeat R`` runs every row R times, the rounds interleaved and each in another order,
and takes medians: one row of 20,000 objects moves by a fifth from run to run here. The server's
CPU per object against 1 process is printed beside the client's: the server does the same work
in every row, so its growth is what contention for the two cores alone adds to a process's CPU.

    python bench/scale_bench.py --objects 20000 --large-blobs 6 --large-blob-size 64MiB
    python bench/scale_bench.py --objects 20000,80000 --repeat 3 --large-blobs 0
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrate.cli import parse_size  # noqa: E402
from migrate.sample import bulk_registry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HERE, Row, S3Server, measure, record, regmig_binary, table  # noqa: E402
from listing_bench import generate  # noqa: E402

CPU_GROWTH_LIMIT = 1.10
"""The issue's limit: client CPU per object may rise at most 10% from 1 process to N."""


def sync_command(tree: Path, endpoint: str, processes: int, chunk: str) -> list[str]:
    return [regmig_binary(), "sync", str(tree), "s3://bench", "--endpoint-url", endpoint, "--no-progress",
            "--processes", str(processes), "--chunk-size", chunk]


def run(tree: Path, objects: int, processes: int, phase: str, chunk: str, size: int = 0) -> Row:
    """One sync into a fresh server's empty bucket; the bucket must then hold every object."""
    with S3Server() as server:
        server.client.create_bucket(Bucket="bench")
        row = measure(f"regmig-{processes}p", phase, sync_command(tree, server.endpoint, processes, chunk),
                      server.env, server, objects, size)
        held = sum(page.get("KeyCount", 0) for page in  # the registry's keys, not regmig's own .regmig/
                   server.client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="docker/"))
    if held != objects:
        sys.exit(f"bench: {row.tool} {phase} left {held} of {objects} objects in the bucket")
    return row


def median_rows(rows: list[Row]) -> list[Row]:
    """One row per tool, phase and size: the run of median client CPU (its other figures with it)."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.tool, row.phase, row.objects), []).append(row)
    return [sorted(group, key=lambda r: r.client_cpu_s)[(len(group) - 1) // 2] for group in groups.values()]


def processes_of(row: Row) -> int:
    return int(row.tool.removeprefix("regmig-").removesuffix("p"))


def projection(rows: list[Row], phase: str) -> list[str]:
    """Per phase, at its largest size: CPU per object against 1 process, and the client-bound rate
    of N free cores."""
    largest = max((r.objects for r in rows if r.phase == phase), default=0)
    rows = [r for r in rows if r.phase == phase and r.objects == largest]
    one = next((r for r in rows if processes_of(r) == 1), None)
    lines = []
    for row in (r for r in rows if one):
        processes = processes_of(row)
        growth = row.cpu_ms_per_object / one.cpu_ms_per_object
        if phase == "blobs":  # MiB per second of client CPU
            measured, per_core, unit = row.mib_per_s, row.mib_per_s * row.wall_s / row.client_cpu_s, "MiB/s"
        else:
            measured, per_core, unit = row.objects_per_s, row.objects / row.client_cpu_s, "objects/s"
        lines.append(f"{phase} {processes}p: measured {measured:,.1f} {unit}, CPU/object {growth:.2f}x of 1p "
                     f"(limit {CPU_GROWTH_LIMIT:.2f}x: {'met' if growth <= CPU_GROWTH_LIMIT else 'NOT met'}), "
                     f"server CPU/object {row.server_cpu_s / one.server_cpu_s:.2f}x of 1p; projected "
                     f"client-bound: {per_core:,.0f} {unit} per core of client CPU, "
                     f"{processes * per_core:,.0f} {unit} on {processes} free core{'s' if processes > 1 else ''}")
    return lines


def marginal(rows: list[Row]) -> list[str]:
    """With two sizes of the small tree: each N's CPU per added object (the slope) and what its
    run pays once (the intercept), the slope against 1 process's."""
    sizes = sorted({r.objects for r in rows if r.phase == "small"})
    if len(sizes) < 2:
        return []
    low, high = sizes[0], sizes[-1]
    at = {(processes_of(r), r.objects): r for r in rows if r.phase == "small"}
    slopes = {n: (at[n, high].client_cpu_s - at[n, low].client_cpu_s) / (high - low)
              for n, size in at if size == low and (n, high) in at}
    lines = []
    for n, slope in sorted(slopes.items()):
        fixed = at[n, low].client_cpu_s - slope * low
        growth = slope / slopes[1] if 1 in slopes else float("nan")
        verdict = "met" if growth <= CPU_GROWTH_LIMIT else "NOT met"
        server = ((at[n, high].server_cpu_s - at[n, low].server_cpu_s) /
                  (at[1, high].server_cpu_s - at[1, low].server_cpu_s)) if 1 in slopes else float("nan")
        lines.append(f"small {n}p, {low:,} to {high:,} objects: marginal CPU/object {1000 * slope:.3f} ms "
                     f"({growth:.2f}x of 1p, limit {CPU_GROWTH_LIMIT:.2f}x: {verdict}), paid once {fixed:.2f} s, "
                     f"server's marginal CPU/object {server:.2f}x of 1p")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="20000",
                        help="small objects, or two sizes A,B for the marginal CPU per object (0 skips the phase)")
    parser.add_argument("--large-blobs", type=int, default=6, help="large blobs (0 skips the phase)")
    parser.add_argument("--large-blob-size", default="64MiB")
    parser.add_argument("--chunk-size", default="8MiB")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every row; the medians are compared")
    parser.add_argument("--server", choices=("rgw", "moto"), default="rgw")
    args = parser.parse_args()
    S3Server.kind = args.server
    counts = [int(n) for n in args.processes.split(",")]
    work = HERE / "results" / "scale"
    shutil.rmtree(work, ignore_errors=True)
    rows: list[Row] = []
    sizes = [int(n) for n in args.objects.split(",") if int(n)]
    if sizes:
        trees = {size: generate(work / f"small-{size}", size) for size in sizes}
        print(f"small: {', '.join(f'{n} files' for n in trees.values())}; server: {args.server}", flush=True)
        for round_ in range(args.repeat):  # each round in another order: drift spreads over the rows
            order = [(n, size) for n in counts for size in sizes]
            for processes, size in order[round_ % len(order):] + order[:round_ % len(order)]:
                record(rows, run(work / f"small-{size}", trees[size], processes, "small", args.chunk_size))
    if args.large_blobs:
        large = work / "large"
        size = parse_size(args.large_blob_size)
        blobs = bulk_registry(str(large), 0, args.large_blobs, size)
        print(f"large: {blobs} blobs of {args.large_blob_size}", flush=True)
        # The first copy of these blobs pays more server CPU whatever the tool (sync_bench.py): one untimed.
        with S3Server() as server:
            server.client.create_bucket(Bucket="bench")
            subprocess.run(sync_command(large, server.endpoint, 1, args.chunk_size), env=server.env,
                           stdout=subprocess.DEVNULL, check=True)
        for _ in range(args.repeat):
            for processes in counts:
                record(rows, run(large, blobs, processes, "blobs", args.chunk_size, blobs * size))
    medians = median_rows(rows) if args.repeat > 1 else rows
    print()
    print(table(medians) if args.repeat == 1 else f"medians of {args.repeat} runs:\n{table(medians)}")
    print("\nrss MB: the largest single process of the run. Measured: every row and 'measured'. "
          "Projected: 'projected client-bound' (objects per second of client CPU, one core per process, "
          "the server elsewhere).")
    for phase in ("small", "blobs"):
        print("\n".join(projection(medians, phase)))
    print("\n".join(marginal(medians)))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
