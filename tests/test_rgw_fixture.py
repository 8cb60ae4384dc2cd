"""The Ceph RGW fixture itself: it checks signatures (the reason it is here), stops exactly the
daemons it started, and shows each daemon's log when it cannot start."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from conftest import ACCESS_KEY
from rgw import RGWStartError, ceph_rgw


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it has exited, it is only waiting to be reaped.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_wrong_secret_is_refused(rgw_endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.list_buckets()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_stops_exactly_the_daemons_it_started(rgw_endpoint: str, tmp_path: Path) -> None:
    session_server = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    with ceph_rgw(tmp_path / "second") as second:
        assert len(second.pids) == 3 and all(_alive(pid) for pid in second.pids)
        client = boto3.client("s3", endpoint_url=second.endpoint, region_name="us-east-1",
                              aws_access_key_id=second.access_key, aws_secret_access_key=second.secret_key)
        client.create_bucket(Bucket="second-server")
    assert not any(_alive(pid) for pid in second.pids)
    session_server.list_buckets()  # the session's own server is untouched


def test_a_failed_start_shows_each_daemons_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    started: list[int] = []
    with socket.socket() as taken, pytest.raises(RGWStartError) as caught:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # radosgw's port is already taken: the monitor and the OSD start, radosgw exits.
        with ceph_rgw(tmp_path / "broken", timeout=60, on_start=started.append,
                      extra_config=f"rgw frontends = beast endpoint=127.0.0.1:{taken.getsockname()[1]}\n"):
            pass
    message = str(caught.value)
    assert "rgw.a exited" in message
    assert "--- mon.a.log" in message and "--- client.rgw.a.log" in message
    assert len(started) == 3 and not any(_alive(pid) for pid in started)
