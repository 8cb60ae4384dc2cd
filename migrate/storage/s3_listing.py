"""One ListObjectsV2 page, parsed: the destination listing is the pass's largest per-object cost
on the client after the walk (ten thousand pages for ten million objects).

Building an element tree for a page cost more CPU than everything else done with its entries
(each object's ``Contents`` holds six to nine elements). The services regmig lists (AWS, Ceph RGW,
MinIO, moto) write each ``Contents`` as Key, LastModified, ETag, (checksum elements,) Size, and the
fields a pass needs are read with one regular expression per page. That reading is trusted only
where it accounts for the whole page as XML would read it: UTF-8 (declared so, or not declared),
an unprefixed ``ListBucketResult`` root, no prefixed element anywhere, no comment, CDATA or
carriage return, no entity but XML's five, and as many matches as ``<Contents`` openings. Any
other page (another order, a missing field, a character reference) is parsed as XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from botocore.parsers import ResponseParserError

LISTING = "ListBucketResult"

Row = tuple[str, int, str | None, str | None]
"""(key as listed, size, ETag as listed, LastModified as listed)."""

_ROOT = re.compile(r"\s*(?:<\?xml(?P<declared>[^>]*)\?>\s*)?<ListBucketResult[\s>]")
_UTF8 = re.compile(r"""encoding\s*=\s*["']utf-?8["']""", re.IGNORECASE)
_PREFIXED = re.compile(r":(?:Contents|Key|LastModified|ETag|Size|IsTruncated|NextContinuationToken|EncodingType)[\s>]")
"""A field read here in a prefixed element (``<s3:Contents>``): the expressions would not see it."""
_REFERENCE = re.compile(r"&(?!(?:lt|gt|amp|quot|apos);)")
"""A character reference or another entity: XML's decoding rules, not ours."""
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
    try:
        page = _read_plainly(body.decode("utf-8"))
    except UnicodeDecodeError:
        page = None
    return page if page is not None else _parse_xml(body)


def _read_plainly(text: str) -> Page | None:
    """The page read with regular expressions, or None where that cannot be shown to cover it."""
    root = _ROOT.match(text)
    if root is None or not text.rstrip().endswith(f"</{LISTING}>"):
        return None
    declared = root.group("declared")
    if declared and "encoding" in declared and not _UTF8.search(declared):
        return None
    if "<!" in text or "\r" in text or text.find("<?", root.end()) >= 0 or _PREFIXED.search(text) \
            or _REFERENCE.search(text):
        return None  # see _PREFIXED, _REFERENCE; and comments, CDATA, a carriage return (XML reads a newline)
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
    """Element text as XML gives it: XML's five entities replaced (the page holds no other)."""
    if "&" not in raw:
        return raw
    quoted = raw.replace("&quot;", '"')  # an ETag's quotes: the one entity on almost every row
    if "&" not in quoted:
        return quoted
    return quoted.replace("&lt;", "<").replace("&gt;", ">").replace("&apos;", "'").replace("&amp;", "&")


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
