"""``regmig config-snippet``: the registry configuration that reads what regmig wrote.

Without a config file it emits the ``storage:`` section of ``config.yml`` and the
``registry['storage']`` block of ``gitlab.rb``. Given the operator's own file (``--to-config``, the
destination's, or ``--from-config``, the registry's current one) it emits that file again with only
what the move changes: the storage driver's section and ``maintenance.readonly``. Redirect, delete,
cache, notifications, http and the rest are the operator's decisions and stay as they were.
Storage credentials are always placeholders.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

import yaml

from migrate.config.registry import S3_DRIVERS, SECRET_KEYS, RegistryStorage
from migrate.errors import BadInput
from migrate.storage import LocationOptions
from migrate.storage.options import S3Options

PLACEHOLDERS = {"accesskey": "<ACCESS_KEY_ID>", "secretkey": "<SECRET_ACCESS_KEY>", "accountkey": "<ACCOUNT_KEY>",
                "keyfile": "<PATH_TO_SERVICE_ACCOUNT_KEYFILE>", "sessiontoken": "<SESSION_TOKEN>",
                "credentials": "<SERVICE_ACCOUNT_CREDENTIALS>"}
# Written as placeholders in a new section; in the operator's own section only the ones it has.
CREDENTIALS = {"s3": ("accesskey", "secretkey"), "s3_v2": ("accesskey", "secretkey"), "gcs": ("keyfile",),
               "azure": ("accountkey",)}
# Values never printed, whatever the section: the registry's secret keys and GCS's inline credentials.
SECRET_VALUES = (*SECRET_KEYS, "credentials")
# Operator keys that regmig's own setting replaces: both root-prefix keys equal is a start-up error.
SUPERSEDED = {"azure": ("legacyrootprefix",)}
_SCHEME_DRIVERS = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "azure": "azure"}


def driver_name(location: str, requested: str | None, base: RegistryStorage | None) -> str:
    """The driver that reads ``location``: ``--driver`` for S3 (s3 or s3_v2), else the operator's
    S3 driver when their file names one, else the driver for the scheme."""
    driver = _SCHEME_DRIVERS.get(urlsplit(location).scheme)
    if driver is None:
        raise BadInput(f"config-snippet needs an object-store location (s3://, gs://, azure://), not {location!r}")
    if driver != "s3":
        if requested:
            raise BadInput(f"--driver {requested} is for s3:// destinations, not {location!r}")
        return driver
    if requested:
        return requested
    return base.driver if base and base.driver in S3_DRIVERS else "s3"


def resolved_s3(options: S3Options) -> tuple[str | None, str | None]:
    """The endpoint and region regmig's S3 client uses: the flag or file's, else what botocore
    resolves (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the shared config's services section,
    AWS_DEFAULT_REGION, the profile's region). The endpoint counts only when it is not botocore's
    own default, which is asked for by building the client both ways (no request is sent)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session(region_name=options.region, profile_name=options.profile)
        region = options.region or session.region_name
        if options.endpoint_url:
            return options.endpoint_url, region
        configured = session.client("s3").meta.endpoint_url
        default = session.client("s3", config=Config(ignore_configured_endpoint_urls=True)).meta.endpoint_url
    except (ValueError, BotoCoreError) as exc:
        raise BadInput(f"the AWS environment or config does not resolve: {exc}") from None
    return (configured if configured != default else None), region


def driver_settings(location: str, options: LocationOptions, driver: str) -> dict[str, Any]:
    """What regmig knows about the destination, in the driver's keys (credentials apart)."""
    parts = urlsplit(location)
    container, root = parts.netloc, parts.path.strip("/")
    rootdirectory = {"rootdirectory": "/" + root} if root else {}
    if driver in S3_DRIVERS:
        s3 = options.s3
        endpoint, region = resolved_s3(s3)
        section: dict[str, Any] = {"bucket": container, "region": region or "<REGION>", **rootdirectory}
        if endpoint:
            section["regionendpoint"] = endpoint
            section["secure"] = not endpoint.startswith("http://")
        if s3.path_style:
            section["pathstyle"] = True  # GitLab's registry; upstream distribution 3.x calls it forcepathstyle
        if s3.sse:
            section["encrypt"] = True
            if s3.sse_kms_key_id:
                section["keyid"] = s3.sse_kms_key_id
        if s3.storage_class:
            section["storageclass"] = s3.storage_class
        section["chunksize"] = options.transfer.chunk_size
        return section
    if driver == "gcs":
        return {"bucket": container, **rootdirectory, "chunksize": options.transfer.chunk_size}
    azure = options.azure
    # Explicit either way: GitLab's default changed in 16.0 and a mismatch hides every image.
    return {"accountname": azure.account_name or "<ACCOUNT_NAME>", "container": container, **rootdirectory,
            "realm": azure.realm, "trimlegacyrootprefix": azure.root_prefix == "trimmed"}


def driver_section(location: str, options: LocationOptions, driver: str,
                   own: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new section (placeholders for every credential), or the operator's own section ``own``
    with regmig's settings applied: their other keys (skipverify, objectacl, checksum settings...)
    stay, and their credentials become placeholders."""
    settings = driver_settings(location, options, driver)
    if own is None:
        credentials = {key: PLACEHOLDERS[key] for key in CREDENTIALS[driver]}
        # GitLab's docs: S3-compatibles (MinIO and others) need s3_v2's default CRC checksums off;
        # regmig's own client sends none either.
        checksums = {"checksum_disabled": True} if driver == "s3_v2" and "regionendpoint" in settings else {}
        return {**settings, **credentials, **checksums}
    kept = {key: (PLACEHOLDERS.get(key, f"<{key.upper()}>") if key in SECRET_VALUES else value)
            for key, value in own.items() if key not in SUPERSEDED.get(driver, ())}
    return {**kept, **settings}


def storage_config(driver: str, section: dict[str, Any], base: RegistryStorage | None, *,
                   readonly: bool) -> dict[str, Any]:
    """The storage section: the driver's, then the base's other keys as they were (or
    ``redirect.disable: false`` without a base), with only ``maintenance.readonly.enabled`` set."""
    others: dict[str, Any] = copy.deepcopy(base.extra) if base is not None else {"redirect": {"disable": False}}
    maintenance = dict(others.get("maintenance") or {})
    maintenance["readonly"] = {**(maintenance.get("readonly") or {}), "enabled": readonly}
    others["maintenance"] = maintenance
    return {driver: copy.deepcopy(section), **others}


def render(location: str, options: LocationOptions, *, driver: str | None = None,
           current: RegistryStorage | None = None, target: RegistryStorage | None = None) -> str:
    """The text ``config-snippet`` prints. ``target`` is the destination's own config
    (``--to-config``), whose driver settings are kept; ``current`` the registry's config now
    (``--from-config``), whose driver section is replaced. At most one of them."""
    base = target or current
    name = driver_name(location, driver, base)
    section = driver_section(location, options, name, target.params if target is not None else None)
    cutover = storage_config(name, section, base, readonly=True)
    after = storage_config(name, section, base, readonly=False)
    if base is not None and base.document is not None:
        document = {**copy.deepcopy(base.document), "storage": cutover}
        return "\n".join([
            f"# Registry config.yml for the cut-over: {base.source} with only the storage driver ({name},",
            f"# for {location}) and storage.maintenance.readonly.enabled (true) changed; everything else is",
            "# as in that file (its secrets too: keep this file as you keep that one). Fill in the <...>",
            "# placeholders, or remove the credential keys to use the instance role or the environment.",
            "# After verify passes and a pull works, set storage.maintenance.readonly.enabled to false.",
            yaml.safe_dump(document, sort_keys=False).rstrip(),
            "",
        ])
    gitlab = [
        f"registry['storage'] = {ruby(cutover)}",
        "# after verify passes",
        f"registry['storage'] = {ruby(after)}",
        "",
    ]
    if base is not None:
        return "\n".join([
            f"# GitLab Linux package, /etc/gitlab/gitlab.rb: replace registry['storage'] of {base.source}",
            f"# (only the driver, now {name}, and maintenance.readonly change; its other keys stay), then",
            "# `sudo gitlab-ctl reconfigure`. Fill in the <...> placeholders. During the cut-over:",
            *gitlab,
        ])
    return "\n".join([
        "# Registry config.yml: the storage section for the cut-over (read-only until verify passes).",
        "# Afterwards set maintenance.readonly.enabled to false. If clients cannot reach the bucket",
        "# directly, set redirect.disable to true so the registry serves blobs itself.",
        *(["# s3_v2 is GitLab's registry only (beta from GitLab 17.10); Distribution has s3."] if name == "s3_v2" else []),
        yaml.safe_dump({"storage": cutover}, sort_keys=False).rstrip(),
        "",
        "# GitLab Linux package, /etc/gitlab/gitlab.rb, then `sudo gitlab-ctl reconfigure`:",
        "# during the cut-over",
        *gitlab,
    ])


def ruby(value: Any, indent: int = 0) -> str:
    """A Ruby literal for plain data, as gitlab.rb writes it."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{ruby(str(k))} => {ruby(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}" if items else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(ruby(item, indent) for item in value) + "]"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
