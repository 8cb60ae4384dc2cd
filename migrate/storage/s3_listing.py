"""One ListObjectsV2 page, parsed: the destination listing is the pass's largest per-object cost
on the client after the walk (a tenth of a million pages for ten million objects).

Building an element tree for a page cost more CPU than everything else done with its entries
(each object's ``Contents`` holds six to nine elements). The services regmig lists (AWS, Ceph RGW,
MinIO, moto) write each ``Contents`` as Key, LastModified, ETag, (checksum elements,) Size, and the
fields a pass needs are read with one regular expression per page. That reading is trusted only
where it accounts for the whole page: an unprefixed ``ListBucketResult`` root and as many matches
as ``<Contents`` openings. Any other page (another order, CDATA, namespace prefixes, a missing
field) is parsed as XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from html import unescape

from botocore.parsers import ResponseParserError

LISTING = "ListBucketResult"

Row = tuple[str, int, str | None, str | None]
"""(key as listed, size, ETag as listed, LastModified as listed)."""

_ROOT = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?<ListBucketResult[\s>]")
_CONTENTS = re.compile(
    r"<Contents>\s*<Key>([^<]*)</Key>\s*<LastModified>([^<]*)</LastModified>\s*<ETag>([^<]*)</ETag>\s*"
    r"(?:<Checksum[A-Za-z]*>[^<]*</Checksum[A-Za-z]*>\s*)*<Size>(\d+)</Size>")
_FIELD = {name: re.compile(f"<{name}>([^<]*)</{name}>")
          for name in ("IsTruncated", "NextContinuationToken", "EncodingType")}


@dataclass
class Page:
    rows: list[Row]
    truncated: bool
    next_token: str | None
    url_encoded: bool
    """Keys are URL-encoded only when the answer says so: a service may ignore encoding-type."""


def parse_page(body: bytes) -> Page:
    """A page's rows in the service's order, its continuation and encoding."""
    text = body.decode("utf-8", "surrogateescape")
    page = _read_plainly(text)
    return page if page is not None else _parse_xml(body)


def _read_plainly(text: str) -> Page | None:
    """The page read with regular expressions, or None where that cannot be shown to cover it."""
    if _ROOT.match(text) is None or not text.rstrip().endswith(f"</{LISTING}>"):
        return None
    matches = _CONTENTS.findall(text)
    if len(matches) != text.count("<Contents"):
        return None
    truncated, token, encoding = (_field(text, name) for name in _FIELD)
    rows: list[Row] = [(_text(key), int(size), _text(etag), _text(modified))
                       for key, modified, etag, size in matches]
    return Page(rows, truncated == "true", token, encoding == "url")


def _field(text: str, name: str) -> str | None:
    found = _FIELD[name].search(text)
    return _text(found.group(1)) if found else None


def _text(raw: str) -> str:
    """Element text as XML gives it: entities and character references replaced (an ETag's
    quotes, the one entity on almost every row, without the general replacement)."""
    if "&" not in raw:
        return raw
    quoted = raw.replace("&quot;", '"')
    return quoted if "&" not in quoted else unescape(raw)


def _parse_xml(body: bytes) -> Page:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ResponseParserError(f"the listing is not XML: {exc}") from None
    if not root.tag.endswith(LISTING):
        raise ResponseParserError(f"the listing's root element is {root.tag!r}, not {LISTING}")
    ns = root.tag[: -len(LISTING)]
    key, size, etag, modified = f"{ns}Key", f"{ns}Size", f"{ns}ETag", f"{ns}LastModified"
    rows: list[Row] = [(item.findtext(key) or "", int(item.findtext(size) or 0), item.findtext(etag),
                        item.findtext(modified)) for item in root.iter(f"{ns}Contents")]
    return Page(rows, root.findtext(f"{ns}IsTruncated") == "true", root.findtext(f"{ns}NextContinuationToken"),
                root.findtext(f"{ns}EncodingType") == "url")
