"""spam-filter: a raw message turned into what fingerprints are made of.

MIME is split by ``mime.parse`` into stdlib ``email`` messages (compat32; why
not the stdlib parser and policy.default: see there), header values are read
raw and decoded here (RFC 2047), and nothing the sender declares is trusted:
a charset that is unknown or wrong falls back to UTF-8 then cp1252, transfer encodings that do not decode are taken as they are, and lengths are
our own caps, never the message's. Text is folded so that cosmetic changes do
not change it: HTML to text, Unicode NFKC, confusable letters to Latin,
zero-width characters out, lower case; URLs lose what tracks the reader (``urls``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from streams.spam.mime import MAX_HEADER_CHARS, content_type, parse
from streams.spam.urls import normalize_url

from streams.spam.native import NATIVE as _native

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\ufeff"))
_CONFUSABLE_PAIRS = (
    "аa вb еe кk мm нh оo рp сc тt уy хx ѕs іi јj ԁd ԛq ԝw ӏl ёe ɡg"  # Cyrillic
    " АA ВB ЕE КK МM НH ОO РP СC ТT ХX УY ЅS ІI ЈJ"
    " αa βb εe ιi κk νv οo ρp τt υu χx ϲc ϳj"  # Greek
    " ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX"
    " ıi ȷj ℓl ⅰi ⅼl ⅽc ⅾd ⅿm"
)
_CONFUSABLES: dict[int, Any] = {**_ZERO_WIDTH, **{ord(p[0]): p[1].lower() for p in _CONFUSABLE_PAIRS.split()}}
# str.translate with a dict looks up every character in Python: search (in C) first, translate when needed
_CONFUSABLE_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONFUSABLES) + "]")

_URL_RE = re.compile(r"""(?:https?://|www\.)[^\s<>"'(){}\[\]|\\^`]+""")  # on folded (lower-case) text
_URL_SPLIT_RE = re.compile(f"({_URL_RE.pattern})")
_HREF_RE = re.compile(r"""\b(?:href|src|action|background)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
# the same on lower-cased markup: case-sensitive, and without \b (checked per match), it is 4x faster
_HREF_LOWER_RE = re.compile(r"""(?:href|src|action|background)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_BLOCK_RE = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAK_RE = re.compile(r"<\s*/?\s*(?:br|p|div|tr|td|th|li|ul|ol|h[1-6]|table|blockquote|hr)\b[^>]*>", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")
_FOLD_RE = re.compile(r"\r?\n[ \t]*")
_COMBINING_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_NAMED_IN = ("content-disposition", "content-type")


@dataclass(slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class HeaderFacts:
    """Header values a scorer looks at, already decoded and lower-cased."""

    names: list[str] = field(default_factory=list)
    from_addr: str = ""
    from_name: str = ""
    reply_to: str = ""
    return_path: str = ""
    message_id: str = ""
    x_mailer: str = ""
    priority: str = ""  # X-Priority, or Importance / X-MSMail-Priority when it is absent
    date: str = ""
    to_count: int = 0
    to: str = ""  # To and Cc as sent, lower-cased (for "recipient not named" checks)
    received: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Extracted:
    """One message, normalised; never raises, whatever the input."""

    subject: str = ""
    text: str = ""
    urls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    headers: HeaderFacts = field(default_factory=HeaderFacts)
    content_types: list[str] = field(default_factory=list)
    charsets: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    html_only: bool = False
    defects: int = 0
    raw_urls: int = 0
    # what the structural rules (``rules``) read: the HTML documents as sent, the visible text of the
    # HTML and of the plain parts apart, the subject before folding, a sample of the text before
    # lower-casing, the URLs as written, and whether an encoded word held nothing but ASCII
    markup: list[str] = field(default_factory=list)
    html_text: str = ""
    plain_text: str = ""
    raw_subject: str = ""
    raw_text_sample: str = ""
    raw_urls_sample: list[str] = field(default_factory=list)
    encoded_words_ascii: bool = False
    text_base64: bool = False  # a text part (not an attachment) sent in base64, which mail clients do not do


def fold(text: str) -> str:
    """Unicode NFKC, confusables to Latin, zero-width out, lower case, whitespace collapsed."""
    return " ".join(_fold_letters(text).split())


def _fold_letters(text: str) -> str:
    """``fold`` but for the white space."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if _CONFUSABLE_RE.search(text):
            text = text.translate(_CONFUSABLES)
        if not text.isascii():
            text = _COMBINING_RE.sub("", unicodedata.normalize("NFD", text))
    return text.lower()


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Text from bytes whatever the declared charset says: it is tried, then UTF-8, then cp1252."""
    if data.isascii() and b"\x1b" not in data:  # ISO-2022 text (Japanese, Korean) is 7-bit with escapes
        return data.decode("ascii")
    for charset in (declared, "utf-8"):
        if charset:
            try:
                return data.decode(charset)
            except (LookupError, UnicodeError, ValueError, TypeError):
                pass
    return data.decode("cp1252", errors="replace")


def _remove_comments(markup: str) -> str:
    """HTML comments out, in linear time (spammers pad with them to break hashes)."""
    if "<!--" not in markup:
        return markup
    out, pos = [], 0
    while (start := markup.find("<!--", pos)) >= 0:
        out.append(markup[pos:start])
        end = markup.find("-->", start + 4)
        pos = len(markup) if end < 0 else end + 3
    out.append(markup[pos:])
    return "".join(out)  # Vi<!-- -->agra is one word


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Visible text of an HTML part, and the link targets it holds."""
    if _native is not None and markup.isascii():  # Rust, but for unescaping; Unicode case rules need the regexes
        text, links = _native.html_to_text(markup)
    else:
        text, links = _strip_markup(markup)
    if "&" in text:
        text = html.unescape(text)
    return text, [html.unescape(link) for link in links if link]


def _strip_markup(markup: str) -> tuple[str, list[str]]:
    """``html_to_text`` but for unescaping entities: the reference of ``_native.html_to_text``."""
    markup = _remove_comments(markup)
    links = _links(markup)
    markup = _BLOCK_RE.sub(" ", markup)
    markup = _BREAK_RE.sub("\n", markup)
    return _TAG_RE.sub("", markup), links


def _links(markup: str) -> list[str]:
    """Values of href/src/action/background attributes, as ``_HREF_RE`` finds them."""
    lower = markup.lower()
    if len(lower) != len(markup):  # a few letters lower to two characters: positions would not line up
        return [a or b or c for a, b, c in _HREF_RE.findall(markup)]
    links = []
    for found in _HREF_LOWER_RE.finditer(lower):
        start = found.start()
        if start and (markup[start - 1].isalnum() or markup[start - 1] == "_"):  # \b: what re calls \w
            continue
        group = found.lastindex or 0
        links.append(markup[found.start(group) : found.end(group)])
    return links


def _unescape_8bit(value: str) -> str:
    """A raw header value whose 8-bit bytes the parser kept as surrogates, as text."""
    if value.isascii():
        return value
    try:
        return decode_bytes(value.encode("ascii", "surrogateescape"), None)
    except UnicodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded, their declared charsets not trusted."""
    value = _unescape_8bit(value)
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except Exception:  # noqa: BLE001 - malformed encoded words: keep the raw text
        return value
    return "".join(decode_bytes(p, cs) if isinstance(p, bytes) else p for p, cs in pieces)


def raw_headers(fields: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Header values as sent, still folded (``unfold`` the few that are read), by lower-cased name;
    cheap: no header parsing."""
    if _native is not None and isinstance(fields, list):
        return _native.group_fields(fields)  # a Python loop over ~40 fields a mail, in one call
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name.lower(), []).append(value)
    return out


def unfold(value: str) -> str:
    """A header value on one line, blanks around it off."""
    return (_FOLD_RE.sub(" ", value) if "\n" in value else value).strip()


def unfold_all(values: list[str]) -> list[str]:
    """``unfold`` of each value; in Rust when built (its regex was ~15 us a mail, on Received lines)."""
    if _native is not None and values:
        try:
            return _native.unfold_all(values)
        except UnicodeEncodeError:  # 8-bit bytes kept as surrogates: not UTF-8
            pass
    return list(map(unfold, values))


def _needless_encoded_words(headers: dict[str, list[str]]) -> bool:
    """An RFC 2047 encoded word in Subject or From whose text is plain ASCII: no mail client needs
    it, bulk senders use it to hide words from filters that read headers raw."""
    for name in ("subject", "from"):
        values = headers.get(name)
        if values and "=?" in values[0]:
            decoded = decode_words(unfold(values[0]))
            if decoded.isascii() and "=?" not in decoded:
                return True
    return False


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return decode_words(unfold(values[0])) if values else ""


# the shapes most senders have, for which the stdlib's parser gives what is plain to see (test_spam_fast_paths
# holds the two to the same answers): "local@domain", "Some Name <local@domain>", "\"Any name\" <local@domain>"
_DOT_ATOM_ADDR = r"[A-Za-z0-9_+=%-]+(?:\.[A-Za-z0-9_+=%-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PLAIN_ADDRESS_RE = re.compile(rf"""[ \t]*(?:({_DOT_ATOM_ADDR})|([A-Za-z0-9 \t.'_-]*)<({_DOT_ATOM_ADDR})>"""
                               rf"""|"([^"\\\r\n]*)"[ \t]*<({_DOT_ATOM_ADDR})>)[ \t]*""")


@lru_cache(maxsize=4096)
def _parseaddr(value: str) -> tuple[str, str]:
    """The stdlib's (name, address), memoised: senders repeat, and its parser is slow Python (~10 us)."""
    if plain := _PLAIN_ADDRESS_RE.fullmatch(value):
        bare, words, addr, quoted, quoted_addr = plain.groups()
        if bare is not None:
            return "", bare
        if addr is not None:
            return " ".join(words.split()), addr
        return quoted, quoted_addr
    return parseaddr(value)


def _address(value: str) -> str:
    return _parseaddr(value)[1].lower() if value else ""


def header_facts(headers: dict[str, list[str]]) -> HeaderFacts:
    from_name, from_addr = _parseaddr(_first(headers, "from"))
    recipients = unfold_all(headers.get("to", []) + headers.get("cc", []))
    return HeaderFacts(
        names=list(headers),
        from_addr=from_addr.lower(),
        from_name=fold(from_name),
        reply_to=_address(_first(headers, "reply-to")),
        return_path=_address(_first(headers, "return-path")),
        message_id=_first(headers, "message-id").lower(),
        x_mailer=fold(_first(headers, "x-mailer") or _first(headers, "user-agent"))[:60],
        date=_first(headers, "date"),
        priority=(_first(headers, "x-priority") or _first(headers, "importance")
                  or _first(headers, "x-msmail-priority"))[:20].lower(),
        to_count=sum(v.count("@") for v in recipients),  # a count, cheaply: quoted @s are rare
        to=" ".join(recipients)[:MAX_HEADER_CHARS].lower(),
        received=[v[:300].lower() for v in unfold_all(headers.get("received", [])[:12])],
    )


def _part_text(part: Message, out: Extracted, ctype: str, charset: str | None) -> str | None:
    """A text part's decoded text (charset not trusted), or None for other parts."""
    out.content_types.append(ctype)
    cte = next((v for k, v in part.raw_items() if k.lower() == "content-transfer-encoding"), "").strip().lower()
    if cte:
        out.encodings.append(cte[:20])
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - undecodable transfer encoding: no text from this part
        return None
    if not isinstance(data, bytes):
        return None
    filename = _filename(part)
    if filename or not ctype.startswith("text/") or part.get_content_disposition() == "attachment":
        out.attachments.append(Attachment(str(filename or ""), ctype, data))
        return None
    if charset:
        out.charsets.append(charset[:30])
    if cte == "base64":
        out.text_base64 = True
    return decode_bytes(data, charset)


def _filename(part: Message) -> str | None:
    # a file name is a "filename" or "name" parameter: without the word, no need for the stdlib's parameter parsing
    if not any(k.lower() in _NAMED_IN and "name" in v.lower() for k, v in part.raw_items()):
        return None
    try:
        return part.get_filename()
    except Exception:  # noqa: BLE001 - a broken Content-Disposition
        return None


def _texts(msg: Message, out: Extracted, max_parts: int, max_text_chars: int) -> tuple[list[str], list[str]]:
    """(plain texts, HTML documents) of the message's parts; attachments noted in ``out``."""
    plain: list[str] = []
    markup: list[str] = []
    for n, part in enumerate(msg.walk()):
        if n >= max_parts:
            break
        out.defects += len(part.defects)
        if part.is_multipart():
            continue
        ctype, charset = content_type(part)
        text = _part_text(part, out, ctype, charset)
        if text is not None:
            (markup if ctype == "text/html" else plain).append(text[:max_text_chars])
    return plain, markup


def split_urls(folded: str) -> tuple[str, list[str]]:
    """(the text without its URLs, white space collapsed; the URLs) of folded text; in Rust when built
    (the regex steps through every character: ~60 us a mail)."""
    if _native is not None:
        try:
            return _native.split_urls(folded)
        except UnicodeEncodeError:  # a lone surrogate (a charset like unicode_escape makes them): not UTF-8
            pass
    return split_urls_py(folded)


def split_urls_py(folded: str) -> tuple[str, list[str]]:
    """``split_urls`` by the regex: the reference."""
    pieces = _URL_SPLIT_RE.split(folded)  # text, URL, text, ...: findall and sub in one pass
    return " ".join(" ".join(pieces[::2]).split()), pieces[1::2]


def extract(raw: bytes, max_parts: int = 64, max_text_chars: int = 60_000) -> Extracted:
    """The text, URLs, attachments and header facts of one raw message."""
    msg, fields = parse(raw)
    out = Extracted()
    headers = raw_headers(fields)
    out.raw_subject = _first(headers, "subject")
    out.subject = fold(out.raw_subject)
    out.encoded_words_ascii = _needless_encoded_words(headers)
    out.headers = header_facts(headers)
    plain, markup = _texts(msg, out, max_parts, max_text_chars)
    out.html_only = bool(markup) and not plain
    out.markup = markup
    out.plain_text = " ".join(plain)[:max_text_chars]
    links: list[str] = []
    html_texts: list[str] = []
    for doc in markup:
        text, found = html_to_text(doc)
        html_texts.append(text)
        links += found
    out.html_text = " ".join(" ".join(html_texts).split())[:max_text_chars]
    plain += html_texts
    out.raw_text_sample = " ".join(plain)[:2000]
    # URLs out of the folded text: the same as out of fold()'s, since a URL holds no white space
    out.text, found_urls = split_urls(_fold_letters(" ".join(plain)[:max_text_chars]))
    found_urls += links
    out.raw_urls = len(found_urls)
    out.raw_urls_sample = found_urls[:50]
    out.urls = list(dict.fromkeys(u for u in map(normalize_url, found_urls[:200]) if u))
    return out
