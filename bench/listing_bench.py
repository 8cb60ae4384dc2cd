"""Benchmark: listing a destination by key ranges on several threads, and walking the source on
several threads with a cold and a warm page cache.

Not a test: it prints tables (warm rows and listings: the median of ``--repeat`` runs). One registry-shaped tree (a third blobs by digest, two thirds
repository links; repository names from Debian's package names, an independent sample of how
projects are named) is generated on disk, walked (``regmig``'s filesystem walk, 1, 2 and 4
threads, each after dropping the page cache and again warm), copied to a fresh S3 server with
``regmig sync``, then listed: ``aws s3 ls --recursive | wc -l`` (the documented recipe's count),
and regmig's listing on 1, 2, 4 and 8 threads (``migrate.parallel.parallel_walk`` over the
whole tree in four ranges a thread, cut as the product cuts them: ``migrate.cuts``). Every run
is a child process under GNU time (client CPU, peak RSS); each listing's count and digest must
agree (regmig's own ``.regmig/`` objects left out). It also prints how evenly the tree's keys
fall into 8 shards.

    python bench/listing_bench.py --objects 200000

The cold rows need root (``echo 3 > /proc/sys/vm/drop_caches``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrate import tree  # noqa: E402
from migrate.shards import WHOLE, shard_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HERE, Row, S3Server, drop_caches, measure, record, regmig_binary, table  # noqa: E402

# Debian's packaging prefixes, taken off so names start as the projects' own do.
_PACKAGING = re.compile(r"^(lib|python3?-|golang-(github-com-)?|node-|ruby-|r-cran-|php-|perl-|fonts-|gir1\.2-)")


def project_names() -> list[str]:
    names = subprocess.run(["apt-cache", "pkgnames"], capture_output=True, text=True, check=True).stdout.split()
    cleaned = sorted({_PACKAGING.sub("", name) for name in names} - {""})
    cleaned = [name for name in cleaned if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name)]
    if len(cleaned) < 1000:
        sys.exit("bench: apt-cache pkgnames gave too few names; run apt-get update")
    return cleaned


def generate(root: Path, objects: int, seed: int = 3) -> int:
    """A third blobs, two thirds links in repositories ``group/project`` (layer links, revision
    links, tags: current and index); returns the number of files."""
    rng = random.Random(seed)
    names = project_names()
    groups = rng.sample(names, 60)
    repositories = [f"{rng.choice(groups)}/{rng.choice(names)}" for _ in range(max(1, objects // 100))]
    paths: set[str] = set()

    def write(path: str, data: bytes) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        paths.add(path)

    for _ in range(objects // 3):
        data = rng.randbytes(16)
        digest = hashlib.sha256(data).hexdigest()
        write(f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data", data)
    while len(paths) < objects:
        repository = rng.choice(repositories)
        digest = rng.randbytes(32).hex()
        link = f"sha256:{digest}".encode()
        kind = rng.random()
        base = f"{tree.REPOSITORIES}{repository}"
        if kind < 0.6:
            write(f"{base}/_layers/sha256/{digest}/link", link)
        elif kind < 0.8:
            write(f"{base}/_manifests/revisions/sha256/{digest}/link", link)
        else:
            tag = f"v{rng.randrange(1000)}"
            write(f"{base}/_manifests/tags/{tag}/current/link", link)
            write(f"{base}/_manifests/tags/{tag}/index/sha256/{digest}/link", link)
    return len(paths)


def balance(root: Path, count: int = 8) -> str:
    per = [0] * count
    for directory, _, files in os.walk(root):
        rel = os.path.relpath(directory, root)
        for name in files:
            per[shard_of(f"{rel}/{name}", count).index] += 1
    mean = sum(per) / count
    return f"keys per shard of {count}: {per} (largest {max(per) / mean:.2f}x the mean, smallest {min(per) / mean:.2f}x)"


def child(argv: list[str]) -> int:
    """The measured process: one walk or listing, its count and digest written to --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("walk", "list"))
    parser.add_argument("location")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--auto", action="store_true", help="the walk as source_walk: threads only if it waits")
    parser.add_argument("--hash-limit", type=int, default=0)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from migrate.cuts import listing_ranges
    from migrate.parallel import parallel_walk, source_walk
    from migrate.storage import LocationOptions, open_location
    from migrate.storage.options import S3Options

    options = LocationOptions(s3=S3Options(endpoint_url=args.endpoint_url))
    hash_limit = args.hash_limit
    digest, count = hashlib.sha256(), 0
    with open_location(args.location, options) as storage:
        ranges = listing_ranges(storage, WHOLE, 4 * args.threads, args.threads)
        if args.auto:
            entries = source_walk(storage, ranges, args.threads, hash_limit=hash_limit)
        elif args.threads == 1:
            entries = storage.walk(hash_limit=hash_limit)
        else:
            entries = parallel_walk(storage, ranges, args.threads, hash_limit=hash_limit)
        for entry in entries:
            if entry.path.startswith(tree.REGMIG):  # regmig's own generation token, not the tree's
                continue
            digest.update(entry.path.encode() + b"\n")
            count += 1
    Path(args.out).write_text(json.dumps({"count": count, "digest": digest.hexdigest()}))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("walk", "list"):
        return child(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--threads", default="1,2,4,8", help="listing threads (empty: no listing rows)")
    parser.add_argument("--walk-threads", default="1,2,4,auto4",
                        help="source walk threads (autoN: source_walk, N threads only if the walk waits)")
    parser.add_argument("--walk-hash", default="0,4096",
                        help="hash limits of the walk: 0 as a final pass with --state, 4096 as sync against a listing")
    parser.add_argument("--repeat", type=int, default=3, help="warm walks and listings: the median of this many")
    parser.add_argument("--server", choices=("rgw", "moto"), default="rgw")
    args = parser.parse_args()
    S3Server.kind = args.server
    if os.geteuid() != 0:
        sys.exit("bench: the cold rows drop the page cache: run as root")
    work = HERE / "results" / "listing"
    shutil.rmtree(work, ignore_errors=True)
    source = work / "tree"
    started = time.monotonic()
    objects = generate(source, args.objects)
    print(f"tree: {objects} files in {time.monotonic() - started:.0f} s; {balance(source)}")
    print(f"load before: {os.getloadavg()}")
    rows: list[Row] = []
    results: dict[str, dict[str, object]] = {}
    me = [sys.executable, str(Path(__file__).resolve())]

    def run(tool: str, phase: str, argv: list[str], env: dict[str, str], server: S3Server | None,
            repeat: int = 1) -> None:
        out = work / f"{tool}-{phase}.json"
        runs = sorted((measure(tool, phase, [*argv, "--out", str(out)], env, server or _NO_SERVER, objects)
                       for _ in range(repeat)), key=lambda row: row.wall_s)
        record(rows, runs[len(runs) // 2])
        results[f"{tool} {phase}"] = json.loads(out.read_text())

    for hash_limit in [int(h) for h in args.walk_hash.split(",")]:
        for threads in [t for t in args.walk_threads.split(",") if t]:
            argv = [*me, "walk", str(source), "--threads", threads.removeprefix("auto"), "--hash-limit", str(hash_limit),
                    *(["--auto"] if threads.startswith("auto") else [])]
            name = f"walk-h{hash_limit}-{threads}" + ("" if threads.startswith("auto") else "t")
            drop_caches()
            run(name, "cold", argv, dict(os.environ), None)
            run(name, "warm", argv, dict(os.environ), None, args.repeat)

    listing_threads = [int(t) for t in args.threads.split(",") if t]
    aws_count = objects
    if listing_threads:
        with S3Server() as server:
            server.client.create_bucket(Bucket="bench")
            started = time.monotonic()
            subprocess.run([regmig_binary(), "sync", str(source), "s3://bench", "--endpoint-url", server.endpoint,
                            "--no-progress"], env=server.env, check=True, stdout=subprocess.DEVNULL)
            print(f"filled the bucket with regmig sync in {time.monotonic() - started:.0f} s")
            aws_out = work / "aws-count"
            aws = ["sh", "-c", f"/usr/bin/aws s3 ls --recursive s3://bench --endpoint-url {server.endpoint} "
                               f"| grep -v ' {tree.REGMIG}' | wc -l "
                               f"> {aws_out}"]
            record(rows, measure("aws s3 ls", "list", aws, server.env, server, objects))
            aws_count = int(aws_out.read_text().split()[0])
            for threads in listing_threads:
                run(f"regmig-{threads}t", "list", [*me, "list", "s3://bench", "--endpoint-url", server.endpoint,
                                                   "--threads", str(threads)], server.env, server, args.repeat)
    print(f"load after: {os.getloadavg()}")
    print()
    print(table(rows))
    agreed = {json.dumps(result, sort_keys=True) for result in results.values()}
    print(f"\nevery walk and listing: {sorted(agreed)}; aws s3 ls lines: {aws_count}")
    if len(agreed) != 1 or aws_count != objects:
        print("bench: the listings disagree")
        return 1
    return 0


class _NoServer:
    """The walk rows have no server: its CPU is zero."""

    def cpu(self) -> float:
        return 0.0


_NO_SERVER = _NoServer()

if __name__ == "__main__":
    sys.exit(main())
