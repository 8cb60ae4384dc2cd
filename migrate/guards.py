"""Refusals for an operator's likely mistakes, decided before anything is written: the wrong root,
a source that is another registry (with ``--delete``), and a live filesystem registry as the
destination (source and destination swapped).

A dry run, and so ``plan``, writes nothing and refuses nothing: it notes what the real run would
refuse, so the preview shows it.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from migrate import render, roots, tree
from migrate.errors import BadInput
from migrate.report import Report
from migrate.storage.base import Storage

if TYPE_CHECKING:  # sync imports this module
    from migrate.sync import SyncOptions

SAMPLE = 64
"""Destination blobs sampled: the first ones its listing gives. Blobs are named by a digest, so the
first keys are a uniform sample of the whole store, read in one listing request at any size."""
MIN_SAMPLE = 8
"""Fewer blobs than this in the destination: too few to judge, and too few to lose much."""
MIN_SHARED = 0.5
"""A final pass finds nearly every destination blob in its source (garbage collection in between
removes some); another registry's tree shares a few base layers at most. Below half, --delete
would remove most of what the destination holds."""


def require_registry_data(storage: Storage) -> None:
    """For the commands that only read a registry (verify, nameless-tags): a root with nothing
    under docker/ is a mistyped location, not a clean registry."""
    if not roots.holds_registry_data(storage):
        raise BadInput(render.no_registry_data(storage.url, storage.prefix, storage.driver,
                                               roots.find_other_roots(storage)))


def other_roots_note(storage: Storage) -> str | None:
    """When the root holds no registry data but another root of the same bucket does, the
    "did you mean" line; None otherwise (a root being filled for the first time)."""
    return None if roots.holds_registry_data(storage) else _elsewhere(storage)


def _elsewhere(storage: Storage) -> str | None:
    others = roots.find_other_roots(storage)
    return render.no_registry_data(storage.url, storage.prefix, storage.driver, others) if others else None


def before_writing(source: Storage, destination: Storage, options: SyncOptions, report: Report) -> None:
    """Raise BadInput for a sync that is most likely a mistake; a dry run gets notes instead."""
    if not roots.holds_registry_data(destination):
        note = _elsewhere(destination)
        if note and options.delete:
            _refuse(f"refusing --delete into a root that holds no registry data: {note} (a first copy into a "
                    f"new root runs without --delete)", options, report)
        elif note:
            report.note(note)
        return
    if destination.is_local and not options.into_populated_directory:
        _refuse(f"{destination.url} already holds a registry: a copy into it overwrites what its registry "
                f"changed since (a tag pushed there, say); if SOURCE and DESTINATION are swapped, swap them "
                f"back, else confirm with --into-populated-directory", options, report)
    if options.delete and not options.allow_unrelated_source:
        sampled, shared = shared_blobs(source, destination)
        if sampled >= MIN_SAMPLE and shared < sampled * MIN_SHARED:
            _refuse(f"refusing --delete: only {shared} of {sampled} blobs sampled in {destination.url} exist in "
                    f"{source.url}, which looks like another registry (--delete would remove this one's data): "
                    f"check SOURCE, or confirm with --allow-unrelated-source", options, report)


def shared_blobs(source: Storage, destination: Storage) -> tuple[int, int]:
    """(blobs sampled in the destination, how many of them the source holds): one listing request
    on the destination and one stat per sampled blob on the source."""
    sampled = [entry.path for entry in islice(destination.walk(tree.BLOBS), SAMPLE)
               if tree.is_content_addressed(entry.path)]
    return len(sampled), sum(source.stat(path) is not None for path in sampled)


def _refuse(message: str, options: SyncOptions, report: Report) -> None:
    if options.dry_run:
        report.note(f"a sync that writes refuses this: {message}")
        return
    raise BadInput(message)
