"""Registry config.yml and GitLab gitlab.rb as input: parsing, driver rules, env overrides, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys
from migrate.config import registry as rc
from migrate.config.ruby_literal import parse_literal
from migrate.errors import BadInput
from migrate.storage import LocationOptions

GITLAB_RB = """
## GitLab configuration settings
external_url 'https://gitlab.example.com'
gitlab_rails['registry_path'] = "/mnt/registry"   # where images live
registry['storage'] = {
  's3' => {
    'accesskey' => 'AKIAEXAMPLEKEY123456',
    'secretkey' => 'very-secret-value-from-gitlab-rb',
    'bucket' => 'gitlab-registry',
    'region' => 'eu-west-1',
    'regionendpoint' => 'minio.internal:9000',   # no scheme: 'secure' decides
    'secure' => false,
    'pathstyle' => true,
    'rootdirectory' => '/registry',
    'chunksize' => 26_214_400,
    'maxrequestspersecond' => 350,
    'encrypt' => true,
    'keyid' => "arn:aws:kms:eu-west-1:1:key/abc",
    :storageclass => 'STANDARD',
  },
  'redirect' => { 'disable' => true },
  'maintenance' => { readonly: { enabled: true } }
}
registry['notifications'] = [ { 'name' => 'x' } ]
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_gitlab_rb_s3_to_location(tmp_path: Path) -> None:
    storage = rc.load(write(tmp_path, "gitlab.rb", GITLAB_RB), environ={})
    assert storage.driver == "s3" and storage.readonly and storage.redirect_disabled
    url, options = rc.to_location(storage, LocationOptions())
    assert url == "s3://gitlab-registry/registry"
    assert options.s3.endpoint_url == "http://minio.internal:9000"
    assert options.s3.path_style and options.s3.region == "eu-west-1"
    assert (options.s3.sse, options.s3.sse_kms_key_id) == ("aws:kms", "arn:aws:kms:eu-west-1:1:key/abc")
    assert options.s3.storage_class == "STANDARD"
    assert options.transfer.chunk_size == 26_214_400
    assert options.transfer.max_requests_per_second == 350
    assert options.s3.secret_key == "very-secret-value-from-gitlab-rb"


def test_gitlab_rb_without_storage_is_the_filesystem_at_registry_path(tmp_path: Path) -> None:
    text = "gitlab_rails['registry_path'] = '/mnt/registry'\nregistry['storage'] = { 'maintenance' => " \
           "{ 'readonly' => { 'enabled' => false } } }\n"
    storage = rc.load(write(tmp_path, "gitlab.rb", text), environ={})
    assert (storage.driver, storage.params, storage.readonly) == ("filesystem", {"rootdirectory": "/mnt/registry"}, False)
    assert rc.load(write(tmp_path, "empty.rb", "# nothing\n"), environ={}).params["rootdirectory"] == rc.GITLAB_DEFAULT_PATH


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("registry['storage'] = {\n  's3' => { 'bucket' => \"#{ENV['B']}\" }\n}\n", 2, "interpolation"),
        ("registry['storage'] = {\n\n  's3' => File.read('x')\n}\n", 3, "never evaluates Ruby"),
        ("registry['storage'] = {\n  's3' => { 'bucket' 'x' }\n}\n", 2, "expected '=>'"),
        ("registry['storage'] = {\n  's3' => {\n", 3, "unexpected end"),
    ],
)
def test_gitlab_rb_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, "gitlab.rb", text)
    with pytest.raises(BadInput, match=rf"gitlab.rb:{line}: .*{message}"):
        rc.load(path, environ={})


def test_gitlab_rb_s3_v2_reads_as_s3(tmp_path: Path) -> None:
    text = GITLAB_RB.replace("'s3' => {", "'s3_v2' => {\n    'checksum_disabled' => true,")
    storage = rc.load(write(tmp_path, "gitlab.rb", text), environ={})
    assert storage.driver == "s3_v2" and storage.params["checksum_disabled"] is True
    url, options = rc.to_location(storage, LocationOptions())
    assert url == "s3://gitlab-registry/registry" and options.s3.endpoint_url == "http://minio.internal:9000"
    assert options.s3.path_style and options.transfer.chunk_size == 26_214_400


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("gitlab.rb", "registry['storage'] = { 's3_v2' => { 'bucket' => 'b' }, 'gcs' => { 'bucket' => 'c' } }\n",
         "found 2: s3_v2, gcs"),
        ("gitlab.rb", "registry['storage'] = { 'azure_v2' => { 'container' => 'c' } }\n",
         "does not support the 'azure_v2' storage driver"),
        ("config.yml", "storage:\n  s3: {bucket: b}\n  filesystem: {rootdirectory: /r}\n  delete: {enabled: true}\n",
         "found 2: s3, filesystem"),
    ],
)
def test_driver_errors_name_exactly_the_drivers_in_the_file(tmp_path: Path, name: str, text: str,
                                                             message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(BadInput) as error:
        rc.to_location(rc.load(path, environ={}), LocationOptions())
    assert message in str(error.value)
    assert ("filesystem" in str(error.value)) == ("filesystem" in text)  # never a driver the file lacks


def test_storage_tag_section_is_not_a_driver(tmp_path: Path) -> None:
    """Distribution 3.x's storage.tag.concurrencylimit sits beside the driver."""
    path = write(tmp_path, "config.yml", "storage:\n  tag: {concurrencylimit: 8}\n  s3: {bucket: b, region: r}\n")
    storage = rc.load(path, environ={})
    assert storage.driver == "s3" and storage.extra == {"tag": {"concurrencylimit": 8}}


def test_ruby_literals() -> None:
    value, end = parse_literal("{ a: 1, 'b' => [true, nil, -2.5, :sym], \"c\" => 'it\\'s' } # tail", 0)
    assert value == {"a": 1, "b": [True, None, -2.5, "sym"], "c": "it's"}
    assert end == len("{ a: 1, 'b' => [true, nil, -2.5, :sym], \"c\" => 'it\\'s' }")


def test_config_yml_azure_and_environment_overrides(tmp_path: Path) -> None:
    config = {"version": 0.1, "storage": {"azure": {"accountname": "acct", "accountkey": "a2V5LWZvci10ZXN0cw==",
                                                    "container": "reg", "rootdirectory": "/r/",
                                                    "legacyrootprefix": True},
                                          "delete": {"enabled": True}}}
    path = write(tmp_path, "config.yml", json.dumps(config))
    url, options = rc.to_location(rc.load(path, environ={}), LocationOptions())
    assert url == "azure://reg/r" and options.azure.root_prefix == "legacy"
    assert options.azure.account_name == "acct"
    env = {"REGISTRY_STORAGE_AZURE_CONTAINER": "other", "REGISTRY_STORAGE_AZURE_REALM": "core.usgovcloudapi.net",
           "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "true"}
    storage = rc.load(path, environ=env)
    url, options = rc.to_location(storage, LocationOptions())
    assert url == "azure://other/r" and options.azure.realm == "core.usgovcloudapi.net" and storage.readonly


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, "trimmed"), ({"legacyrootprefix": True}, "legacy"), ({"legacyrootprefix": False}, "trimmed"),
     ({"trimlegacyrootprefix": True}, "trimmed"), ({"trimlegacyrootprefix": False}, "legacy"),
     ({"legacyrootprefix": True, "trimlegacyrootprefix": False}, "legacy"),
     ({"legacyrootprefix": False, "trimlegacyrootprefix": True}, "trimmed")],
)
def test_azure_root_prefix_inference(params: dict, expected: str) -> None:  # type: ignore[type-arg]
    assert rc.azure_root_prefix(params) == expected


@pytest.mark.parametrize("value", [True, False])
def test_azure_both_options_equal_is_the_registrys_startup_error(value: bool) -> None:
    with pytest.raises(BadInput, match=f"can not both be {str(value).lower()}"):
        rc.azure_root_prefix({"legacyrootprefix": value, "trimlegacyrootprefix": value})


def test_sync_and_verify_from_config_files(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = write(tmp_path, "old.yml", json.dumps({"storage": {"filesystem": {"rootdirectory": registry.root}}}))
    secret = "config-file-secret-key-0123456789"
    target = write(tmp_path, "gitlab.rb", f"""registry['storage'] = {{
  's3' => {{ 'bucket' => '{bucket}', 'region' => 'us-east-1', 'regionendpoint' => '{s3_endpoint}',
            'rootdirectory' => '/from-config', 'accesskey' => '{ACCESS_KEY}', 'secretkey' => '{SECRET_KEY}' }}
}}
""")
    result = regmig("sync", "--from-config", source, "--to-config", target, "--json")
    assert result.exit_code == 0, result.stderr
    assert all(k.startswith("from-config/docker/") for k in list_keys(s3, bucket))
    assert regmig("verify", "--from-config", source, "--to-config", target).exit_code == 0
    assert regmig("nameless-tags", "--to-config", target).exit_code == 0

    bad = write(tmp_path, "bad.rb", target_text := Path(target).read_text().replace(SECRET_KEY, secret)
                .replace(bucket, "no-such-bucket-anywhere"))
    assert target_text
    failed = regmig("sync", "--from-config", source, "--to-config", bad)
    assert failed.exit_code == 2
    assert secret not in failed.stdout + failed.stderr
