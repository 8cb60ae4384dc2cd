"""What a run leaves for the change ticket and for whoever reads the log afterwards: report pages
rendered by a real browser (headless Chromium), Markdown, the migration page of several passes,
and logs that start with the command line and end with how the run ended, SIGTERM and SIGKILL
included."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runner import regmig
from conftest import s3_client
from migrate.htmlreport import COLOURS
from migrate.sample import bulk_registry
from pngpixels import pixel, read_png

REGMIG = str(Path(sys.executable).parent / "regmig")


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is needed to render the HTML report (tests/install-tools.sh installs it)")
    return found


def _browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir()
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)


def _banner_colour(page: Path, tmp_path: Path) -> tuple[int, int, int]:
    shot = tmp_path / f"{page.stem}.png"
    _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    width, height, channels, rows = read_png(shot, max_rows=60)
    assert (width, height) == (1200, 1600)
    colours = {pixel(rows, x, 50, channels) for x in range(10, 1190, 20)}  # a line through the banner
    assert len(colours) > 1, "the banner row should hold the verdict's letters"
    return max(colours, key=lambda colour: sum(1 for x in range(10, 1190, 20)
                                               if pixel(rows, x, 50, channels) == colour))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_html_report_shows_the_verdict_in_a_browser(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    sync_json, good, md = tmp_path / "sync.json", tmp_path / "verify-ok.html", tmp_path / "verify-ok.md"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--report", str(sync_json)).exit_code == 0
    ok = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--deep", "--report", str(good),
                "--report", str(md), "--report", str(tmp_path / "verify-ok.json"))
    assert ok.exit_code == 0, ok.stdout
    dom = _browse(good, tmp_path, "--dump-dom").stdout
    verdict = dom[dom.index('id="verdict"'):dom.index("</header>")]
    assert ">OK<" in verdict and "destination matches the source" in verdict
    files = json.loads((tmp_path / "verify-ok.json").read_text())["counts"]["source_files"]
    assert f"<td>{files:,}</td><td>{files:,}</td>" in dom and '"match"' in dom  # the count check side by side
    assert "repositories" in dom[dom.index('id="checked"'):]
    assert _banner_colour(good, tmp_path) == _rgb(COLOURS["good"])
    assert md.read_text().startswith("# OK: verify: destination matches the source")

    blob = next(key for key in s3.list_objects_v2(Bucket=bucket, Prefix="registry/docker/registry/v2/blobs/")["Contents"])
    s3.delete_object(Bucket=bucket, Key=blob["Key"])
    bad_json = tmp_path / "verify-failed.json"
    failed = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--json", "--report",
                    str(tmp_path / "verify-failed.html"))
    assert failed.exit_code == 1
    bad_json.write_text(failed.stdout)
    dom = _browse(tmp_path / "verify-failed.html", tmp_path, "--dump-dom").stdout
    assert ">FAILED<" in dom[dom.index('id="verdict"'):dom.index("</header>")]
    assert "MISMATCH" in dom and blob["Key"].removeprefix("registry/") in dom
    assert _banner_colour(tmp_path / "verify-failed.html", tmp_path) == _rgb(COLOURS["bad"])

    page = tmp_path / "migration.html"
    made = regmig("report", str(sync_json), str(tmp_path / "verify-ok.json"), str(bad_json), "--output", str(page))
    assert made.exit_code == 0, made.stderr
    dom = _browse(page, tmp_path, "--dump-dom").stdout
    assert ">FAILED<" in dom[dom.index('id="verdict"'):dom.index("</header>")]  # the last verify decides
    chart = dom[dom.index("<svg"):dom.index("</svg>")]
    assert chart.count("<rect") >= 3 and "1. sync" in chart and "3. verify" in chart
    assert dom.count('class="pass"') == 3

    assert regmig("report", str(page), "--output", str(tmp_path / "x.html")).exit_code == 2  # not a JSON report
    assert regmig("report", str(sync_json), "--output", str(tmp_path / "x.json")).exit_code == 2
    assert regmig("report", str(sync_json), "--output", str(tmp_path / "x.txt")).exit_code == 2
    assert regmig("sync", registry.root, url, "--report", str(tmp_path / "x.txt")).exit_code == 2


def test_log_starts_with_the_command_line_and_ends_with_how_the_run_ended(registry, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from migrate import runlog

    log = tmp_path / "regmig.log"
    secret = "azure-account-key-that-must-not-be-logged-0123"
    monkeypatch.setattr(runlog, "ROTATE_BYTES", 2000)  # rotate many times within one pass
    done = regmig("sync", registry.root, str(tmp_path / "copy"), "--log-file", str(log),
                  "--azure-account-key", secret)
    assert done.exit_code == 0, done.stderr
    failed = regmig("sync", str(tmp_path / "missing"), str(tmp_path / "copy"), "--log-file", str(log))
    assert failed.exit_code == 2
    files = sorted(tmp_path.glob("regmig.log*"))
    assert len(files) > 3, files
    texts = [gzip.decompress(f.read_bytes()).decode() if f.suffix == ".gz" else f.read_text() for f in files]
    assert all(" INFO regmig " in text.splitlines()[0] and " started on " in text.splitlines()[0] for text in texts)
    everything = "\n".join(texts)
    assert secret not in everything and "--azure-account-key ****" in everything
    current = log.read_text().splitlines()
    assert "run ended: failed: " in current[-1] and "no such directory (exit 2)" in current[-1]
    assert any(line.endswith("run ended: done, OK (exit 0)") for text in texts for line in text.splitlines())
    assert not list(tmp_path.glob("regmig.log.run-*"))  # markers go with the runs that ended


def _slow_sync(tmp_path: Path, endpoint: str, name: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([REGMIG, "sync", str(tmp_path / "registry"), f"s3://{name}/r", "--endpoint-url", endpoint,
                             "--max-requests-per-second", "20", "--log-file", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {log}")


def test_sigterm_and_sigkill_are_told_in_the_log(moto_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s3_client(moto_endpoint).create_bucket(Bucket="regmig-signals")
    bulk_registry(str(tmp_path / "registry"), links=400, blobs=10, blob_size=1024)
    log = tmp_path / "sync.log"
    run = _slow_sync(tmp_path, moto_endpoint, "regmig-signals", log)
    _wait_for(log, "phase: copying")
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr
    assert log.read_text().splitlines()[-1].endswith("run ended: interrupted by SIGTERM (exit 143)")

    run = _slow_sync(tmp_path, moto_endpoint, "regmig-signals", log)  # the lease was released: no --break-lock
    _wait_for(log, f"(pid {run.pid}): regmig sync")
    _wait_for(log, "phase: copying")
    run.kill()
    run.communicate(timeout=60)
    assert os.path.exists(f"{log}.run-{run.pid}")
    again = subprocess.run([REGMIG, "doctor", "s3://regmig-signals/r", "--endpoint-url", moto_endpoint,
                            "--log-file", str(log)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = log.read_text().splitlines()
    told = [line for line in lines if "an earlier run did not end" in line]
    assert len(told) == 1 and f"(pid {run.pid}): regmig sync" in told[0] and "was killed" in told[0]
    assert not os.path.exists(f"{log}.run-{run.pid}")
    assert lines[-1].endswith("run ended: done, OK (exit 0)")


def test_skipped_objects_are_counted_in_bulk_and_logged_one_by_one_with_vv(  # type: ignore[no-untyped-def]
        registry, tmp_path, monkeypatch) -> None:
    """A pass after the first counts its unchanged objects in bulk (here 7 at a time, so the bulk
    is handed over mid-pass and at its end); with -vv each is still in the log, and the counts are
    the same either way."""
    from migrate import shardsync

    monkeypatch.setattr(shardsync, "SKIPS_AT_ONCE", 7)
    copy = str(tmp_path / "copy")
    assert regmig("sync", registry.root, copy).exit_code == 0
    files = sorted(path.relative_to(registry.root).as_posix()
                   for path in Path(registry.root).rglob("*") if path.is_file())
    counts = []
    for flags, log in (([], tmp_path / "quiet.log"), (["-vv"], tmp_path / "debug.log")):
        again = regmig("sync", registry.root, copy, "--into-populated-directory", "--json", "--log-file", str(log),
                       *flags)
        assert again.exit_code == 0, again.stderr
        skipped = json.loads(again.stdout)["outcomes"]["skipped"]
        counts.append(skipped)
        logged = [line.rsplit(": ", 1)[1] for line in log.read_text().splitlines() if "skipped (" in line]
        if flags:
            assert len(logged) == skipped["count"] > 40 and set(logged) <= set(files), (len(logged), skipped)
        else:
            assert logged == []
    assert counts[0] == counts[1]
