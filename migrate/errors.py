"""One base error class; the CLI maps each to an exit code and a one-line message."""

from __future__ import annotations


class RegmigError(Exception):
    """A problem the operator can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class BadInput(RegmigError):
    """The command cannot work with this input; nothing was changed."""


class StorageError(RegmigError):
    """A storage operation failed after its retries (network, permissions, service errors)."""

    exit_code = 1


class ObjectMissing(StorageError):
    """The object vanished between listing and reading (the registry is online and changing)."""


class ConditionFailed(StorageError):
    """A conditional write or delete found the object changed since it was checked; nothing was done."""


class ChecksumMismatch(StorageError):
    """The service refused an upload because its body did not match the checksum sent with it:
    corrupted in transit. Nothing was written; sending it again is safe."""


class ListingOutOfOrder(RegmigError):
    """A listing was not in byte order; merging it would give wrong answers, so regmig stops."""

    exit_code = 1
