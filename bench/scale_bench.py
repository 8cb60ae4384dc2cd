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

    python bench/scale_bench.py --objects 20000 --large-blobs 6 --large-blob-size 64MiB
"""

from __future__ import annotations

import argparse
import shutil
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


def projection(rows: list[Row], phase: str) -> list[str]:
    """Per phase: CPU per object against 1 process, and the client-bound rate of N free cores."""
    one = next((r for r in rows if r.phase == phase and r.tool == "regmig-1p"), None)
    lines = []
    for row in (r for r in rows if r.phase == phase and one):
        processes = int(row.tool.removeprefix("regmig-").removesuffix("p"))
        growth = row.cpu_ms_per_object / one.cpu_ms_per_object
        if phase == "blobs":  # MiB per second of client CPU
            measured, per_core, unit = row.mib_per_s, row.mib_per_s * row.wall_s / row.client_cpu_s, "MiB/s"
        else:
            measured, per_core, unit = row.objects_per_s, row.objects / row.client_cpu_s, "objects/s"
        lines.append(f"{phase} {processes}p: measured {measured:,.1f} {unit}, CPU/object {growth:.2f}x of 1p "
                     f"(limit {CPU_GROWTH_LIMIT:.2f}x: {'met' if growth <= CPU_GROWTH_LIMIT else 'NOT met'}); "
                     f"projected client-bound: {per_core:,.0f} {unit} per core of client CPU, "
                     f"{processes * per_core:,.0f} {unit} on {processes} free cores")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000, help="small objects (0 skips the phase)")
    parser.add_argument("--large-blobs", type=int, default=6, help="large blobs (0 skips the phase)")
    parser.add_argument("--large-blob-size", default="64MiB")
    parser.add_argument("--chunk-size", default="8MiB")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--server", choices=("rgw", "moto"), default="rgw")
    args = parser.parse_args()
    S3Server.kind = args.server
    counts = [int(n) for n in args.processes.split(",")]
    work = HERE / "results" / "scale"
    shutil.rmtree(work, ignore_errors=True)
    rows: list[Row] = []
    if args.objects:
        small = work / "small"
        objects = generate(small, args.objects)
        print(f"small: {objects} files; server: {args.server}", flush=True)
        for processes in counts:
            record(rows, run(small, objects, processes, "small", args.chunk_size))
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
        for processes in counts:
            record(rows, run(large, blobs, processes, "blobs", args.chunk_size, blobs * size))
    print()
    print(table(rows))
    print("\nrss MB: the largest single process of the run. Measured: every row and 'measured'. "
          "Projected: 'projected client-bound' (objects per second of client CPU, one core per process, "
          "the server elsewhere).")
    for phase in ("small", "blobs"):
        print("\n".join(projection(rows, phase)))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
