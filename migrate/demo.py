"""``make demo``: a whole migration against an embedded local S3 endpoint, with readable output.

Starts moto's S3 server on 127.0.0.1, builds a sample registry tree, and runs the same
``regmig`` commands an operator would, printing each before its output.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from migrate.sample import demo_registry

WORK = Path("demo-work")
BUCKET = "registry-demo"
ROOT = "registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3(port: int, log: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if server is None:
        sys.exit("demo: moto_server not found; install the test extra: pip install -e '.[test]'")
    with open(log, "wb") as out:
        process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"demo: the local S3 server did not start; see {log}")


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(*args: str, env: dict[str, str]) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ regmig {shown}", flush=True)
    done = subprocess.run([sys.executable, "-m", "migrate", *args], env=env)
    print(f"(exit code {done.returncode})", flush=True)
    return done.returncode


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "demo-access-key-id", "AWS_SECRET_ACCESS_KEY": "demo-secret-access-key",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint}
    env.pop("AWS_PROFILE", None)
    server = start_s3(port, WORK / "s3-server.log")
    try:
        return demo(endpoint, env)
    finally:
        server.terminate()
        server.wait()


def demo(endpoint: str, env: dict[str, str]) -> int:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=BUCKET)
    source = WORK / "registry"
    step(f"A sample registry tree in {source} (filesystem driver layout); local S3 at {endpoint}")
    registry = demo_registry(str(source))
    files = sorted(p for p in source.rglob("*") if p.is_file())
    print(f"{len(files)} files, including an unfinished upload (not copied) and a 12 MiB layer (multipart)")
    dest = f"s3://{BUCKET}/{ROOT}"
    state = ("--state", str(WORK / "regmig.state"))  # what the bucket holds after each clean pass
    failures = 0

    step("1. Copy while the registry is online (--state records what the bucket then holds)")
    failures += run("sync", str(source), dest, *state, env=env) != 0

    step("2. Registry keeps working: a tag is re-pushed, another is deleted")
    tags = source / "docker/registry/v2/repositories/library/alpine/_manifests/tags"
    (tags / "latest/current/link").write_bytes((tags / "3.20/current/link").read_bytes())
    shutil.rmtree(source / "docker/registry/v2/repositories/team-a/tools/_manifests/tags/2026.11")
    registry.image("library/alpine", "edge", [b"a new layer pushed during the migration"])
    print("re-pointed library/alpine:latest, untagged team-a/tools:2026.11, pushed library/alpine:edge")

    step("3. Read-only window: preview, then the final pass with --delete (reads --state, lists no bucket)")
    failures += run("sync", str(source), dest, *state, "--delete", "--dry-run", env=env) != 0
    failures += run("sync", str(source), dest, *state, "--delete", env=env) != 0

    step("4. A second final pass changes nothing, and proves the copy as it goes (--verify lists the bucket)")
    failures += run("sync", str(source), dest, *state, "--delete", "--verify", env=env) != 0

    step("5. Prove the copy (lists both sides): object counts (excluding _uploads), every object, registry semantics")
    failures += run("verify", str(source), dest, "--deep", env=env) != 0

    step("6. A bucket copy by another tool left zero-byte directory markers (nameless tags)")
    for key in ("docker/registry/v2/repositories/library/alpine/",
                "docker/registry/v2/repositories/library/alpine/_manifests/tags/",
                "docker/registry/v2/repositories/group/"):
        s3.put_object(Bucket=BUCKET, Key=f"{ROOT}/{key}", Body=b"")
    print("planted 3 markers the way AWS DataSync does")
    failures += run("nameless-tags", dest, env=env) != 1  # exit 1: markers found
    failures += run("nameless-tags", dest, "--fix", env=env) != 0
    failures += run("verify", str(source), dest, env=env) != 0

    print("\ndemo " + ("finished: every step succeeded" if not failures else f"FAILED: {failures} steps failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
