"""The destination's generation token: one small object regmig moves whenever it writes there.

A ``--state`` record stands in for a listing only while nothing but the pass that wrote it has
changed the destination. Every pass that writes the destination (with or without ``--state``),
``nameless-tags --fix`` and a failed ``verify`` write a new random token in the destination
itself, under the root and outside ``docker/`` (``tree.REGMIG``), before anything else; a record
carries the token of the pass that wrote it, so a record whose token is not the destination's is
known to be stale, whatever wrote the destination in between: another regmig pass without the
record, another tool that emptied or recreated the bucket, a service behind the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

from migrate import tree
from migrate.errors import ObjectMissing
from migrate.storage.base import Storage

PATH = tree.REGMIG + "generation"


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    data: bytes
    """The object's bytes as stored (a known content, for ``Storage.calibrate_md5``)."""


def current(storage: Storage) -> Token | None:
    """The destination's token, or None when it has none (never written by regmig, or emptied)."""
    try:
        data = storage.read(PATH)
    except ObjectMissing:
        return None
    try:
        value = str(json.loads(data)["generation"])
    except (ValueError, KeyError, TypeError):
        value = "unreadable " + hashlib.md5(data).hexdigest()  # matches no record
    return Token(value, data)


def advance(storage: Storage, command: str) -> Token:
    """Write a new token: every record written before this moment no longer matches."""
    token = new(command)
    put(storage, token)
    return token


def new(command: str) -> Token:
    """A new token, not yet written (a run of separate shard jobs records it before any writes it)."""
    value = uuid.uuid4().hex
    data = json.dumps({"generation": value, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "by": f"regmig {command} on {socket.gethostname()} (pid {os.getpid()})"}).encode()
    return Token(value, data)


def put(storage: Storage, token: Token) -> None:
    """Write ``token`` as it is (every shard of a run writes the same bytes, so each can check the
    destination's listed MD5s against them)."""
    storage.put(PATH, token.data, len(token.data))
