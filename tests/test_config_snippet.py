"""config-snippet from the operator's own registry config: only what the move changes changes.

Real config files (YAML and gitlab.rb as operators write them), the endpoint regmig resolves from
the environment, GitLab's s3_v2 driver, and the real registry started from the snippet.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys
from migrate.config.ruby_literal import parse_literal

OPERATOR_SECRET = "operator-secret-key-in-config-0123456789"

# A production-shaped config.yml: every section an operator may have set, and comments.
OPERATOR_CONFIG = f"""\
version: 0.1
log:
  level: info
  formatter: json
  fields:
    service: registry
    environment: production
storage:
  s3:
    bucket: images-prod
    region: eu-west-1
    rootdirectory: /registry
    accesskey: AKIAOPERATORKEY00001
    secretkey: {OPERATOR_SECRET}
    skipverify: true          # an operator setting regmig has no opinion on
    multipartcopychunksize: 33554432
  redirect:
    disable: true             # clients cannot reach the bucket
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  secret: registry-http-secret-shared-by-replicas
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: :5001
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/registry/htpasswd
middleware:
  storage:
    - name: cloudfront
      options:
        baseurl: https://d111111abcdef8.cloudfront.net/
        privatekey: /etc/registry/cloudfront.pem
        keypairid: K2JCJMDEHXQW5F
notifications:
  events:
    includereferences: true
  endpoints:
    - name: audit
      url: https://audit.example.com/registry-events
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def outside_the_move(document: dict[str, Any], driver: str) -> dict[str, Any]:
    """The document without what the move may change: the driver's section and maintenance.readonly."""
    rest = copy.deepcopy(document)
    del rest["storage"][driver]
    rest["storage"]["maintenance"].pop("readonly", None)
    return rest


def test_to_config_keeps_every_setting_but_the_drivers(tmp_path: Path) -> None:
    path = write(tmp_path, "config.yml", OPERATOR_CONFIG)
    result = regmig("config-snippet", "--to-config", path)
    assert result.exit_code == 0, result.stderr
    assert OPERATOR_SECRET not in result.stdout
    snippet = yaml.safe_load(result.stdout)  # the whole output is one config.yml
    operator = yaml.safe_load(OPERATOR_CONFIG)

    assert outside_the_move(snippet, "s3") == outside_the_move(operator, "s3")
    assert snippet["storage"]["redirect"] == {"disable": True}
    assert snippet["storage"]["maintenance"]["readonly"] == {"enabled": True}  # for the cut-over
    assert list(snippet) == list(operator) and list(snippet["storage"]) == list(operator["storage"])
    s3 = snippet["storage"]["s3"]
    assert (s3["bucket"], s3["region"], s3["rootdirectory"]) == ("images-prod", "eu-west-1", "/registry")
    assert (s3["skipverify"], s3["multipartcopychunksize"]) == (True, 33554432)  # the operator's, kept
    assert (s3["accesskey"], s3["secretkey"]) == ("<ACCESS_KEY_ID>", "<SECRET_ACCESS_KEY>")
    assert "regionendpoint" not in s3  # AWS itself: none configured anywhere


def test_from_config_swaps_the_filesystem_driver_for_the_destinations(tmp_path: Path) -> None:
    current_doc = yaml.safe_load(OPERATOR_CONFIG)
    others = {k: v for k, v in current_doc["storage"].items() if k != "s3"}
    current_doc["storage"] = {"filesystem": {"rootdirectory": "/var/lib/registry"}, **others}
    path = write(tmp_path, "config.yml", yaml.safe_dump(current_doc, sort_keys=False))
    result = regmig("config-snippet", "s3://new-bucket/registry", "--region", "us-west-2", "--from-config", path)
    assert result.exit_code == 0, result.stderr
    snippet = yaml.safe_load(result.stdout)
    assert "filesystem" not in snippet["storage"]
    expected = outside_the_move(current_doc, "filesystem")
    assert outside_the_move(snippet, "s3") == expected
    assert snippet["storage"]["s3"] == {"bucket": "new-bucket", "region": "us-west-2", "rootdirectory": "/registry",
                                        "chunksize": 10 * 1024 * 1024, "accesskey": "<ACCESS_KEY_ID>",
                                        "secretkey": "<SECRET_ACCESS_KEY>"}
    both = regmig("config-snippet", "--from-config", path, "--to-config", path)
    assert both.exit_code == 2 and "one registry config" in both.stderr


def test_gitlab_rb_s3_v2_round_trip_keeps_its_other_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "gitlab.rb", f"""\
external_url 'https://gitlab.example.com'
gitlab_rails['db_password'] = 'database-password-not-for-output'
registry['storage'] = {{
  's3_v2' => {{
    'accesskey' => 'AKIAOPERATORKEY00001',
    'secretkey' => '{OPERATOR_SECRET}',
    'bucket' => 'gitlab-registry',
    'region' => 'eu-central-1',
    'regionendpoint' => 'https://objects.example.net',
    'pathstyle' => true,
    'checksum_algorithm' => 'CRC32C',
  }},
  'redirect' => {{ 'disable' => true }},
  'cache' => {{ 'blobdescriptor' => 'inmemory' }},
  'delete' => {{ 'enabled' => true }},
}}
""")
    result = regmig("config-snippet", "--to-config", path)
    assert result.exit_code == 0, result.stderr
    assert OPERATOR_SECRET not in result.stdout and "database-password" not in result.stdout
    blocks = [parse_literal(result.stdout, i + len("registry['storage'] = "))[0]
              for i in _find_all(result.stdout, "registry['storage'] = ")]
    assert len(blocks) == 2
    cutover, after = blocks
    assert list(cutover) == ["s3_v2", "redirect", "cache", "delete", "maintenance"]
    assert cutover["redirect"] == {"disable": True} and cutover["cache"] == {"blobdescriptor": "inmemory"}
    assert cutover["delete"] == {"enabled": True}
    assert (cutover["maintenance"], after["maintenance"]) == ({"readonly": {"enabled": True}},
                                                              {"readonly": {"enabled": False}})
    s3 = cutover["s3_v2"]
    assert s3["checksum_algorithm"] == "CRC32C" and s3["pathstyle"] is True
    assert (s3["regionendpoint"], s3["secure"]) == ("https://objects.example.net", True)
    assert (s3["accesskey"], s3["secretkey"]) == ("<ACCESS_KEY_ID>", "<SECRET_ACCESS_KEY>")


def _find_all(text: str, needle: str) -> list[int]:
    found, start = [], text.find(needle)
    while start >= 0:
        found.append(start)
        start = text.find(needle, start + 1)
    return found


def test_driver_s3_v2_is_written_to_both_files() -> None:
    result = regmig("config-snippet", "s3://b/reg", "--driver", "s3_v2", "--endpoint-url", "http://minio.lan:9000")
    assert result.exit_code == 0, result.stderr
    storage = yaml.safe_load(result.stdout.split("# GitLab")[0])["storage"]
    assert "s3" not in storage and storage["s3_v2"]["regionendpoint"] == "http://minio.lan:9000"
    assert storage["s3_v2"]["checksum_disabled"] is True  # an S3-compatible: no SDK v2 default CRCs
    start = result.stdout.index("registry['storage'] = ") + len("registry['storage'] = ")
    assert parse_literal(result.stdout, start)[0] == storage
    aws = yaml.safe_load(regmig("config-snippet", "s3://b/reg", "--driver", "s3_v2").stdout.split("# GitLab")[0])
    assert "checksum_disabled" not in aws["storage"]["s3_v2"]  # AWS itself takes the default checksums
    wrong = regmig("config-snippet", "gs://b/reg", "--driver", "s3_v2")
    assert wrong.exit_code == 2 and "s3://" in wrong.stderr


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_endpoint_from_the_environment_is_the_regionendpoint(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                             monkeypatch, variable) -> None:
    monkeypatch.setenv(variable, s3_endpoint)
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url).exit_code == 0  # no --endpoint-url: botocore's resolution
    assert list_keys(s3, bucket, "registry/docker/")  # ...reached the test server
    storage = yaml.safe_load(regmig("config-snippet", url).stdout.split("# GitLab")[0])["storage"]
    assert (storage["s3"]["regionendpoint"], storage["s3"]["secure"]) == (s3_endpoint, False)
    flag = yaml.safe_load(regmig("config-snippet", url, "--endpoint-url", "https://other.example").stdout
                          .split("# GitLab")[0])["storage"]
    assert flag["s3"]["regionendpoint"] == "https://other.example"  # the flag wins, as for the copy
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    ignored = yaml.safe_load(regmig("config-snippet", url).stdout.split("# GitLab")[0])["storage"]
    assert "regionendpoint" not in ignored["s3"]


def test_gitlab_rb_s3_v2_is_a_sync_destination(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = write(tmp_path, "gitlab.rb", f"""registry['storage'] = {{
  's3_v2' => {{ 'bucket' => '{bucket}', 'region' => 'us-east-1', 'regionendpoint' => '{s3_endpoint}',
               'rootdirectory' => '/v2root', 'checksum_disabled' => true,
               'accesskey' => '{ACCESS_KEY}', 'secretkey' => '{SECRET_KEY}' }}
}}
""")
    result = regmig("sync", registry.root, "--to-config", target, "--json")
    assert result.exit_code == 0, result.stderr
    keys = list_keys(s3, bucket)
    assert keys and all(k.startswith("v2root/docker/registry/") for k in keys)
    assert regmig("verify", registry.root, "--to-config", target).exit_code == 0


def _get_without_redirects(url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.registry
def test_real_registry_serves_the_copy_from_the_to_config_snippet(registry, bucket, s3_endpoint, tmp_path,  # type: ignore[no-untyped-def]
                                                                  monkeypatch) -> None:
    """The operator's new config.yml names the bucket but not the endpoint (regmig found it in
    AWS_ENDPOINT_URL_S3) and says redirect.disable: true: the snippet must carry both."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    assert regmig("sync", registry.root, f"s3://{bucket}/registry").exit_code == 0
    operator = write(tmp_path, "config.yml", f"""\
version: 0.1
log:
  level: warn
storage:
  s3:
    bucket: {bucket}
    region: us-east-1
    rootdirectory: /registry
    accesskey: {ACCESS_KEY}
    secretkey: {SECRET_KEY}
  redirect:
    disable: true
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  secret: operator-http-secret
""")
    result = regmig("config-snippet", "--to-config", operator)
    assert result.exit_code == 0, result.stderr
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # the registry gets only what the snippet says
    snippet = yaml.safe_load(result.stdout)
    storage = snippet["storage"]
    storage["s3"].update(accesskey=ACCESS_KEY, secretkey=SECRET_KEY)  # the operator fills the placeholders
    extra = {k: v for k, v in snippet.items() if k not in ("version", "storage", "http", "log")}
    with rr.running_registry(storage, tmp_path / "registry", extra) as migrated:
        status, _, body = rr.get(f"{migrated}/v2/library/alpine/manifests/3.20", accept=rr.MANIFEST_TYPES)
        assert status == 200, body
        layer = json.loads(body)["layers"][0]["digest"]
        status, data = _get_without_redirects(f"{migrated}/v2/library/alpine/blobs/{layer}")
        assert status == 200, f"blob GET answered {status}: the operator's redirect.disable was not kept"
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer
        upload, _, _ = rr.get(f"{migrated}/v2/library/alpine/blobs/uploads/", method="POST")
        assert upload in (405, 503)  # read-only for the cut-over


def test_gitlab_rb_values_keep_their_ruby_types() -> None:
    """An operator's storage hash comes back as the same literal: nil, floats, arrays, empty hashes."""
    from migrate.config.snippet import ruby

    value = {"cache": {"blobdescriptor": "redis", "ttl": None}, "tag": {"concurrencylimit": 8, "ratio": 0.5},
             "x": {"list": ["a", 1, True], "empty": {}}, "quote": "it's"}
    assert parse_literal(ruby(value))[0] == value
