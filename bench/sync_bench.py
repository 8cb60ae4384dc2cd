"""Benchmark: regmig sync against aws s3 sync and rclone sync, same tree, same local S3 server.

Not a test: it prints a table and writes bench/results/latest.json. The server is Ceph RGW by
default (``--server rgw``: a production S3, about twice moto's PUT rate at less server CPU, so
client differences show more) or moto's (``--server moto``); each tool gets a fresh one. Client cost
is the figure that matters (the server shares this machine's two cores), so each tool runs as a
child process and its user+sys CPU and peak RSS come from GNU time; the server's CPU is the sum
over its processes.

    python bench/sync_bench.py --links 20000 --blobs 20 --blob-size 5MiB --memory-objects 1000000

Tools: regmig (keeping a --state file, as the runbooks do), regmig-listing (no state file: it lists
the destination every pass), regmig-full (regmig with its lean S3 path off: the row that justifies
it), aws (AWS CLI v2 from Debian), rclone (Debian). Phases: initial copy; delta (1% of links
changed, 0.5% deleted, 1% added; each tool syncs its own bucket with --delete); check (the
completeness check that follows in the read-only window: regmig verify, the recipe's
``aws s3 ls --recursive | wc -l``, rclone check); blobs (large blobs only, every tool with the same
multipart chunk size); memory (listing and planning only, dry run, of a generated tree against an
empty bucket).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrate.cli import parse_size  # noqa: E402
from migrate.sample import bulk_registry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HERE, REGMIG_TOOLS, Row, S3Server, measure, record, regmig_binary, table  # noqa: E402


def commands(tool: str, tree: Path, bucket: str, endpoint: str, delete: bool, dry_run: bool = False) -> list[str]:
    if tool in REGMIG_TOOLS:
        # regmig and regmig-full keep a state file (the documented workflow); regmig-listing lists
        # the destination on every pass: the row that shows what the state file buys.
        state = ["--state", str(tree.parent / f"state-{tool}")] if tool != "regmig-listing" and not dry_run else []
        return [regmig_binary(), "sync", str(tree), f"s3://{bucket}", "--endpoint-url", endpoint, "--no-progress",
                *(["--delete", "--max-delete", "-1"] if delete else []), *(["--dry-run"] if dry_run else []), *state]
    if tool == "aws":
        return ["/usr/bin/aws", "s3", "sync", str(tree), f"s3://{bucket}", "--endpoint-url", endpoint,
                "--only-show-errors", "--no-progress", *(["--delete"] if delete else []),
                *(["--dryrun"] if dry_run else [])]
    if tool == "rclone":
        return ["rclone", "sync", str(tree), f"bench:{bucket}", "--stats", "0", *(["--dry-run"] if dry_run else [])]
    raise ValueError(tool)


def large_blob_command(tool: str, tree: Path, bucket: str, endpoint: str, chunk: str, env: dict[str, str]) -> list[str]:
    """Every tool with the same multipart chunk size (and threshold), else its own defaults."""
    if tool in REGMIG_TOOLS:
        return [regmig_binary(), "sync", str(tree), f"s3://{bucket}", "--endpoint-url", endpoint, "--no-progress",
                "--chunk-size", chunk]
    if tool == "aws":
        config = tree.parent / "aws-config"
        aws_size = chunk.replace("MiB", "MB")  # the AWS CLI's MB are MiB
        config.write_text(f"[default]\ns3 =\n  multipart_threshold = {aws_size}\n  multipart_chunksize = {aws_size}\n")
        env["AWS_CONFIG_FILE"] = str(config)
        return commands(tool, tree, bucket, endpoint, False)
    rclone_size = chunk.replace("MiB", "Mi")
    return [*commands(tool, tree, bucket, endpoint, False), "--s3-chunk-size", rclone_size,
            "--s3-upload-cutoff", rclone_size]


def check_command(tool: str, tree: Path, bucket: str, endpoint: str) -> list[str]:
    """The completeness check after the final pass, also in the read-only window: regmig verify,
    and for aws the documented recipe's count of the bucket (``aws s3 ls --recursive | wc -l``)."""
    if tool in REGMIG_TOOLS:
        return [regmig_binary(), "verify", str(tree), f"s3://{bucket}", "--endpoint-url", endpoint]
    if tool == "aws":
        return ["sh", "-c", f"/usr/bin/aws s3 ls --recursive s3://{bucket} --endpoint-url {endpoint} | wc -l"]
    return ["rclone", "check", str(tree), f"bench:{bucket}", "--size-only"]


def mutate(tree: Path, seed: int = 2) -> int:
    """The delta pass: 1% of tag/layer links change content, 0.5% of files go, 1% new links appear."""
    rng = random.Random(seed)
    links = sorted(tree.rglob("link"))
    for path in rng.sample(links, max(1, len(links) // 100)):
        path.write_bytes(b"sha256:" + rng.randbytes(32).hex().encode())
    for path in rng.sample(links, max(1, len(links) // 200)):
        path.unlink()
    added = max(1, len(links) // 100)
    for i in range(added):
        new = tree / f"docker/registry/v2/repositories/bench/new-{i % 10}/_layers/sha256/{rng.randbytes(32).hex()}/link"
        new.parent.mkdir(parents=True, exist_ok=True)
        new.write_bytes(b"sha256:" + rng.randbytes(32).hex().encode())
    return len(links) + added


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets as ratios of rows from the same run (a row missing: not measured)."""
    def row(tool: str, phase: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.phase == phase and r.exit_code == 0), None)

    lines = []
    ours = row("regmig", "initial")
    for peer, limit in (("aws", 4), ("rclone", 2)):
        theirs = row(peer, "initial")
        if ours and theirs:
            ratio = theirs.cpu_ms_per_object / ours.cpu_ms_per_object
            lines.append(f"initial CPU/object: regmig {ours.cpu_ms_per_object} ms, {peer} {theirs.cpu_ms_per_object} ms: "
                         f"1/{ratio:.2f} (target 1/{limit}: {'met' if ratio >= limit else 'NOT met'}); "
                         f"wall {ours.wall_s} vs {theirs.wall_s} s ({'not behind' if ours.wall_s <= theirs.wall_s else 'BEHIND'})")
    for tool in ("regmig", "regmig-listing"):
        ours, theirs = row(tool, "delta"), row("aws", "delta")
        if ours and theirs:
            ratio = theirs.wall_s / ours.wall_s
            lines.append(f"delta --delete: {tool} {ours.wall_s} s, aws {theirs.wall_s} s: {ratio:.2f}x "
                         f"(target 5x: {'met' if ratio >= 5 else 'NOT met'})")
    ours, theirs = row("regmig", "blobs"), row("aws", "blobs")
    if ours and theirs:
        lines.append(f"large blobs: regmig {ours.mib_per_s} MiB/s, aws {theirs.mib_per_s} MiB/s "
                     f"({'not behind' if ours.mib_per_s >= theirs.mib_per_s else 'BEHIND'})")
    ours = row("regmig", "memory")
    if ours:
        lines.append(f"memory: regmig peak RSS {ours.peak_rss_mb} MB for {ours.objects:,} objects "
                     f"(target < 300 MB: {'met' if ours.peak_rss_mb < 300 else 'NOT met'})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=20000)
    parser.add_argument("--blobs", type=int, default=20)
    parser.add_argument("--blob-size", default="5MiB")
    parser.add_argument("--tools", default="regmig,regmig-listing,regmig-full,aws,rclone")
    parser.add_argument("--no-delta", action="store_true", help="skip the delta (read-only window) pass")
    parser.add_argument("--delta-tools", help="tools in the delta pass (default: all); rclone's takes ~13 min here")
    parser.add_argument("--memory-objects", type=int, default=0,
                        help="objects in the memory pass (dry run of a generated tree); 0 skips it")
    parser.add_argument("--memory-tools", default="regmig,aws,rclone")
    parser.add_argument("--large-blobs", type=int, default=0, help="blobs in the large-blob phase; 0 skips it")
    parser.add_argument("--large-blob-size", default="64MiB")
    parser.add_argument("--chunk-size", default="8MiB", help="the multipart chunk size all tools use there")
    parser.add_argument("--large-tools", default="regmig,aws,rclone")
    parser.add_argument("--server", choices=("rgw", "moto"), default="rgw",
                        help="Ceph RGW (a production S3, the faster server: client differences show more) or moto")
    args = parser.parse_args()
    S3Server.kind = args.server

    tools = [t for t in args.tools.split(",") if t]
    for tool in tools:
        binary = {"aws": "/usr/bin/aws", "rclone": "rclone"}.get(tool)
        if binary and not shutil.which(binary):
            sys.exit(f"bench: {binary} missing; run bench/install-peers.sh")
    work = HERE / "results" / "work"
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    objects = bulk_registry(str(source), args.links, args.blobs, parse_size(args.blob_size))
    print(f"tree: {objects} objects ({args.links} links of 71 bytes, {args.blobs} x {args.blob_size} blobs); "
          f"server: {args.server}")

    rows: list[Row] = []
    delta_tools = [] if args.no_delta else [t for t in (args.delta_tools or args.tools).split(",") if t in tools]
    for tool in tools:
        # Each tool gets a fresh server: moto slows down as it holds more objects, and no tool
        # should pay for the buckets of the tools before it.
        with S3Server() as server:
            tree = work / tool / "tree"
            shutil.copytree(source, tree, copy_function=shutil.copy2)
            server.client.create_bucket(Bucket="bench")
            record(rows, measure(tool, "initial", commands(tool, tree, "bench", server.endpoint, False), server.env,
                                 server, objects))
            if tool in delta_tools:
                changed = mutate(tree)
                record(rows, measure(tool, "delta", commands(tool, tree, "bench", server.endpoint, True), server.env,
                                     server, changed))
                record(rows, measure(tool, "check", check_command(tool, tree, "bench", server.endpoint), server.env,
                                     server, changed))
        shutil.rmtree(work / tool)
    if args.large_blobs:
        large = work / "large" / "tree"
        size = parse_size(args.large_blob_size)
        count = bulk_registry(str(large), 0, args.large_blobs, size)
        large_tools = [t for t in args.large_tools.split(",") if t]
        # Whichever tool copies these blobs first pays about 30% more server CPU (seen with every
        # order): one untimed copy first, so the order of the tools does not decide the result.
        with S3Server() as server:
            server.client.create_bucket(Bucket="bench")
            warm_env = dict(server.env)
            subprocess.run(large_blob_command(large_tools[0], large, "bench", server.endpoint, args.chunk_size,
                                              warm_env), env=warm_env, stdout=subprocess.DEVNULL, check=False)
        for tool in large_tools:
            with S3Server() as server:
                server.client.create_bucket(Bucket="bench")
                blob_env = dict(server.env)
                argv = large_blob_command(tool, large, "bench", server.endpoint, args.chunk_size, blob_env)
                record(rows, measure(tool, "blobs", argv, blob_env, server, count, count * size))
    if args.memory_objects:
        big = work / "memory"
        started = time.monotonic()
        count = bulk_registry(str(big), args.memory_objects, 0, 0, repositories=1000)
        print(f"memory pass: generated {count} files in {time.monotonic() - started:.0f} s", flush=True)
        with S3Server() as server:
            server.client.create_bucket(Bucket="bench")
            for tool in [t for t in args.memory_tools.split(",") if t]:
                record(rows, measure(tool, "memory", commands(tool, big, "bench", server.endpoint, True, dry_run=True),
                                     server.env, server, count))
    print()
    phases = ["initial", "delta", "check", "blobs", "memory"]
    print(table(sorted(rows, key=lambda r: phases.index(r.phase))))
    print()
    print("\n".join(targets(rows)))
    summary = {"command": " ".join(sys.argv), "server": args.server, "objects": objects,
               "rows": [asdict(r) for r in rows],
               "targets": targets(rows)}
    out = HERE / "results" / "latest.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nwritten: {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
