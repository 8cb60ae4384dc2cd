"""One writer at a time: a lease object in the destination, held while a run writes there.

Two syncs against one bucket both upload, both delete, and both write a state record that only
one of them made true. So a run that writes (``sync``, ``nameless-tags --fix``) first takes the
lease (``tree.REGMIG``/lease: holder host, pid, started, expires) and renews it on a thread while
it runs; another run finds it and refuses with exit 2, naming the holder. A lease left by a
killed run is taken over once it has expired, at once when its process is gone from this very
machine, or at once with ``--break-lock``.

Taking it is a conditional create where the service honours one (S3 ``If-None-Match: *``, Azure
``If-None-Match: *``, GCS ``ifGenerationMatch=0``, ``O_EXCL`` on a filesystem). A second create
of the same lease must then be refused: where it is not (an S3-compatible service that ignores
the condition), and whenever a lease is taken over, the run writes it, waits ``SETTLE_SECONDS``
and reads it back: of two runs that wrote it at about the same time, only the last one finds its
own nonce there.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from migrate import tree
from migrate.errors import BadInput, ConditionFailed, ObjectMissing, RegmigError
from migrate.storage.base import Storage

PATH = tree.REGMIG + "lease"
SHARD_PATH = tree.REGMIG + "lease-shard-{index}-of-{count}"
"""A shard of an array job's own lease: shards of one run write the destination side by side,
each in its own key range, but no shard twice at once."""
TTL_SECONDS = 120.0
"""How long a lease holds without renewal: a killed run blocks others this long at most."""
RENEW_SECONDS = 30.0
SETTLE_SECONDS = 2.0
"""Between writing a lease and reading it back, where a conditional create cannot be trusted: longer
than the gap between two racing runs' writes."""


class LeaseHeld(BadInput):
    """Another regmig is writing this destination now; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Holder:
    command: str
    host: str
    pid: int
    machine: str
    """Boot and pid namespace: a pid means the same process only on the same boot, in the same namespace."""
    started: float
    expires: float
    nonce: str

    def encode(self) -> bytes:
        return json.dumps({"command": self.command, "host": self.host, "pid": self.pid, "machine": self.machine,
                           "started": _iso(self.started), "started_epoch": self.started,
                           "expires": _iso(self.expires), "expires_epoch": self.expires,
                           "nonce": self.nonce}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Holder | None:
        try:
            fields = json.loads(data)
            return cls(str(fields["command"]), str(fields["host"]), int(fields["pid"]), str(fields["machine"]),
                       float(fields["started_epoch"]), float(fields["expires_epoch"]), str(fields["nonce"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return (f"regmig {self.command} on {self.host} (pid {self.pid}) since {_iso(self.started)}, "
                f"lease valid until {_iso(self.expires)}")


class Lease:
    """Held from ``__enter__`` to ``__exit__``; ``lost`` says why, if another run took it meanwhile."""

    def __init__(self, storage: Storage, command: str, *, break_lock: bool, note: Callable[[str], None],
                 path: str = PATH) -> None:
        self._storage = storage
        self._path = path
        self._break = break_lock
        self._note = note
        now = time.time()
        self._holder = Holder(command, socket.gethostname(), os.getpid(), _machine(), now, now + TTL_SECONDS,
                              uuid.uuid4().hex)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="regmig-lease", daemon=True)
        self.exclusive = False
        """True when the service refused a second create: the lease was taken by a trusted conditional create."""
        self.lost: str | None = None

    def __enter__(self) -> Lease:
        self._acquire()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._release()

    def _acquire(self) -> None:
        data = self._read()
        if data is not None:
            other = Holder.decode(data)
            reason = self._stale(other)
            if reason is None:
                raise LeaseHeld(self._refusal(other))
            self._note(f"took over the lease of {other.describe() if other else 'an unreadable lease'}: {reason}")
            self._write()
            self._confirm()
            return
        body = self._holder.encode()
        if not self._storage.create_exclusive(self._path, body):
            data = self._read()
            other = Holder.decode(data) if data else None
            if other is None or other.nonce != self._holder.nonce:  # ours only if a retried create had landed
                raise LeaseHeld(self._refusal(other))
        self.exclusive = not self._storage.create_exclusive(self._path, body)
        if not self.exclusive:  # the service ignored the condition: only reading back tells who won
            self._confirm()

    def refuse_if_held(self, path: str = PATH) -> None:
        """Refuse (LeaseHeld) when another lease, at ``path``, has a holder that may still be running:
        a shard of an array job takes its own lease, and first checks no whole-destination run holds one."""
        try:
            data = self._storage.read(path)
        except ObjectMissing:
            return
        other = Holder.decode(data)
        if self._stale(other) is None:
            raise LeaseHeld(self._refusal(other))

    def _stale(self, other: Holder | None) -> str | None:
        """Why a lease found in place may be taken over, or None when its holder may still be running."""
        if self._break:
            return "--break-lock"
        if other is None:
            return None
        if time.time() > other.expires:
            return f"it expired at {_iso(other.expires)}"
        mine = self._holder
        same_machine = bool(mine.machine) and (other.host, other.machine) == (mine.host, mine.machine)
        if same_machine and other.pid != mine.pid and not _alive(other.pid):
            return f"its process (pid {other.pid}) is gone from this machine"
        return None

    def _refusal(self, other: Holder | None) -> str:
        who = other.describe() if other else "an unreadable lease"
        return (f"{self._storage.url} is being written by another regmig: {who}; let it finish, or if it no longer "
                f"runs, run again with --break-lock (or once the lease has expired)")

    def _confirm(self) -> None:
        time.sleep(SETTLE_SECONDS)
        data = self._read()
        other = Holder.decode(data) if data else None
        if other is None or other.nonce != self._holder.nonce:
            raise LeaseHeld(self._refusal(other))

    def _read(self) -> bytes | None:
        try:
            return self._storage.read(self._path)
        except ObjectMissing:
            return None

    def _write(self) -> None:
        body = self._holder.encode()
        self._storage.put(self._path, body, len(body))

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                data = self._read()
                other = Holder.decode(data) if data else None
                if other is None or other.nonce != self._holder.nonce:
                    self.lost = f"the lease was taken by {other.describe() if other else 'another run'}"
                    return
                self._holder = replace(self._holder, expires=time.time() + TTL_SECONDS)
                self._write()
            except RegmigError as exc:
                if time.time() > self._holder.expires:
                    self.lost = f"the lease could not be renewed before it expired: {exc}"
                    return
            except Exception as exc:  # never silent: the run must not go on believing it holds the lease
                self.lost = f"renewing the lease crashed: {type(exc).__name__}: {exc}"
                return

    def _release(self) -> None:
        try:
            data = self._read()
            other = Holder.decode(data) if data else None
            if other is not None and other.nonce == self._holder.nonce:
                self._storage.delete(self._path)
        except ConditionFailed:
            return
        except RegmigError as exc:
            self._note(f"could not remove the lease ({exc}); it expires at {_iso(self._holder.expires)}")


def _machine() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""  # unknown: a lease left here is then only taken over once it has expired
    return f"{boot_id}/{namespace}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
