"""spam-filter: URLs in the forms fingerprints and tokens use.

``normalize_url`` gives ``host[:port]/path?query`` without what tracks the reader
(scheme, fragment, default port, tracking parameters; the rest sorted);
``url_skeleton`` blanks what varies per recipient; ``registrable_domain`` is the
part of a host name someone registered. Plain URLs (most) take a Rust path
(``_native.UrlForms``) where the extension is built; ``normalize_url_py`` and
``url_skeleton_py`` are the reference and take all others.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from streams.spam.native import NATIVE as _native

TRACKING_PARAMS = frozenset({
    "gclid", "gclsrc", "dclid", "fbclid", "msclkid", "yclid", "igshid", "gbraid", "wbraid", "twclid",
    "mc_cid", "mc_eid", "_hsenc", "_hsmi", "hsctatracking", "mkt_tok", "trk", "trkcampaign", "sc_cid",
    "s_cid", "elqtrackid", "elqtrack", "elq", "elqcampaignid", "vero_id", "vero_conv", "oly_enc_id",
    "oly_anon_id", "rb_clickid", "ref", "ref_src", "referrer", "cmpid", "campaign_id", "email", "e",
    "recipient", "uid", "subscriber", "sid", "tid", "ncid", "cid", "spm", "scid", "_ga", "_gl",
})
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "ga_", "hmb_", "icid")
# second-level labels under which a registrable domain has three labels (no PSL download offline)
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gob", "nic", "ltd", "plc"})
_HOST_RE = re.compile(r"[^\s/?#@:\\{}<>\[\]\"'`|^%]+")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_SLASHES_RE = re.compile(r"/{2,}")
# http(s), a plain host name, no port, user, %-escape or fragment, a query of plain k=v pairs if any:
# nothing for quote(), urlsplit or parse_qsl to do
_SIMPLE_URL_RE = re.compile(r"[hH][tT][tT][pP][sS]?://([A-Za-z0-9.-]*[A-Za-z0-9-][A-Za-z0-9.-]*)(/[\w/.~!$&'()*+,;=:@-]*)?"
                            r"(?:\?([\w.~-]+(?:=[\w.~-]*)?(?:&[\w.~-]+(?:=[\w.~-]*)?)*))?", re.ASCII)
_SKELETON_RE = re.compile(r"\d+")
_RANDOMISH_RE = re.compile(r"(?=[a-z]*\d)[a-z0-9_-]{12,}")


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The part of a host name that someone registered (example.co.uk, not www.example.co.uk)."""
    host = host.strip(".").lower()
    if _is_ip(host):
        return host
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


_IPV4_CHARS = frozenset("0123456789.")


def _is_ip(host: str) -> bool:
    # a name with a letter and no ":" is neither IPv4 nor IPv6: skip the stdlib's raise (~4 us a host)
    if ":" not in host and not _IPV4_CHARS.issuperset(host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _norm_host(netloc_host: str) -> str:
    host = unquote(netloc_host).strip(".").lower()
    if host.isdigit() and int(host) < 2**32:  # http://3232235777/ is an IPv4 address in disguise
        return str(ipaddress.IPv4Address(int(host)))
    if "xn--" in host:
        try:
            host = host.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            pass
    return host


def _keep_param(name: str) -> bool:
    name = name.lower()
    return name not in TRACKING_PARAMS and not name.startswith(TRACKING_PREFIXES)


# the simple path of normalize_url in Rust, given our tracking parameters (one list, here)
_URL_FORMS = None if _native is None else _native.UrlForms(sorted(TRACKING_PARAMS), list(TRACKING_PREFIXES))


@lru_cache(maxsize=8192)
def normalize_url(url: str) -> str | None:
    """``host[:port]/path?query`` without scheme, fragment, default port or tracking
    parameters, remaining parameters sorted; None when it is no web URL."""
    if _URL_FORMS is not None and (simple_form := _URL_FORMS.simple(url)) is not None:
        return simple_form or None  # "": surely no web URL
    return normalize_url_py(url)


def normalize_url_py(url: str) -> str | None:
    """``normalize_url`` in Python: the reference, and all URLs the native simple path leaves to it."""
    url = url.strip().strip("<>\"'.,;:!").replace("\\", "/")
    if url.lower().startswith("www."):
        url = "http://" + url
    if (simple := _SIMPLE_URL_RE.fullmatch(url)) and not (host := simple[1].strip(".").lower()).isdigit() \
            and "xn--" not in host:  # what the general path below makes of it, without its parsing
        return host + _SLASHES_RE.sub("/", simple[2] or "").rstrip("/") + _simple_query(simple[3])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = _norm_host(parts.hostname)
    if not _HOST_RE.fullmatch(host):
        return None
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = quote(_SLASHES_RE.sub("/", unquote(parts.path)).rstrip("/"), safe=_PATH_SAFE)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _keep_param(k)]
    return netloc + path + ("?" + urlencode(sorted(query)) if query else "")


def _simple_query(query: str | None) -> str:
    """What parse_qsl, the tracking filter and urlencode make of k=v pairs that need no (un)quoting."""
    if not query:
        return ""
    pairs = sorted((k, v) for k, _, v in (pair.partition("=") for pair in query.split("&")) if _keep_param(k))
    return "?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else ""


@lru_cache(maxsize=8192)
def url_host(normalized: str) -> str:
    """The host of a normalised URL; memoised: tokens, domains and anomalies each ask (24 times a mail)."""
    return normalized.split("/", 1)[0].split("?", 1)[0].rsplit(":", 1)[0] if normalized else ""


@lru_cache(maxsize=8192)
def url_skeleton(normalized: str) -> str:
    """A URL with what varies per recipient blanked: digits, random-looking path
    segments and every parameter value. Two mailings of one campaign share it."""
    if _native is not None and (skeleton := _native.UrlForms.skeleton(normalized)) is not None:
        return skeleton
    return url_skeleton_py(normalized)


def url_skeleton_py(normalized: str) -> str:
    """``url_skeleton`` in Python: the reference, and the URLs the native one leaves to it."""
    base, _, query = normalized.partition("?")
    base = _RANDOMISH_RE.sub("*", _SKELETON_RE.sub("0", base.lower()))
    if "%" in query or "+" in query:  # escapes: the stdlib unquotes them
        keys = sorted({k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)})
    else:  # what parse_qsl gives of plain pairs, without its per-pair work
        keys = sorted({pair.partition("=")[0].lower() for pair in query.split("&") if pair})
    return base + ("?" + "&".join(keys) if keys else "")
