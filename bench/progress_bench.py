"""Does the progress display cost a pass anything? The same 20,000-object final pass (a
``sync --delete`` from a state file, after a 1% change) and dry run, run on a pseudo-terminal
(``script``) with the live display, and with ``--no-progress``; alternated, so both see the
same server and cache. ``python bench/progress_bench.py [--links N] [--runs N]``."""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
from pathlib import Path

from harness import Row, S3Server, measure, record, regmig_binary, table

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrate.sample import bulk_registry  # noqa: E402


def on_a_terminal(argv: list[str]) -> list[str]:
    """The command run by script(1), so its stderr is a pseudo-terminal and the live display draws."""
    return ["script", "-qefc", shlex.join(argv), "/dev/null"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--links", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-progress-"))
    rows: list[Row] = []
    try:
        tree = work / "registry"
        objects = bulk_registry(str(tree), links=args.links, blobs=20, blob_size=1024 * 1024)
        with S3Server() as server:
            server.client.create_bucket(Bucket="bench")
            state = str(work / "bench.state")
            base = [regmig_binary(), "sync", str(tree), "s3://bench/r", "--endpoint-url", server.endpoint,
                    "--state", state]
            measure("regmig", "initial copy", on_a_terminal([*base, "--no-progress"]), server.env, server, objects)
            for run in range(args.runs):
                for index, link in enumerate(sorted(tree.rglob("link"))[run::100]):
                    link.write_bytes(b"sha256:" + f"{run}{index}".rjust(64, "0").encode())
                for label, flag in (("live progress", "--progress"), ("no progress", "--no-progress")):
                    dry = measure(f"regmig {label}", "dry run", on_a_terminal([*base, "--delete", "--dry-run", flag]),
                                  server.env, server, objects)
                    record(rows, dry)
                    final = measure(f"regmig {label}", "final pass", on_a_terminal([*base, "--delete", flag]),
                                    server.env, server, objects)
                    record(rows, final)
                    # The next label's final pass needs the same change to copy.
                    if label == "live progress":
                        for index, link in enumerate(sorted(tree.rglob("link"))[run::100]):
                            link.write_bytes(b"sha256:" + f"{run}x{index}".rjust(64, "0").encode())
        print(table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
