"""Benchmark: regmig's client work per object in instructions, on 1, 2 and 4 worker processes.

Why: the issue "scale-out" asks that the client's CPU per object rise at most 10% from
``--processes 1`` to 4. scale_bench.py measured CPU seconds (marginal 1.07x at 2 processes, 1.25x
at 4), but this machine has two cores shared with the Ceph RGW server, and the server's own CPU
per object, for identical work, rose 1.14x at 4 processes too: seconds of CPU are inflated by
contention (caches, scheduler) and do not say how much of the rise is regmig's own extra work.
Hardware counters (``perf stat``) are not available in this VM, so the work is counted by
valgrind's callgrind instead: it counts the instructions each process executes, which contention
does not change.

Every row is the sync scale_bench.py runs (same tree, same command and environment, a fresh Ceph
RGW and an empty bucket), with regmig under ``valgrind --tool=callgrind --trace-children=yes``:
valgrind follows the exec of multiprocessing's fork server (and its resource tracker) and the
workers it forks. A forked child inherits its parent's counts so far, which would count the fork
server's start once more in every worker; ``--dump-before=fork`` writes the counts out and zeroes
them before each fork, so each instruction lands in exactly one output part. The client's
instructions are the sum of the ``summary:`` line of every part the run wrote (the pass, the fork
server, the resource tracker, the workers). ``reap.py`` (outside valgrind) waits for the
processes the pass leaves behind, so their parts are written before they are summed. A run must
exit 0 and leave every object in the bucket, or it is not counted: it is reported, its output kept,
and the configuration run again (``--attempts``). Before commit 1726cb3, a 4-process sync under
valgrind now and then ended "INCOMPLETE" (exit 1) with every object copied: a worker's last progress
tick could reach the pass after that shard's result and be counted again.

Callgrind counts user-space instructions: the kernel's work for the client (system calls, about a
quarter of its CPU natively) is not in them. Threads that wake on a timer (progress ticks, the
lease's renewal) run about as often per second as natively, over a run valgrind makes some 50
times longer: their share is larger here than in a native run.

``--code DIR`` measures the regmig source tree in DIR (its ``migrate`` first on PYTHONPATH, and the
working directory of the run: Python 3.11's fork server puts its working directory first on its
path and ignores the pass's), for a fixed snapshot while the checkout is being edited:
``git archive HEAD | tar -x -C DIR``.

Two sizes separate what a run pays once from what it pays per object: the marginal instructions
per object are the slope between them, the fixed part its intercept.

    python bench/scale_instructions.py
    python bench/scale_instructions.py --objects 1000,4000 --again 4:1000 --code /tmp/ins/head
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HERE, S3Server
from listing_bench import generate
from scale_bench import CPU_GROWTH_LIMIT, sync_command

VALGRIND = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-before=fork", "-q"]


@dataclass(frozen=True)
class Run:
    processes: int
    objects: int
    instructions: int
    parts: int
    """Callgrind output parts summed: one per process, plus one per fork a process made."""
    wall_s: float
    failed: int
    """Runs of this configuration that failed before this one (not counted)."""


class Failed(Exception):
    """A run that exited non-zero or left objects out: its instructions are not counted."""


def callgrind_total(directory: Path) -> tuple[int, int]:
    """The instructions over every part callgrind wrote in ``directory``, and how many parts."""
    parts = sorted(directory.glob("callgrind.out.*"))
    total = 0
    for part in parts:
        summary = next((line for line in part.read_text().splitlines() if line.startswith("summary:")), None)
        if summary is None:
            sys.exit(f"bench: {part} has no summary line (a process did not end?)")
        total += int(summary.split()[1])
    return total, len(parts)


def bucket_count(server: S3Server) -> int:
    """The registry's keys in the bucket, not regmig's own ``.regmig/``."""
    return sum(page.get("KeyCount", 0) for page in
               server.client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="docker/"))


def run(tree: Path, objects: int, processes: int, out: Path, chunk: str, code: Path) -> tuple[int, int, float]:
    """One sync under callgrind into a fresh server's empty bucket: its instructions, parts and
    wall seconds; Failed unless it exits 0 and the bucket then holds every object."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with S3Server() as server:
        server.client.create_bucket(Bucket="bench")
        argv = [sys.executable, str(HERE / "reap.py"), *VALGRIND, f"--callgrind-out-file={out}/callgrind.out.%p",
                *sync_command(tree, server.endpoint, processes, chunk)]
        start = time.monotonic()
        child = subprocess.run(argv, env={**server.env, "PYTHONPATH": str(code)}, cwd=code, capture_output=True,
                               text=True, check=False)
        wall = time.monotonic() - start
        (out / "stdout").write_text(child.stdout)
        (out / "stderr").write_text(child.stderr)
        if child.returncode != 0:
            raise Failed(f"exited {child.returncode}:\n{child.stdout[-2000:]}{child.stderr[-2000:]}")
        held = bucket_count(server)
    if held != objects:
        raise Failed(f"left {held} of {objects} objects in the bucket")
    return *callgrind_total(out), wall


def measured(tree: Path, objects: int, processes: int, out: Path, chunk: str, code: Path, attempts: int) -> Run:
    """A configuration's first run that succeeds, within ``attempts``; a failed run's output is kept
    beside, in ``<out>-failed<k>``, and the benchmark stops when every attempt failed."""
    for attempt in range(1, attempts + 1):
        try:
            instructions, parts, wall = run(tree, objects, processes, out, chunk, code)
            return Run(processes, objects, instructions, parts, round(wall, 1), attempt - 1)
        except Failed as failure:
            kept = out.with_name(f"{out.name}-failed{attempt}")
            shutil.rmtree(kept, ignore_errors=True)
            out.rename(kept)
            print(f"   {processes}p {objects:,} objects, attempt {attempt} of {attempts} failed (output in {kept}): "
                  f"{failure}", flush=True)
    sys.exit(f"bench: {processes}p {objects:,} objects failed {attempts} times")


def row(run_: Run) -> str:
    return (f"{run_.processes:>2} {run_.objects:>8,} {run_.instructions:>18,} "
            f"{run_.instructions / run_.objects:>14,.0f} {run_.parts:>6} {run_.wall_s:>8} {run_.failed:>6}")


def marginal(runs: dict[tuple[int, int], Run], low: int, high: int) -> list[str]:
    """Per N: instructions per added object (the slope between the sizes), against 1 process's,
    and what a run pays once (the intercept)."""
    slopes = {n: (runs[n, high].instructions - runs[n, low].instructions)
              / (runs[n, high].objects - runs[n, low].objects) for n, size in runs if size == low}
    head = f"{'N':>2} {'marginal Ir/object':>18} {'vs 1p':>6} {'fixed Ir':>16}  limit {CPU_GROWTH_LIMIT:.2f}x"
    lines = [head, "-" * len(head)]
    for n, slope in sorted(slopes.items()):
        growth = slope / slopes[1]
        fixed = runs[n, low].instructions - slope * runs[n, low].objects
        lines.append(f"{n:>2} {slope:>18,.0f} {growth:>5.3f}x {fixed:>16,.0f}  "
                     f"{'met' if growth <= CPU_GROWTH_LIMIT else 'NOT met'}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="2000,8000", help="the two tree sizes A,B")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--chunk-size", default="8MiB")
    parser.add_argument("--again", metavar="N:SIZE",
                        help="afterwards, run this configuration once more to show the count repeats")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ins"),
                        help="the trees and each run's callgrind output (kept for callgrind_annotate)")
    parser.add_argument("--attempts", type=int, default=3,
                        help="runs of a configuration until one succeeds (a failed run is reported, not counted)")
    parser.add_argument("--code", type=Path, default=HERE.parent,
                        help="the regmig source tree to measure (default: this checkout)")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.objects.split(","))
    if len(sizes) != 2:
        parser.error("--objects takes two sizes A,B")
    low, high = sizes
    counts = [int(n) for n in args.processes.split(",")]
    if 1 not in counts:
        parser.error("--processes must include 1: the marginal is compared with 1 process's")
    again = tuple(int(n) for n in args.again.split(":")) if args.again else None
    if again is not None and (again[0] not in counts or again[1] not in (low, high)):
        parser.error("--again must name one of the runs: N of --processes, SIZE of --objects")
    if shutil.which("valgrind") is None:
        sys.exit("bench: valgrind not found (apt-get install -y valgrind)")
    code, work = args.code.resolve(), args.work.resolve()  # the runs' working directory is the code's
    started = time.monotonic()
    trees = {size: work / f"tree-{size}" for size in (low, high)}
    files: dict[int, int] = {}
    for size, tree in trees.items():
        shutil.rmtree(tree, ignore_errors=True)
        files[size] = generate(tree, size)
    print("Client work of `regmig sync --processes N` in instructions (Ir), counted by valgrind's callgrind over"
          "\nevery process of the run: unaffected by contention for the cores, unlike CPU seconds (user space"
          "\nonly: the kernel's work for the client is not counted)."
          f"\nTrees: {', '.join(f'{n:,} files' for n in files.values())}; server: Ceph RGW on 127.0.0.1, "
          f"outside valgrind; regmig code: {code}\n", flush=True)
    head = (f"{'N':>2} {'objects':>8} {'instructions (Ir)':>18} {'Ir/object':>14} {'parts':>6} {'wall s':>8} "
            f"{'failed':>6}")
    print(f"{head}\n{'-' * len(head)}", flush=True)
    runs: dict[tuple[int, int], Run] = {}
    for processes in counts:
        for size in (low, high):
            runs[processes, size] = measured(trees[size], files[size], processes, work / f"{processes}p-{size}",
                                             args.chunk_size, code, args.attempts)
            print(row(runs[processes, size]), flush=True)
    print(f"\nMarginal instructions per object, {files[low]:,} to {files[high]:,} objects "
          "(slope between the sizes), and the fixed part (intercept):")
    print("\n".join(marginal(runs, low, high)))
    if again is not None:
        processes, size = again
        first = runs[processes, size]
        second = measured(trees[size], files[size], processes, work / f"{processes}p-{size}-again",
                          args.chunk_size, code, args.attempts)
        print(f"\nRepeat of {processes}p {files[size]:,} objects: {first.instructions:,} then {second.instructions:,} "
              f"Ir ({100 * (second.instructions / first.instructions - 1):+.3f}%)")
    print(f"\nTotal time {time.monotonic() - started:,.0f} s; callgrind output under {work}/<N>p-<size>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
