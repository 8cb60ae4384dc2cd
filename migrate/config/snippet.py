"""``regmig config-snippet``: the registry configuration that reads what regmig wrote.

Emits the ``storage:`` section of ``config.yml`` and the ``registry['storage']`` block of
``gitlab.rb``, for the read-only cut-over and for afterwards. Secrets are always placeholders.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from migrate.errors import BadInput
from migrate.storage import LocationOptions

PLACEHOLDERS = {"accesskey": "<ACCESS_KEY_ID>", "secretkey": "<SECRET_ACCESS_KEY>", "accountkey": "<ACCOUNT_KEY>",
                "keyfile": "<PATH_TO_SERVICE_ACCOUNT_KEYFILE>"}


def driver_section(location: str, options: LocationOptions) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(location)
    container, root = parts.netloc, parts.path.strip("/")
    rootdirectory = {"rootdirectory": "/" + root} if root else {}
    if parts.scheme == "s3":
        s3 = options.s3
        section: dict[str, Any] = {"bucket": container, "region": s3.region or "<REGION>", **rootdirectory,
                                   "accesskey": PLACEHOLDERS["accesskey"], "secretkey": PLACEHOLDERS["secretkey"]}
        if s3.endpoint_url:
            section["regionendpoint"] = s3.endpoint_url
            section["secure"] = not s3.endpoint_url.startswith("http://")
        if s3.path_style:
            section["pathstyle"] = True  # GitLab's registry; upstream distribution 3.x calls it forcepathstyle
        if s3.sse:
            section["encrypt"] = True
            if s3.sse_kms_key_id:
                section["keyid"] = s3.sse_kms_key_id
        if s3.storage_class:
            section["storageclass"] = s3.storage_class
        section["chunksize"] = options.transfer.chunk_size
        return "s3", section
    if parts.scheme in ("gs", "gcs"):
        return "gcs", {"bucket": container, "keyfile": PLACEHOLDERS["keyfile"], **rootdirectory,
                       "chunksize": options.transfer.chunk_size}
    if parts.scheme == "azure":
        azure = options.azure
        section = {"accountname": azure.account_name or "<ACCOUNT_NAME>", "accountkey": PLACEHOLDERS["accountkey"],
                   "container": container, **rootdirectory, "realm": azure.realm,
                   # Explicit either way: GitLab's default changed in 16.0 and a mismatch hides every image.
                   "trimlegacyrootprefix": azure.root_prefix == "trimmed"}
        return "azure", section
    raise BadInput(f"config-snippet needs an object-store location (s3://, gs://, azure://), not {location!r}")


def storage_config(location: str, options: LocationOptions, *, readonly: bool) -> dict[str, Any]:
    driver, section = driver_section(location, options)
    return {driver: section, "redirect": {"disable": False},
            "maintenance": {"readonly": {"enabled": readonly}}}


def render(location: str, options: LocationOptions) -> str:
    cutover = storage_config(location, options, readonly=True)
    after = storage_config(location, options, readonly=False)
    return "\n".join([
        "# Registry config.yml: the storage section for the cut-over (read-only until verify passes).",
        "# Afterwards set maintenance.readonly.enabled to false. If clients cannot reach the bucket",
        "# directly, set redirect.disable to true so the registry serves blobs itself.",
        yaml.safe_dump({"storage": cutover}, sort_keys=False).rstrip(),
        "",
        "# GitLab Linux package, /etc/gitlab/gitlab.rb, then `sudo gitlab-ctl reconfigure`:",
        "# during the cut-over",
        f"registry['storage'] = {ruby(cutover)}",
        "# after verify passes",
        f"registry['storage'] = {ruby(after)}",
        "",
    ])


def ruby(value: Any, indent: int = 0) -> str:
    """A Ruby literal for plain data, as gitlab.rb writes it."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{ruby(str(k))} => {ruby(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
