"""Benchmark: the read-only window (final pass + proof) at several tree sizes, regmig against the
documented recipe, on one server per size (Ceph RGW by default).

Not a test: it prints a table and the targets, and writes bench/results/window.json.

    python bench/window_bench.py --sizes 100000,300000,1000000

For each size it generates a semantically valid registry tree (migrate.sample.valid_registry:
repositories of tagged images on shared base layers, untagged revisions, multi-arch indexes),
then, untimed: a fresh server, ``regmig sync --state`` into an empty bucket and a second
``regmig sync --state`` (the online pass operators run before the window, which records the
link files' stamps). Then the change: 1% of the tags move to another manifest of their
repository, 0.5% are deleted, and new images add 1% of the objects. Timed:

- regmig's window: the final ``sync --state --delete``, then ``verify`` (and ``verify --deep``,
  whose ratio to ``verify`` is a target of its own, with its peak RSS), and ``verify`` of the
  bucket alone: its listing, the least any proof of what the bucket holds must do, so the best
  ratio to the recipe a window could reach on this server;
- the recipe's: ``aws s3 sync --delete``, ``find | grep -v _uploads | wc -l`` and
  ``aws s3 ls --recursive | grep -v _uploads | wc -l``;
- regmig's window as one pass: the same change made again (``redo``), then ``sync --state
  --delete --verify``, the final pass proving what it leaves.

With ``--cache cold`` the page cache is dropped before every timed phase, regmig's and the
recipe's alike (root only): each starts from the disk, as on a registry host whose tree no
longer fits in memory beside everything else, and no phase inherits what the one before it read
or what the machine reclaimed meanwhile. With ``--cache warm`` the whole tree is read once,
untimed, before every timed phase (``tar -cf - | wc -c``: every directory, inode and file), as
on a host whose tree fits in memory and was just walked by the online pass. Without either,
each phase meets the cache as the phases before it left it.

Fairness: populating a bucket costs about 35 minutes per million objects here, so it is done
once per size and shared. regmig's final pass applies the change to the bucket; the recipe's
then applies the change undone (moved tags moved back, deleted tags restored, new images
removed): the same number of uploads and deletes, over a bucket of the same size, on the same
server, with the tree in the page cache for both. The recipe's ``aws s3 sync`` sees every file
it need not copy as older than its object (the tree was written before the population), so it
uploads exactly the changed files, as it would in a real window.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrate import tree as layout  # noqa: E402
from migrate.sample import SampleRegistry, random_bytes, valid_registry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HERE, Row, S3Server, drop_caches, measure, record, regmig_binary, table  # noqa: E402

BUCKET = "bench"


@dataclass
class Change:
    """What the 1% change did, so it can be undone for the recipe's pass."""

    moved: dict[Path, bytes] = field(default_factory=dict)
    """Tag link -> its content before the move."""
    deleted: dict[Path, bytes] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)
    after: dict[Path, bytes] = field(default_factory=dict)
    """What the change wrote (moved tags, new files), kept by ``undo`` for ``redo``."""

    @property
    def files(self) -> int:
        return len(self.moved) + len(self.deleted) + len(self.created)


class _Recording(SampleRegistry):
    def __init__(self, root: str, change: Change) -> None:
        super().__init__(root)
        self.change = change

    def write(self, path: str, data: bytes) -> None:
        target = Path(self.root, path)
        if not target.exists():
            self.change.created.append(target)
        super().write(path, data)


def change_tree(root: Path, objects: int, seed: int = 2) -> Change:
    """1% of the tags moved (with the index link a move writes), 0.5% deleted, new images for 1%
    of the objects: what a busy registry does between two passes."""
    rng = random.Random(seed)
    change = Change()
    registry = _Recording(str(root), change)
    tags = sorted(root.glob("docker/registry/v2/repositories/*/*/_manifests/tags/*/current/link"))
    picked = rng.sample(tags, max(2, len(tags) * 3 // 200))
    moves, deletes = picked[: len(picked) * 2 // 3], picked[len(picked) * 2 // 3:]
    for link in moves:
        manifests = link.parents[3] / "revisions" / "sha256"
        current = link.read_bytes()
        targets = [p.name for p in manifests.iterdir() if f"sha256:{p.name}".encode() != current]
        if not targets:
            continue
        digest = "sha256:" + rng.choice(targets)
        change.moved[link] = current
        link.write_bytes(digest.encode())
        repository = link.relative_to(root / layout.REPOSITORIES).parts
        name, tag = "/".join(repository[:2]), repository[4]
        registry.link(name, f"_manifests/tags/{tag}/index", digest)
    for link in deletes:
        tag_dir = link.parents[1]
        for path in sorted(p for p in tag_dir.rglob("*") if p.is_file()):
            change.deleted[path] = path.read_bytes()
        shutil.rmtree(tag_dir)
    repositories = sorted({link.parents[4] for link in tags})
    target = len(change.created) + objects // 100
    number = 0
    while len(change.created) < target:
        repository = rng.choice(repositories).relative_to(root / layout.REPOSITORIES).as_posix()
        registry.image(repository, f"new-{number}", [random_bytes(rng, rng.randint(200, 4000))])
        number += 1
    return change


def undo(change: Change) -> None:
    change.after = {path: path.read_bytes() for path in [*change.moved, *change.created]}
    for path, data in change.moved.items():
        path.write_bytes(data)
    for path in change.created:
        path.unlink()
    for path, data in change.deleted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def redo(change: Change) -> None:
    """The change again, byte for byte, after ``undo``."""
    for path in change.deleted:
        path.unlink()
    for path, data in change.after.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def regmig(tree: Path, endpoint: str, *args: str) -> list[str]:
    return [regmig_binary(), args[0], str(tree), f"s3://{BUCKET}", "--endpoint-url", endpoint, "--no-progress",
            *args[1:]]


def shell(command: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", command]


def warm_cache(tree: Path) -> None:
    """The tree read once whole, so the next phase finds it in the page cache. Piped, not
    written to /dev/null, which GNU tar recognises and then reads no file's content."""
    archive = f"tar -C {shlex.quote(str(tree.parent))} -cf - {shlex.quote(tree.name)}"
    subprocess.run(shell(f"{archive} | wc -c > /dev/null"), check=True)


def run_size(size: int, work: Path, rows: list[Row], deep_alone: bool, cache: str) -> None:
    tree = work / f"tree-{size}"
    shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    objects = valid_registry(str(tree), size)
    print(f"\n{size:,}: generated {objects:,} files in {time.monotonic() - started:.0f} s", flush=True)
    state = work / "regmig.state"
    with S3Server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        env, endpoint = server.env, server.endpoint
        for phase in ("populate", "online"):  # untimed for the targets; printed for the record
            record(rows, measure("regmig", phase, regmig(tree, endpoint, "sync", "--state", str(state)), env, server,
                                 objects))

        def timed(tool: str, phase: str, argv: list[str], count: int) -> None:
            if cache == "cold":
                drop_caches()
            elif cache == "warm":
                warm_cache(tree)
            record(rows, measure(tool, phase, argv, env, server, count))

        change = change_tree(tree, objects)
        after = objects - len(change.deleted) + len(change.created)
        print(f"change: {len(change.moved):,} tags moved, {len(change.deleted):,} tag files deleted, "
              f"{len(change.created):,} files new", flush=True)
        timed("regmig", "final", regmig(tree, endpoint, "sync", "--state", str(state), "--delete", "--max-delete",
                                        "-1"), after)
        timed("regmig", "verify", regmig(tree, endpoint, "verify"), after)
        timed("regmig", "deep", regmig(tree, endpoint, "verify", "--deep"), after)
        alone = [regmig_binary(), "verify", f"s3://{BUCKET}", "--endpoint-url", endpoint, "--no-progress"]
        timed("regmig", "listing", alone, after)
        if deep_alone:
            timed("regmig", "deep-alone", [*alone, "--deep"], after)
        undo(change)
        aws = f"/usr/bin/aws --endpoint-url {endpoint}"
        timed("recipe", "final", shell(f"{aws} s3 sync --delete --only-show-errors --no-progress {tree} "
                                       f"s3://{BUCKET}"), objects)
        timed("recipe", "find", shell(f"find {tree} -type f | grep -v _uploads | wc -l"), objects)
        timed("recipe", "ls", shell(f"{aws} s3 ls --recursive s3://{BUCKET} | grep -v _uploads | wc -l"), objects)
        redo(change)  # the same change once more, for the window as one pass that proves what it leaves
        timed("regmig", "final+proof", regmig(tree, endpoint, "sync", "--state", str(state), "--delete",
                                              "--max-delete", "-1", "--verify"), after)
    shutil.rmtree(work, ignore_errors=True)


def targets(size: int, rows: list[Row]) -> list[str]:
    """The issue's targets for one size, as ratios of rows measured on the same server."""
    def wall(tool: str, phase: str) -> float | None:
        row = next((r for r in rows if r.tool == tool and r.phase == phase and r.exit_code == 0), None)
        return row.wall_s if row else None

    final, verify, deep = wall("regmig", "final"), wall("regmig", "verify"), wall("regmig", "deep")
    recipe = [wall("recipe", phase) for phase in ("final", "find", "ls")]
    if final is None or verify is None or deep is None or None in recipe:
        return [f"{size:,}: a run failed, no ratios"]
    ours, theirs = final + verify, sum(r for r in recipe if r is not None)
    rss = next(r for r in rows if r.tool == "regmig" and r.phase == "deep").peak_rss_mb
    listing = wall("regmig", "listing")
    floor = [] if listing is None else [
        f"{size:,} objects: the bucket's listing alone (verify without a source) {listing:.1f} s: a window that "
        f"lists the bucket once is at best 1/{theirs / listing:.1f} of the recipe, whatever its final pass costs"]
    one_pass = wall("regmig", "final+proof")
    proved = [] if one_pass is None else [
        f"{size:,} objects: window as one pass (sync --state --delete --verify) {one_pass:.1f} s: "
        f"1/{theirs / one_pass:.1f} of the recipe (target 1/10: {'met' if theirs >= 10 * one_pass else 'NOT met'})"]
    return [
        f"{size:,} objects: window regmig {final:.1f} + {verify:.1f} = {ours:.1f} s, recipe "
        f"{' + '.join(f'{r:.1f}' for r in recipe if r is not None)} = {theirs:.1f} s: 1/{theirs / ours:.1f} "
        f"(target 1/10: {'met' if theirs >= 10 * ours else 'NOT met'})",
        f"{size:,} objects: verify --deep {deep:.1f} s = {deep / verify:.2f}x verify (target 1.5x: "
        f"{'met' if deep <= 1.5 * verify else 'NOT met'}); window with it {final + deep:.1f} s = "
        f"1/{theirs / (final + deep):.1f} of the recipe",
        f"{size:,} objects: verify --deep peak RSS {rss} MB (target < 300 MB at 1,000,000: "
        f"{'met' if rss < 300 else 'NOT met'})",
        *proved,
        *floor,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="tree sizes in objects, comma-separated")
    parser.add_argument("--server", choices=("rgw", "moto"), default="rgw")
    parser.add_argument("--deep-alone", action="store_true", help="also time verify --deep of the bucket alone")
    parser.add_argument("--cache", choices=("as-left", "cold", "warm"), default="as-left",
                        help="cold: drop the page cache before every timed phase (root only); "
                             "warm: read the whole tree before every timed phase")
    args = parser.parse_args()
    if args.cache == "cold" and os.geteuid() != 0:
        sys.exit("bench: --cache cold drops the page cache: run as root")
    if not Path("/usr/bin/aws").exists():
        sys.exit("bench: /usr/bin/aws missing; run bench/install-peers.sh")
    S3Server.kind = args.server
    sizes = [int(size) for size in args.sizes.split(",") if size]
    work = HERE / "results" / "window-work"
    by_size: dict[int, list[Row]] = {}
    for size in sizes:
        by_size[size] = []
        run_size(size, work, by_size[size], args.deep_alone, args.cache)
    lines = []
    for size, rows in by_size.items():
        print(f"\n{size:,} objects\n{table(rows)}")
        lines += targets(size, rows)
    print()
    print("\n".join(lines))
    out = HERE / "results" / "window.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "server": args.server, "cache": args.cache,
                               "rows": {str(size): [asdict(row) for row in rows] for size, rows in by_size.items()},
                               "targets": lines}, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
