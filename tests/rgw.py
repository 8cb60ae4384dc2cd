"""A throwaway Ceph cluster (one monitor, one OSD in RAM, no cephx) with radosgw in front of it,
all on 127.0.0.1 in one temporary directory: a production S3 implementation that checks SigV4
signatures, for the tests and the benchmarks.

Settings and order follow ../shared/docs/testing-with-real-servers.md. Every daemon runs in the
foreground under our own process handling, so we hold its real PID and stop exactly what we
started, also after a failure. Start-up failures raise with the tail of each daemon's log.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
_TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")
_LOG_TAIL = 40
KMS_KEY_ID = "regmig-test-key"
"""The SSE-KMS key id the cluster knows (``--sse aws:kms --sse-kms-key-id regmig-test-key``)."""
_KMS_KEY = base64.b64encode(b"regmig-test-kms-key-32-bytes-xyz").decode()


class RGWStartError(AssertionError):
    """Raised (and shown by pytest) when the cluster cannot be brought up."""


@dataclass(frozen=True)
class RGW:
    endpoint: str
    access_key: str
    secret_key: str
    pids: tuple[int, ...]
    """The daemons started for this server (monitor, OSD, radosgw), for tests that check cleanup."""


def missing_tools() -> list[str]:
    return [tool for tool in _TOOLS if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(work: Path, mon_port: int, rgw_port: int, fsid: str) -> str:
    """ceph.conf for a one-node cluster whose every path lives under ``work``."""
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {work}/run
admin socket = {work}/run/$name.asok
pid file = {work}/run/$name.pid
log file = {work}/log/$name.log
mon cluster log file = {work}/log/cluster.log
crash dir = {work}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.05
osd objectstore = memstore
memstore device bytes = 8589934592

[mon.a]
mon data = {work}/mon
mon addr = v2:127.0.0.1:{mon_port}

[osd.0]
osd data = {work}/osd
osd journal = {work}/osd/journal

[client.rgw.a]
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {work}/rgw
rgw gc obj min wait = 60
rgw gc processor period = 60
debug rgw = 0
# SSE-KMS with keys from ceph.conf (Ceph's "testing" KMS backend), over plain HTTP: a real
# server-side-encryption path for the tests. Pacific has no SSE-S3 (AES256): it accepts the
# header over HTTP and stores the object unencrypted, which regmig's write probe catches.
rgw crypt require ssl = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = {KMS_KEY_ID}={_KMS_KEY}
"""


class _Cluster:
    def __init__(self, work: Path, on_start: Callable[[int], None] | None) -> None:
        self.work = work
        self.on_start = on_start
        self.conf = work / "ceph.conf"
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def run(self, *argv: str, timeout: float = 60) -> str:
        done = subprocess.run([*argv, "-c", str(self.conf)], capture_output=True, text=True, timeout=timeout,
                              cwd=self.work)
        if done.returncode != 0:
            self.fail(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def daemon(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = open(self.work / "log" / f"{name}.out", "wb")
        with out:
            process = subprocess.Popen([*argv, "-f", "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT,
                                       cwd=self.work, start_new_session=True)
        self.processes.append((name, process))
        if self.on_start:
            self.on_start(process.pid)
        return process

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                self.fail(f"{name} exited with code {process.returncode} at start-up")

    def fail(self, message: str) -> None:
        tails = []
        for log in sorted((self.work / "log").glob("*")):
            lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL:]
            if lines:
                tails.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        raise RGWStartError(f"Ceph RGW did not start: {message}\n" + "\n".join(tails))

    def stop(self) -> None:
        """SIGTERM every daemon we started (newest first), SIGKILL after 10 s."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_http(cluster: _Cluster, url: str, timeout: float) -> None:
    """radosgw answers S3 once its pools exist; a port that accepts but hangs is retried, not waited on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.check_alive()
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # an S3 error document is an answer
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    cluster.fail(f"no answer from {url} within {timeout:.0f} s")


@contextmanager
def ceph_rgw(work: Path, *, access_key: str = "RGWTESTACCESSKEY0001", secret_key: str | None = None,
             extra_config: str = "", timeout: float = 120,
             on_start: Callable[[int], None] | None = None) -> Iterator[RGW]:
    """Start monitor, OSD and radosgw in ``work``; yield the S3 endpoint and a user with these keys.

    ``extra_config`` is appended to ceph.conf (later settings win) and ``on_start`` is given each
    daemon's PID as it starts: both for tests of the fixture itself."""
    missing = missing_tools()
    if missing:
        raise RGWStartError(f"Ceph RGW tools missing ({', '.join(missing)}): run `make test-deps` "
                            f"(apt-get install --no-install-recommends {PACKAGES})")
    for sub in ("run", "log", "crash", "mon", "osd", "rgw"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    mon_port, rgw_port = _free_port(), _free_port()
    fsid = str(uuid.uuid4())
    cluster = _Cluster(work, on_start)
    cluster.conf.write_text(_config(work, mon_port, rgw_port, fsid) + extra_config)
    with ExitStack() as cleanup:
        cleanup.callback(cluster.stop)
        monmap = work / "monmap"
        cluster.run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
                    str(monmap))
        cluster.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        cluster.daemon("mon.a", "ceph-mon", "-i", "a")
        osd_id = cluster.run("ceph", "osd", "create", timeout=timeout).strip()
        if osd_id != "0":
            cluster.fail(f"expected OSD id 0, got {osd_id!r}")
        cluster.run("ceph-osd", "-i", "0", "--mkfs")
        cluster.daemon("osd.0", "ceph-osd", "-i", "0")
        cluster.daemon("rgw.a", "radosgw", "-n", "client.rgw.a")
        endpoint = f"http://127.0.0.1:{rgw_port}"
        _wait_http(cluster, endpoint, timeout)
        secret_key = secret_key or "rgw-test-secret-" + uuid.uuid4().hex
        user = json.loads(cluster.run("radosgw-admin", "-n", "client.rgw.a", "user", "create", "--uid=regmig",
                                      "--display-name=regmig tests", f"--access-key={access_key}",
                                      f"--secret={secret_key}", timeout=timeout))
        if user["keys"][0]["access_key"] != access_key:
            cluster.fail(f"user created with other keys: {user['keys']}")
        yield RGW(endpoint, access_key, secret_key, tuple(p.pid for _, p in cluster.processes))


if __name__ == "__main__":  # start one by hand: python tests/rgw.py DIR (Ctrl-C stops it)
    import sys

    with ceph_rgw(Path(sys.argv[1]).resolve()) as server:
        print(json.dumps(server.__dict__), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
