"""A ListObjectsV2 page read without building its element tree: the same rows as the XML parser
gives on the pages real services send, and the XML parser wherever that reading cannot be shown
to cover the whole page."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.parsers import ResponseParserError

from migrate.storage import s3_listing
from migrate.storage.s3_lean import LeanS3
from migrate.storage.s3_listing import parse_page

HEAD = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
ETAG = "&quot;0123456789abcdef0123456789abcdef&quot;"


FIELDS = ("Key", "LastModified", "ETag", "Size")


def contents(key: str, size: int = 71, etag: str = ETAG, order: tuple[str, ...] = FIELDS,
             extra: str = "<StorageClass>STANDARD</StorageClass>") -> str:
    fields = {"Key": key, "LastModified": "2026-12-07T00:00:00.000Z", "ETag": etag, "Size": str(size)}
    return "<Contents>" + "".join(f"<{name}>{fields[name]}</{name}>" for name in order) + extra + "</Contents>"


def page(*items: str, truncated: bool = False, token: str | None = None, counted: bool = True, head: str = HEAD,
         tail: str = "</ListBucketResult>") -> bytes:
    """``counted``: with a KeyCount (a service may leave it out)."""
    more = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return (f"{head}<Name>b</Name><Prefix></Prefix>{f'<KeyCount>{len(items)}</KeyCount>' if counted else ''}"
            f"<MaxKeys>1000</MaxKeys>"
            f"<EncodingType>url</EncodingType><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + "".join(items) + more + tail).encode()


PREFIXED = ('<?xml version="1.0"?><s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">'
            '<s3:IsTruncated>false</s3:IsTruncated><s3:Contents><s3:Key>a</s3:Key><s3:LastModified>t</s3:LastModified>'
            '<s3:ETag>e</s3:ETag><s3:Size>1</s3:Size></s3:Contents></s3:ListBucketResult>').encode()
"""Tags with a namespace prefix: read plainly, it would look like a page with no objects."""


def read_plainly(body: bytes, monkeypatch: pytest.MonkeyPatch) -> s3_listing.Page:
    """The page as the regular expressions read it: the XML parser is not there to fall back on."""
    def no_xml(body: bytes) -> s3_listing.Page:
        raise AssertionError("the page was parsed as XML")
    with monkeypatch.context() as patch:
        patch.setattr(s3_listing, "_parse_xml", no_xml)
        return parse_page(body)


def test_a_page_is_read_plainly_with_the_rows_the_xml_parser_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    body = page(contents("a%2Fb"), contents("a%2Fc&amp;d", 12, etag='"feed"'),
                contents("z", 3, extra="<Owner><ID>x</ID></Owner><Type>Normal</Type>"), truncated=True, token="t&amp;1")
    plain = read_plainly(body, monkeypatch)
    assert plain == s3_listing._parse_xml(body)
    assert plain.rows[1] == ("a%2Fc&d", 12, '"feed"', "2026-12-07T00:00:00.000Z")
    assert plain.rows[0][2] == '"0123456789abcdef0123456789abcdef"'
    assert (plain.truncated, plain.next_token, plain.url_encoded) == (True, "t&1", True)


def test_an_indented_page_and_checksum_elements_are_read_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    checksums = "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm>\n  <ChecksumType>FULL_OBJECT</ChecksumType><Size>"
    item = contents("k").replace("><", ">\n  <").replace("<Size>", checksums)
    body = page(item, item.replace("<Key>k<", "<Key>l<"))
    assert read_plainly(body, monkeypatch) == s3_listing._parse_xml(body)


@pytest.mark.parametrize("body", [
    page(contents("a", order=("Key", "LastModified", "Size", "ETag")), contents("b"), counted=False),
    page(contents("a", extra="").replace(f"<ETag>{ETAG}</ETag>", ""), contents("b"), counted=False),
    page(contents("a", extra="").replace(f"<ETag>{ETAG}</ETag>", ""), contents("b")),
    page(contents("a"), contents("<![CDATA[b]]>")),
    page(contents("a"), contents("b")).replace(b"<Contents>", b'<Contents id="1">', 1),
    PREFIXED,
    (HEAD.replace("<ListBucketResult ", '<ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" ')
     + "<s3:IsTruncated>true</s3:IsTruncated><NextContinuationToken>t</NextContinuationToken>"
     + contents("a") + contents("b").replace("Contents>", "s3:Contents>") + "</ListBucketResult>").encode(),
    page(contents("a&#x7f;b"), contents("b&#128;"), contents("c&#x85;")),
    page(contents("a"), "<!-- " + contents("b") + " -->"),
    page(contents("a\r\nb"), contents("b")),
    page(contents("a\xe9"), contents("b")).replace(b"UTF-8", b"ISO-8859-1"),  # valid UTF-8, read as Latin-1
], ids=["another-order", "a-field-missing", "a-field-missing-counted", "cdata", "attribute", "prefixed",
        "prefixed-children", "character-references", "comment", "carriage-return", "latin-1"])
def test_a_page_the_expressions_cannot_cover_is_parsed_as_xml(body: bytes) -> None:
    parsed = parse_page(body)
    assert parsed == s3_listing._parse_xml(body) and parsed.rows


@pytest.mark.parametrize("body", [page(contents("a&#x01;b")), page(contents("a&nbsp;b")),
                                  page(contents("a")).replace(b"<Key>a", b"<Key>a\xff")],
                         ids=["control-character", "html-entity", "not-utf-8"])
def test_what_xml_refuses_is_refused(body: bytes) -> None:
    with pytest.raises(ResponseParserError, match="not XML"):
        parse_page(body)


def test_a_page_that_is_not_a_listing_is_an_error() -> None:
    with pytest.raises(ResponseParserError, match="not XML"):
        parse_page(b"<html><body>gateway timeout")
    with pytest.raises(ResponseParserError, match="root element"):
        parse_page(b"<Error><Code>Nope</Code></Error>")
    versions = page(contents("a")).replace(b"ListBucketResult", b"ListVersionsResult")
    with pytest.raises(ResponseParserError, match="root element"):
        parse_page(versions)


def test_the_pages_s3_services_send_are_read_plainly(s3, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """RGW's compact pages and moto's indented ones: the fast reading is the one they get."""
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    keys = ["docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data", "odd & key+with space", "x/<y>\"z'"]
    for index, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * index)
    lean = LeanS3(s3, boto3.session.Session().get_credentials(), bucket, 1, None)

    def no_xml(body: bytes) -> s3_listing.Page:
        raise AssertionError(f"the page was parsed as XML: {body[:300]!r}")
    monkeypatch.setattr(s3_listing, "_parse_xml", no_xml)
    listed = [(key, size, etag) for key, size, etag, _ in lean.list("")]
    expected = [(item["Key"], item["Size"], item["ETag"]) for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == expected and sorted(keys) == [row[0] for row in listed]
