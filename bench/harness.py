"""What every benchmark here shares: a fresh S3 server per measurement (Ceph RGW by default, or
moto's), tools run as child processes under GNU time (client CPU and peak RSS), the server's CPU
over its processes, and one table format. Scripts: sync_bench.py (copy, final pass, check, large
blobs, memory) and the others in this folder import it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rgw import ceph_rgw  # noqa: E402  (the tests' throwaway Ceph cluster)

HERE = Path(__file__).resolve().parent
KEYS = {"AWS_ACCESS_KEY_ID": "bench-access-key", "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Row:
    tool: str
    phase: str
    objects: int
    wall_s: float
    client_cpu_s: float
    cpu_ms_per_object: float
    server_cpu_s: float
    peak_rss_mb: float
    objects_per_s: float
    exit_code: int
    mib_per_s: float = 0.0
    """Only in the large-blob phase: bytes copied per second of wall time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_caches() -> None:
    """The page cache, dentries and inodes dropped (root only): the next walk reads the disk."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(KEYS)
    env.update({
        # rclone remote "bench" defined through its environment convention.
        "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": KEYS["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": KEYS["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": os.devnull,
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # regmig is the code beside this file, not whichever checkout the virtualenv installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])),
    })
    return env


REGMIG_TOOLS = ("regmig", "regmig-listing", "regmig-full")


def regmig_binary() -> str:
    return shutil.which("regmig", path=str(Path(sys.executable).parent)) or "regmig"


def tool_env(tool: str, env: dict[str, str]) -> dict[str, str]:
    return {**env, "REGMIG_S3_LEAN": "0"} if tool == "regmig-full" else env


def measure(tool: str, phase: str, argv: list[str], env: dict[str, str], server: S3Server, objects: int,
            size: int = 0) -> Row:
    """Runs one tool under GNU time: a forked child's own max RSS would include this (large)
    process's pages from before exec, so the peak RSS comes from time's small process instead;
    ``reap.py`` in between waits for the processes the tool leaves behind, so they count too."""
    env = tool_env(tool, env)
    server_before = server.cpu()
    with tempfile.NamedTemporaryFile("r") as stats:
        start = time.monotonic()
        child = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", stats.name, sys.executable, str(HERE / "reap.py"), *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.monotonic() - start
        peak_kib, user, system = stats.read().split()[-3:]
    if child.returncode != 0:
        print(f"  {tool} {phase} exited {child.returncode}: {child.stderr.decode()[-500:]}")
    cpu = float(user) + float(system)
    return Row(tool, phase, objects, round(wall, 2), round(cpu, 2), round(1000 * cpu / max(objects, 1), 3),
               round(server.cpu() - server_before, 2), round(int(peak_kib) / 1024, 1),
               round(objects / wall, 1), child.returncode, round(size / wall / 2**20, 1))


class S3Server:
    """A fresh S3 server on a free port, with a client and the tools' environment: Ceph RGW (monitor,
    OSD in RAM and radosgw, from tests/rgw.py) or moto's server in its own process. ``pids`` are the
    server's processes, whose CPU time is the server's cost."""

    kind = "rgw"

    def __enter__(self) -> S3Server:
        self._stack = contextlib.ExitStack()
        if self.kind == "rgw":
            server = self._stack.enter_context(ceph_rgw(Path(tempfile.mkdtemp(prefix="bench-ceph-")),
                                                        access_key=KEYS["AWS_ACCESS_KEY_ID"],
                                                        secret_key=KEYS["AWS_SECRET_ACCESS_KEY"]))
            self.endpoint, self.pids = server.endpoint, server.pids
        else:
            self.endpoint, self.pids = self._moto()
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
        self.env = child_env(self.endpoint)
        return self

    def _moto(self) -> tuple[str, tuple[int, ...]]:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        process = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self._stack.callback(lambda: (process.terminate(), process.wait()))
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        return endpoint, (process.pid,)

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids)

    def __exit__(self, *_: object) -> None:
        self._stack.close()


def record(rows: list[Row], row: Row) -> None:
    rows.append(row)
    print(table([row]).splitlines()[-1], flush=True)


def table(rows: list[Row]) -> str:
    head = f"{'tool':<14} {'phase':<8} {'objects':>8} {'wall s':>8} {'cpu s':>8} {'cpu ms/obj':>10} " \
           f"{'server s':>9} {'rss MB':>7} {'obj/s':>7} {'MiB/s':>6} exit"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.tool:<14} {r.phase:<8} {r.objects:>8} {r.wall_s:>8} {r.client_cpu_s:>8} "
                     f"{r.cpu_ms_per_object:>10} {r.server_cpu_s:>9} {r.peak_rss_mb:>7} {r.objects_per_s:>7} "
                     f"{r.mib_per_s or '':>6} {r.exit_code}")
    return "\n".join(lines)
