"""A registry's own configuration as input: ``config.yml``, or GitLab's ``gitlab.rb``, plus the
registry's ``REGISTRY_STORAGE_*`` environment overrides, turned into a regmig location.

Secret values found here are registered for redaction before anything can print them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from migrate import redact
from migrate.config.ruby_literal import parse_literal
from migrate.errors import BadInput
from migrate.storage import LocationOptions
from migrate.storage.options import AzureOptions, GCSOptions, S3Options

# Keys of the storage section that are not drivers, as the registry reads it (``tag`` is Distribution 3.x's):
# any other key names a driver, and exactly one must be present.
NOT_DRIVERS = ("delete", "redirect", "cache", "maintenance", "tag")
# Distribution's s3 (s3-aws) and GitLab's s3_v2 (aws-sdk-go-v2): the same key layout, and the same
# settings for everything regmig reads (s3_v2 adds checksum settings, which do not change what is stored).
S3_DRIVERS = ("s3", "s3_v2")
SECRET_KEYS = ("accesskey", "secretkey", "accountkey", "sessiontoken", "secret", "password")
GITLAB_DEFAULT_PATH = "/var/opt/gitlab/gitlab-rails/shared/registry"
_ASSIGNMENT = re.compile(r"^[ \t]*(registry\[['\"]storage['\"]\]|gitlab_rails\[['\"]registry_path['\"]\])[ \t]*=[ \t]*",
                         re.M)


@dataclass
class RegistryStorage:
    """The storage section of one registry configuration."""

    driver: str
    params: dict[str, Any]
    readonly: bool = False
    redirect_disabled: bool | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the storage section's other keys (redirect, cache...)
    document: dict[str, Any] | None = None  # the whole config.yml (None for gitlab.rb), for config-snippet


def load(path: str, environ: Mapping[str, str] | None = None) -> RegistryStorage:
    """Read ``config.yml`` or ``gitlab.rb`` (by name or content), then apply environment overrides."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    if path.endswith(".rb") or _ASSIGNMENT.search(text):
        storage = _from_gitlab_rb(text, path)
    else:
        storage = _from_config_yml(text, path)
    return _apply_environment(storage, os.environ if environ is None else environ)


def _from_config_yml(text: str, path: str) -> RegistryStorage:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise BadInput(f"{path}{line}: not valid YAML") from None
    if not isinstance(document, dict) or not isinstance(document.get("storage"), dict):
        raise BadInput(f"{path}: no storage: section (is this a registry config.yml?)")
    return replace(_storage_section(document["storage"], path), document=document)


def _from_gitlab_rb(text: str, path: str) -> RegistryStorage:
    values: dict[str, Any] = {}
    for match in _ASSIGNMENT.finditer(text):
        values[match.group(1).split("[")[0]], _ = parse_literal(text, match.end(), path)
    storage = values.get("registry") or {}
    if not isinstance(storage, dict):
        raise BadInput(f"{path}: registry['storage'] is not a hash")
    if all(key in NOT_DRIVERS for key in storage):
        # No driver named: GitLab's default, the filesystem at gitlab_rails['registry_path'].
        storage = {**storage, "filesystem": {"rootdirectory": values.get("gitlab_rails") or GITLAB_DEFAULT_PATH}}
    return _storage_section(storage, path)


def _storage_section(section: dict[str, Any], path: str) -> RegistryStorage:
    drivers = [name for name in section if name not in NOT_DRIVERS]
    if len(drivers) != 1:
        found = f"{len(drivers)}: {', '.join(drivers)}" if drivers else "none"
        raise BadInput(f"{path}: the storage section must name exactly one driver, found {found}")
    driver = drivers[0]
    params = section[driver] or {}
    if not isinstance(params, dict):
        raise BadInput(f"{path}: storage.{driver} is not a mapping")
    for key in SECRET_KEYS:
        if isinstance(params.get(key), str):
            redact.add_secret(params[key])
    maintenance = section.get("maintenance") or {}
    readonly = maintenance.get("readonly") or {}
    redirect = section.get("redirect") or {}
    return RegistryStorage(driver=driver, params=dict(params), readonly=bool(readonly.get("enabled")),
                           redirect_disabled=redirect.get("disable"), source=path,
                           extra={k: v for k, v in section.items() if k in NOT_DRIVERS})


def _apply_environment(storage: RegistryStorage, environ: Mapping[str, str]) -> RegistryStorage:
    """``REGISTRY_STORAGE_<DRIVER>_<KEY>`` overrides the file, as the registry does."""
    driver = environ.get("REGISTRY_STORAGE", storage.driver).lower()
    params = storage.params if driver == storage.driver else {}
    prefix = f"REGISTRY_STORAGE_{driver.upper()}_"
    for name, value in environ.items():
        if name.startswith(prefix):
            key = name[len(prefix):].lower()
            params[key] = yaml.safe_load(value) if value.lower() in ("true", "false") or value.isdigit() else value
            if key in SECRET_KEYS:
                redact.add_secret(value)
    readonly = environ.get("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED")
    result = replace(storage, driver=driver, params=params)
    if readonly is not None:
        result.readonly = readonly.lower() == "true"
    return result


# --- to a regmig location ------------------------------------------------------------------------


def azure_root_prefix(params: Mapping[str, Any], source: str = "config") -> str:
    """The GitLab registry's rule: both options set to equal values is a start-up error;
    neither set means the standard (trimmed) prefix; otherwise the one that is set decides."""
    legacy = params.get("legacyrootprefix")
    trim = params.get("trimlegacyrootprefix")
    for name, value in (("legacyrootprefix", legacy), ("trimlegacyrootprefix", trim)):
        if value is not None and not isinstance(value, bool):
            raise BadInput(f"{source}: storage.azure.{name} must be true or false")
    if legacy is not None and trim is not None:
        if legacy == trim:
            raise BadInput(f"{source}: storage.azure.legacyrootprefix and trimlegacyrootprefix can not both be "
                           f"{str(legacy).lower()} (the registry refuses to start)")
        return "legacy" if legacy else "trimmed"
    if legacy is not None:
        return "legacy" if legacy else "trimmed"
    if trim is not None:
        return "trimmed" if trim else "legacy"
    return "trimmed"


def to_location(storage: RegistryStorage, base: LocationOptions) -> tuple[str, LocationOptions]:
    """The location URL and options that read exactly what this registry config reads."""
    p = storage.params
    root = str(p.get("rootdirectory") or "")
    chunk = _int(p.get("chunksize"))
    transfer = base.transfer
    if chunk:
        transfer = replace(transfer, chunk_size=chunk)
    if storage.driver == "filesystem":
        return str(p.get("rootdirectory") or "/var/lib/registry"), replace(base, transfer=transfer)
    if storage.driver in S3_DRIVERS:
        if _int(p.get("maxrequestspersecond")):
            transfer = replace(transfer, max_requests_per_second=float(p["maxrequestspersecond"]))
        endpoint = p.get("regionendpoint") or None
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if p.get("secure", True) else "http://") + endpoint
        encrypt = bool(p.get("encrypt"))
        s3 = S3Options(
            endpoint_url=endpoint, region=p.get("region"),
            path_style=bool(p.get("forcepathstyle") or p.get("pathstyle")),
            sse=("aws:kms" if p.get("keyid") else "AES256") if encrypt else None,
            sse_kms_key_id=p.get("keyid") if encrypt else None,
            storage_class=p.get("storageclass") if p.get("storageclass") not in (None, "NONE") else None,
            access_key=p.get("accesskey") or None, secret_key=p.get("secretkey") or None,
        )
        return _url("s3", _required(p, "bucket", storage), root), replace(base, s3=s3, transfer=transfer)
    if storage.driver == "gcs":
        gcs = GCSOptions(keyfile=p.get("keyfile") or None)
        return _url("gs", _required(p, "bucket", storage), root), replace(base, gcs=gcs, transfer=transfer)
    if storage.driver == "azure":
        azure = AzureOptions(
            account_name=p.get("accountname") or None, account_key=p.get("accountkey") or None,
            realm=p.get("realm") or "core.windows.net", account_url=p.get("serviceurl") or None,
            root_prefix=azure_root_prefix(p, storage.source),
        )
        return _url("azure", _required(p, "container", storage), root), replace(base, azure=azure, transfer=transfer)
    raise BadInput(f"{storage.source}: regmig does not support the {storage.driver!r} storage driver")


def _url(scheme: str, container: str, root: str) -> str:
    root = root.strip("/")
    return f"{scheme}://{container}" + (f"/{root}" if root else "")


def _required(params: Mapping[str, Any], key: str, storage: RegistryStorage) -> str:
    value = params.get(key)
    if not value:
        raise BadInput(f"{storage.source}: storage.{storage.driver}.{key} is required")
    return str(value)


def _int(value: Any) -> int:
    try:
        return int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0
