"""The progress display an operator watches: in a real 80-column tmux pane during a long copy to
Ceph RGW, as plain lines at the configured interval where stderr is a file, and the pure pieces
behind them (the totals estimated from the blob digest space, lines fitted to any width)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import s3_client
from migrate import tree
from migrate.estimate import WalkEstimate
from migrate.progress import Snapshot, plain_line, terminal_lines
from migrate.estimate import Totals
from migrate.sample import bulk_registry

REGMIG = str(Path(sys.executable).parent / "regmig")
_DONE_OF = re.compile(r"([\d,]+) of ~?([\d,]+) objects")
_ETA = re.compile(r"ETA ~?\d+:\d\d:\d\d")


def _tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is needed for the terminal test (tests/install-tools.sh installs it)")
    return tmux


def test_live_display_fits_80_columns_and_shows_an_eta_early(rgw_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tmux = _tmux()
    s3 = s3_client(rgw_endpoint)
    s3.create_bucket(Bucket="regmig-progress")
    objects = bulk_registry(str(tmp_path / "registry"), links=1200, blobs=400, blob_size=2048)
    script = tmp_path / "run.sh"
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in os.environ.items()
                      if name.startswith("AWS_"))
    script.write_text(f"{exports}{shlex.quote(REGMIG)} sync {shlex.quote(str(tmp_path / 'registry'))} "
                      f"s3://regmig-progress/r --endpoint-url {rgw_endpoint} --max-requests-per-second 120\n"
                      f"echo EXIT=$?\nsleep 60\n")
    socket = f"regmig-test-{os.getpid()}"
    subprocess.run([tmux, "-L", socket, "new-session", "-d", "-x", "80", "-y", "24", "bash", str(script)], check=True)
    screens: list[list[str]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pane = subprocess.run([tmux, "-L", socket, "capture-pane", "-p", "-J"], capture_output=True, text=True,
                                  check=True).stdout
            lines = pane.rstrip("\n").split("\n")
            screens.append(lines)
            if any(line.startswith("EXIT=") for line in lines):
                break
            time.sleep(0.25)
    finally:
        subprocess.run([tmux, "-L", socket, "kill-server"], check=False)
    final = screens[-1]
    assert "EXIT=0" in final, "\n".join(final)
    assert any(line.startswith("sync OK") for line in final)
    first_eta = None
    for screen in screens:
        # -J joins wrapped lines: a redraw that wrapped would show here as a line wider than the pane,
        # and stacked half-lines as more than one progress line. (The report after it may wrap: paths.)
        lines = screen[:next((i for i, line in enumerate(screen) if line.startswith("sync OK")), len(screen))]
        assert all(len(line) <= 80 for line in lines), "\n".join(lines)
        assert sum(1 for line in lines if _DONE_OF.search(line)) <= 1, "\n".join(lines)
        text = "\n".join(lines)
        done = _DONE_OF.search(text)
        if first_eta is None and done and _ETA.search(text):
            first_eta = int(done.group(1).replace(",", ""))
    assert first_eta is not None, "no ETA was ever shown"
    assert first_eta < objects / 4, f"the first ETA came with {first_eta:,} of {objects:,} objects done"


def test_plain_progress_lines_at_the_interval_where_stderr_is_a_file(moto_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s3_client(moto_endpoint).create_bucket(Bucket="regmig-plain-progress")
    bulk_registry(str(tmp_path / "registry"), links=500, blobs=20, blob_size=1024)
    log = tmp_path / "sync.log"
    with open(tmp_path / "stderr", "w") as stderr:
        started = time.monotonic()
        done = subprocess.run([REGMIG, "sync", str(tmp_path / "registry"), "s3://regmig-plain-progress/r",
                               "--endpoint-url", moto_endpoint, "--max-requests-per-second", "100",
                               "--progress-interval", "1", "--log-file", str(log)],
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120)
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert elapsed > 4
    assert len(lines) >= int(elapsed) - 3, lines
    assert all(line.startswith("sync: ") and " objects" in line for line in lines)
    assert all("\r" not in line and "\x1b" not in line for line in lines)  # plain text, no redraws
    logged = [line for line in log.read_text().splitlines() if " progress: sync: " in line]
    assert len(logged) >= len(lines) - 1
    stamps = [time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) for line in logged]
    assert all(0 <= later - earlier <= 2 for earlier, later in zip(stamps, stamps[1:]))

    quiet = subprocess.run([REGMIG, "sync", str(tmp_path / "registry"), "s3://regmig-plain-progress/r2",
                            "--endpoint-url", moto_endpoint], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""  # the default interval (30 s) is longer than this run


def _blob_paths(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        digest = hashlib.sha256(rng.randbytes(16)).hexdigest()
        paths.append((f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data", rng.randint(1, 10_000_000)))
    return sorted(paths)


def test_totals_are_estimated_from_the_share_of_the_digest_space_walked() -> None:
    blobs = _blob_paths(20_000, seed=3)
    estimate = WalkEstimate()
    assert estimate.totals(0, 0, finished=False) is None
    planned = 0
    for path, size in blobs[:600]:  # 3% of the walk
        estimate.see(path)
        estimate.planned(size)
        planned += size
    totals = estimate.totals(600, planned, finished=False)
    assert totals is not None and not totals.exact
    true_bytes = sum(size for _, size in blobs)
    assert abs(totals.bytes - true_bytes) / true_bytes < 0.2
    assert 20_000 * 2 * 0.85 < totals.objects < 20_000 * 2 * 1.15  # blobs and (at least) a link each
    links = [f"{tree.REPOSITORIES}r/_layers/sha256/{i:064x}/link" for i in range(50_000)]
    for path, size in blobs[600:]:
        estimate.see(path)
    for path in links:
        estimate.see(path)
    walked = estimate.totals(70_000, true_bytes, finished=False)
    assert walked is not None and walked.objects == 70_000  # past the blobs: counted as walked
    assert estimate.totals(70_000, true_bytes, finished=True) == Totals(70_000, true_bytes, True)


@pytest.mark.parametrize("width", [20, 40, 60, 79, 80, 120, 250])
def test_terminal_lines_never_exceed_the_width(width: int) -> None:
    for totals in (None, Totals(987_654_321, 123 * 1024**4, False), Totals(987_654_321, 123 * 1024**4, True)):
        snap = Snapshot("sync", "finishing", 86_399.0, 123_456_789, 123_456_000, 99 * 1024**4, totals,
                        12_345.6, 987.6 * 1024**2, 3_600.0 * 99)
        lines = terminal_lines(snap, width)
        assert len(lines) == 2 and all(len(line) <= width for line in lines), lines
        if width >= 80:
            assert "ETA" in lines[1] and "objects" in lines[0]
        assert "ETA" in plain_line(snap) and "123,456,789" in plain_line(snap)
