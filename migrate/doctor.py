"""``regmig doctor``: can this destination take a registry, and is anything set up to hurt later?"""

from __future__ import annotations

from typing import Any

from migrate import guards
from migrate.errors import RegmigError
from migrate.probe import probe_writes
from migrate.storage.base import Storage


def doctor(storage: Storage) -> dict[str, Any]:
    """Reachability (raises BadInput when unusable), a write probe, then the service's settings."""
    storage.check_destination()
    checks: list[dict[str, str]] = [{"level": "OK", "check": "reachable", "message": storage.root_description}]
    if (elsewhere := guards.other_roots_note(storage)) is not None:
        checks.append({"level": "WARN", "check": "root", "message": elsewhere})
    try:
        probe = probe_writes(storage, small_writes=4, large_size=1024 * 1024)
        checks.append({"level": "OK", "check": "writable",
                       "message": f"probe objects written and removed ({probe.small_write_seconds * 1000:.0f} ms "
                                  f"per small write, {probe.bytes_per_second / 1e6:.1f} MB/s)"})
    except RegmigError as exc:
        checks.append({"level": "FAIL", "check": "writable", "message": str(exc)})
    for level, message in storage.health():
        checks.append({"level": level, "check": "settings", "message": message})
    worst = {c["level"] for c in checks}
    return {"command": "doctor", "target": storage.url, "checks": checks,
            "exit_code": 1 if worst & {"FAIL", "WARN"} else 0}
