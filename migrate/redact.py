"""Keeps secrets out of every output: known secret values are replaced before anything is printed or logged."""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
# Values that look like secrets even when we were not told about them (SAS signatures, account keys).
_PATTERNS = [
    re.compile(r"(?i)(AccountKey|SharedAccessSignature|sig|secretkey|accesskey|secret_access_key)=([^;&\s'\"]+)"),
]
MASK = "****"
SECRET_OPTIONS = ("--azure-account-key",)
"""Options whose value is a secret: masked in the command line a log or report shows."""


def add_secret(value: str | None) -> None:
    """Register a value that must never be shown (values under 8 characters would mangle ordinary words)."""
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return text


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with the values of secret options masked (``--opt VALUE`` and
    ``--opt=VALUE``) and registered, so they are masked wherever else they appear."""
    shown: list[str] = []
    secret_next = False
    for arg in argv:
        if secret_next:
            add_secret(arg)
            shown.append(MASK)
            secret_next = False
            continue
        name, equals, value = arg.partition("=")
        if name in SECRET_OPTIONS:
            if equals:
                add_secret(value)
                arg = f"{name}={MASK}"
            else:
                secret_next = True
        shown.append(redact(arg))
    return shown


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the fully formatted message, so arguments are covered too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
