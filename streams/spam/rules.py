"""spam-filter: structural rules, the signals that hold on mail the filter has never seen.

Words change with every campaign and every year; how spam is *built* changes
slowly: HTML with no plain text, text hidden from the reader, drug names spelt
with digits, links whose visible text names one domain and whose target is
another, headers no real mail client writes. Each rule here is a yes/no test
with a name (``rule:<name>``), as SpamAssassin's are; what a rule is worth is
not set by hand but learned when the base model is built (``combine``), from
corpora the rule was not written against.

``rule_hits`` reads what ``normalize.extract`` kept of a mail (text, HTML
documents, URLs with their anchor texts, header facts); it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import filterfalse

import ahocorasick
from email.utils import mktime_tz, parsedate_tz

from streams.spam.normalize import Extracted
from streams.spam.urls import registrable_domain, url_host

from streams.spam.native import NATIVE as _native

# -- obfuscation: drug and finance words spelt to dodge word filters. Looked up per distinct word (a
# few hundred a mail) with look-alike characters mapped back, not by one regex over the text: an
# alternation of spelling patterns tried at every position cost ~0.4 ms a mail
BAIT_WORDS = frozenset({
    "viagra", "cialis", "levitra", "valium", "xanax", "vicodin", "pharmacy", "prescription", "mortgage",
    "refinance", "casino", "penis", "enlargement", "replica", "rolex", "meds", "pills", "phentermine", "soma",
    "ambien", "oxycontin", "hydrocodone", "loan", "loans", "debt", "viagara", "rx", "herbal", "weightloss",
})
_LOOK_ALIKES = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                              "!": "i", "|": "l", "¡": "i", "ï": "i", "í": "i", "ì": "i", "à": "a", "á": "a",
                              "â": "a", "ò": "o", "ó": "o", "è": "e", "é": "e"})
_FILLER_RE = re.compile(r"[\W_]+")
_MIXED_WORD_RE = re.compile(r"[a-z]+\d+[a-z]+")  # m0rtgage, v1agra
_UPPER = bytes(range(65, 91))
_LOWER = bytes(range(97, 123))
_EDGE_PUNCTUATION = ".,;:!?\"'()[]<>*-"
# phrases of the folded (lower-case) text, each looked for with ``in`` (a C substring search)
SPAMMY_PHRASES = (
    "click here", "remove me", "remove yourself", "to be removed", "unsubscribe", "opt-out", "opt out",
    "no longer wish", "this is not spam", "act now", "limited time", "order now", "order today", "risk free",
    "risk-free", "money back", "satisfaction guaranteed", "100% free", "free trial", "free gift", "free quote",
    "free consultation", "special offer", "special promotion", "lowest price", "best price", "no obligation",
    "credit card", "dear friend", "dear sir", "dear madam", "you have been selected", "winner", "congratulations",
    "urgent", "confidential", "bank account", "wire transfer", "million dollars", "million usd",
    "next of kin", "beneficiary", "investment opportunity", "work from home", "extra income", "earn $",
    "increase your", "amazing", "guarantee", "discount", "cheap", "call now", "toll free", "you are receiving",
    "this message was sent", "one time mailing", "mailing list", "marketing", "order form",
)
ADVANCE_FEE_PHRASES = (
    "next of kin", "beneficiary", "million", "transfer", "foreign partner", "your assistance", "confidential",
    "deceased", "late husband", "late father", "government", "percent", "fund", "bank", "diplomat",
    "security company", "god bless", "strictly", "trustworthy", "overseas", "barrister", "nigeria", "lagos",
)
PHISHING_PHRASES = (
    "verify your account", "verify your identity", "verify your information", "update your account",
    "update your billing", "update your information", "update your records", "confirm your account",
    "confirm your identity", "confirm your password", "account has been suspended", "account will be suspended",
    "account has been locked", "account has been limited", "unusual activity", "security alert", "security measure",
    "login to your account", "log in to your account", "billing information",
)
_BRANDS = {"paypal": ("paypal.com",), "ebay": ("ebay.com", "ebay.co.uk", "ebay.de"), "citibank": ("citibank.com", "citi.com"),
           "bank of america": ("bankofamerica.com",), "wells fargo": ("wellsfargo.com",), "chase": ("chase.com",),
           "amazon": ("amazon.com", "amazon.co.uk", "amazon.de"), "apple": ("apple.com",),
           "microsoft": ("microsoft.com",), "norton": ("norton.com", "symantec.com"), "mcafee": ("mcafee.com",),
           "barclays": ("barclays.co.uk", "barclays.com"), "hsbc": ("hsbc.com", "hsbc.co.uk"),
           "visa": ("visa.com",), "mastercard": ("mastercard.com",), "western union": ("westernunion.com",)}

# -- HTML: looked at in the raw markup (normalize keeps it), by regexes: a parser per mail would cost
# more than all of scoring (~0.3 ms), and what is looked for is visible in the tags themselves
# these run on the lower-cased markup
# each alternative its own regex: one that starts with a literal is searched for that literal first (fast), an
# alternation is tried at every position
_HIDDEN_RES = tuple(map(re.compile, (r"display\s*:\s*none", r"visibility\s*:\s*hidden",
                                     r"font-size\s*:\s*[01](?:\.\d+)?\s*(?:px|pt)", r"<font[^>]+size\s*=\s*[\"']?[-+]?[01]\b")))
_WHITE_FONT_RE = re.compile(r"color\s*[:=]\s*[\"']?\s*(?:#f{3}(?:f{3})?|white|#fefefe|#fdfdfd)\b")
_PASSWORD_RE = re.compile(r"type\s*=\s*[\"']?password|name\s*=\s*[\"']?(?:pin|cvv|ccnum|cardnumber|ssn)\b")
_LARGE_FONT_RES = tuple(map(re.compile, (r"<font[^>]+size\s*=\s*[\"']?(?:\+[2-9]|[5-9])\b",
                                         r"font-size\s*:\s*(?:[3-9]\d|\d{3,})px")))
_ESCAPED_URL_RE = re.compile(r"%[0-9a-f]{2}.*%[0-9a-f]{2}", re.IGNORECASE)  # a URL that hides its letters
_ANCHOR_OPEN_RE = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>")  # on lower-cased markup
_DOMAINISH_RE = re.compile(r"(?:https?://)?(?:[a-z0-9-]+\.)+[a-z]{2,6}\b")
_INNER_TAG_RE = re.compile(r"<[^>]*>")

RULES_TEXT_CHARS = 20_000  # text the phrase rules read: spam says what it wants early

SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly", "cutt.ly",
                        "rebrand.ly", "tiny.cc", "shorturl.at", "rb.gy", "s.id", "v.gd", "x.co", "lnkd.in"})
FREE_MAIL = frozenset({"hotmail.com", "yahoo.com", "msn.com", "aol.com", "gmail.com", "excite.com", "lycos.com",
                       "netscape.net", "mail.com", "usa.net", "juno.com", "email.com", "outlook.com", "mail.ru",
                       "yahoo.co.uk", "rediffmail.com", "netzero.net", "earthlink.net", "caramail.com"})
_MSGID_RE = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
_RANDOM_TAIL_RE = re.compile(r"(?:\s{3,}|[\s\[(#-])(?=[a-z]*\d)[a-z0-9]{4,}[\])]?$")
_RECEIVED_FROM_RE = re.compile(r"^from\s+(\S+)")
# a relay whose reverse DNS names an access line (SpamAssassin's RDNS_DYNAMIC): "from helo (name [ip])"
_DYNAMIC_RDNS_RE = re.compile(r"\(\s*[\w.-]*(?:\d+[-.]\d+[-.]\d+[-.]\d+|dsl|dial|dyn|pool|ppp|cable|dhcp|"
                              r"broadband|cust|modem|client)[\w.-]*\s*\[\d")
_NO_RDNS_RE = re.compile(r"\(\s*(?:unknown|\[\d)")  # "(unknown [1.2.3.4])" or "([1.2.3.4])": no reverse name

_DATE_SHAPE_RE = re.compile(r"^(?:[a-z]{3},\s+)?\d{1,2}\s+[a-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+[-+]\d{4}\b",
                            re.IGNORECASE)


GROUPS = ("structure", "obfuscation", "urls", "headers")


def rule_hits(ex: Extracted, mail_from: str = "", rcpt_to: Sequence[str] = (),
              disabled: frozenset[str] = frozenset()) -> list[str]:
    """The names of the rules this mail hits, each ``rule:<name>``; ``disabled``: rule names or
    ``GROUPS`` that do not count."""
    hits: list[str] = []
    _structure(ex, hits)
    structure = len(hits)
    phrases = _obfuscation(ex, hits)
    obfuscation = len(hits)
    _urls(ex, phrases, hits)
    urls = len(hits)
    _headers(ex, mail_from, rcpt_to, hits)
    if disabled:
        bounds = {"structure": (0, structure), "obfuscation": (structure, obfuscation),
                  "urls": (obfuscation, urls), "headers": (urls, len(hits))}
        off = {i for group, (a, b) in bounds.items() if group in disabled for i in range(a, b)}
        hits = [h for i, h in enumerate(hits) if i not in off and h not in disabled]
    return ["rule:" + name for name in hits]


def _structure(ex: Extracted, hits: list[str]) -> None:
    if ex.markup:
        _markup(ex, hits)
    if (not ex.text or ex.text.isspace()) and not ex.attachments:
        hits.append("no_text")
    if ex.attachments and len(ex.text) < 100:
        hits.append("attachment_little_text")
    if any(a.content_type.startswith("image/") for a in ex.attachments) and len(ex.text) < 300:
        hits.append("image_attachment_little_text")
    if ex.defects:
        hits.append("mime_defects")
    if "multipart/alternative" in ex.content_types and (not ex.plain_text or ex.plain_text.isspace()):
        hits.append("alternative_empty_text")
    if ex.encoded_words_ascii:
        hits.append("encoded_word_needless")
    if ex.text_base64:
        hits.append("text_base64")


def _markup(ex: Extracted, hits: list[str]) -> None:
    """Rules on the HTML as sent. Tags are counted with ``str.count`` on the lower-cased markup (in C);
    regexes only where a tag's attributes matter."""
    markup = " ".join(ex.markup)
    low = markup.lower()
    visible = len(ex.html_text)
    hits.append("html")
    if ex.html_only:
        hits.append("html_only")
    if visible < 200:
        hits.append("html_little_text")
    if visible < 400 and "<img" in low:
        hits.append("html_images_little_text")
    if low.count("<") > 8 * max(ex.html_text.count(" ") + 1, 1):
        hits.append("html_tag_heavy")
    if any(r.search(low) for r in _HIDDEN_RES):
        hits.append("html_hidden_text")
    if _WHITE_FONT_RE.search(low):
        hits.append("html_white_text")
    if "<!--" in low and _comment_in_word(low):
        hits.append("html_comment_in_word")
    if "<form" in low:
        hits.append("html_form")
        if _PASSWORD_RE.search(low):
            hits.append("html_form_password")
    if "<script" in low or "javascript:" in low or "onload=" in low or "onmouseover=" in low:
        hits.append("html_script")
    if any(r.search(low) for r in _LARGE_FONT_RES):
        hits.append("html_font_large")
    if low.count("<font") > 10:
        hits.append("html_many_font_tags")
    if "bgcolor" in low and "<table" in low:
        hits.append("html_coloured_table")
    if ex.plain_text and ex.html_text:
        _alternative_mismatch(ex, hits)


def _comment_in_word(low: str) -> bool:
    """An HTML comment of at most 40 characters inside a word (``Vi<!-- x -->agra``): what
    ``\\w<!--[^>]{0,40}-->\\w`` finds, by ``str.find`` from each ``<!--`` (the regex, starting with
    ``\\w``, was tried at every position of the markup: ~100 us an HTML mail)."""
    at = low.find("<!--")
    while at >= 0:
        if at > 0 and _is_word_char(low[at - 1]):
            end = low.find(">", at + 4)  # the comment's text holds no ">": its "-->" ends at the first one
            if end < 0:
                return False
            if at + 4 <= end - 2 <= at + 44 and low[end - 2:end] == "--" and end + 1 < len(low) \
                    and _is_word_char(low[end + 1]):
                return True
        at = low.find("<!--", at + 1)
    return False


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"  # the regex's \\w


def _alternative_mismatch(ex: Extracted, hits: list[str]) -> None:
    """A text part that says something else than the HTML part beside it: the padding of poisoned spam."""
    plain = set(ex.plain_text[:5000].lower().split())
    html = set(ex.html_text[:5000].lower().split())
    if len(plain) >= 20 and len(html) >= 20:
        overlap = len(plain & html) / min(len(plain), len(html))
        if overlap < 0.3:
            hits.append("text_html_differ")


def _obfuscation(ex: Extracted, hits: list[str]) -> list[set[str]]:
    """Rules on the words of the text; returns the phrases found of each list (``_phrases``)."""
    text = ex.subject + " " + ex.text[:RULES_TEXT_CHARS]
    words = _odd_words(text)
    found = _phrases(text)
    if found[BAIT] or words.disguised_bait:
        hits.append("bait_word")
    if words.disguised_bait:
        hits.append("bait_word_obfuscated")
    if words.mixed >= 3:
        hits.append("words_with_digits")
    if words.money >= 3:
        hits.append("money_amounts")
    if words.percent >= 2:
        hits.append("percentages")
    if len(found[SPAMMY]) >= 2:
        hits.append("spammy_phrases_2")
    if len(found[SPAMMY]) >= 4:
        hits.append("spammy_phrases_4")
    if len(found[ADVANCE_FEE]) >= 6:
        hits.append("advance_fee")
    if found[PHISHING]:
        hits.append("phishing_phrase")
    _subject(ex, hits)
    if ex.text and len(ex.text) > 200 and _upper_share(ex.raw_text_sample) > 0.5:
        hits.append("body_shouting")
    return found


def _upper_share(text: str) -> float:
    """The share of capitals among the ASCII letters (counted in C: bytes.translate deletes)."""
    data = text.encode("ascii", "ignore")
    lower = len(data) - len(data.translate(None, _LOWER))
    upper = len(data) - len(data.translate(None, _UPPER))
    return upper / (upper + lower) if upper + lower else 0.0


BAIT, SPAMMY, ADVANCE_FEE, PHISHING, BRAND = range(5)
_WHOLE_WORDS = (BAIT, BRAND)  # found only where no letter stands next to them


def _automaton() -> ahocorasick.Automaton:
    """Every phrase of the lists in one Aho-Corasick automaton: one pass in C finds them all (``in``
    per phrase cost ~1 us each a mail, ~100 us for the lists)."""
    kinds: dict[str, tuple[int, ...]] = {}
    for kind, phrases in ((BAIT, BAIT_WORDS), (SPAMMY, SPAMMY_PHRASES), (ADVANCE_FEE, ADVANCE_FEE_PHRASES),
                          (PHISHING, PHISHING_PHRASES), (BRAND, tuple(_BRANDS))):
        for phrase in phrases:
            kinds[phrase] = (*kinds.get(phrase, ()), kind)
    automaton = ahocorasick.Automaton()
    for phrase in sorted(kinds):
        automaton.add_word(phrase, (phrase, kinds[phrase]))
    automaton.make_automaton()
    return automaton


_AUTOMATON = _automaton()


def _phrases(text: str) -> list[set[str]]:
    """The distinct phrases of each list found in the text; bait words only as whole words."""
    found: list[set[str]] = [set(), set(), set(), set(), set()]
    for end, (phrase, kinds) in _AUTOMATON.iter(text):
        for kind in kinds:
            if kind in _WHOLE_WORDS:
                start = end - len(phrase) + 1
                if (start > 0 and text[start - 1].isalpha()) or (end + 1 < len(text) and text[end + 1].isalpha()):
                    continue
            found[kind].add(phrase)
    return found


_ODD_WORDS = _native.OddWords(sorted(BAIT_WORDS)) if _native is not None else None


@dataclass(slots=True)
class OddWords:
    money: int = 0  # distinct amounts: $12
    percent: int = 0  # distinct percentages: 50%
    mixed: int = 0  # letters, digits, letters: m0rtgage
    disguised_bait: bool = False  # a bait word behind look-alikes or fillers: v1agra, me.ds, c!alis


def _odd_words(text: str) -> OddWords:
    """``_odd_words_py`` in Rust for ASCII text (most folded text): the Python loop over the words
    was a seventh of the scoring time."""
    if _ODD_WORDS is not None and (counts := _ODD_WORDS.scan(text)) is not None:
        return OddWords(*counts)
    return _odd_words_py(text)


def _odd_words_py(text: str) -> OddWords:
    """One pass over the distinct words that are not plain letters (a regex per rule over the whole
    text cost ~2 us per 100 characters each; plain words are dropped in C by ``filterfalse(isalpha)``)."""
    out = OddWords()
    for word in filterfalse(str.isalpha, set(text.split())):
        word = word.strip(_EDGE_PUNCTUATION)
        if len(word) < 3 or word.isalpha() or word.isdigit():
            continue
        if word[0] == "$":
            out.money += 1
        elif word[-1] == "%":
            out.percent += 1
        else:
            if _MIXED_WORD_RE.fullmatch(word):
                out.mixed += 1
            if len(word) <= 24 and _FILLER_RE.sub("", word.translate(_LOOK_ALIKES)) in BAIT_WORDS:
                out.disguised_bait = True
    return out


def _subject(ex: Extracted, hits: list[str]) -> None:
    subject = ex.raw_subject
    if not subject:
        return
    if sum(c.isalpha() for c in subject) >= 8 and _upper_share(subject) > 0.7:
        hits.append("subject_shouting")
    if subject.count("!") >= 2 or "$" in subject:
        hits.append("subject_bang_dollar")
    if _RANDOM_TAIL_RE.search(ex.subject):
        hits.append("subject_random_tail")
    if ex.subject.startswith(("adv", "[adv]", "adv:")):
        hits.append("subject_adv")


def _urls(ex: Extracted, phrases: list[set[str]], hits: list[str]) -> None:
    hosts = [url_host(u) for u in ex.urls]
    domains = {registrable_domain(h) for h in hosts if h}
    if any(h.replace(".", "").isdigit() for h in hosts):
        hits.append("url_ip_host")
    if domains & SHORTENERS:
        hits.append("url_shortener")
    if len(domains) >= 6:
        hits.append("url_many_domains")
    if ex.urls and len(ex.text) < 100 * len(ex.urls):
        hits.append("url_dense")
    if any("@" in u.split("/", 1)[0] for u in ex.raw_urls_sample):
        hits.append("url_userinfo")
    if any(":" in h for h in hosts):
        hits.append("url_port")
    mismatched, brand_elsewhere = _anchors(ex, domains, phrases)
    if mismatched:
        hits.append("anchor_domain_mismatch")
    if brand_elsewhere:
        hits.append("brand_links_elsewhere")
    if any(_ESCAPED_URL_RE.search(u) for u in ex.raw_urls_sample if "%" in u):
        hits.append("url_escaped")
    if ex.urls and any(h.startswith(("mailto:",)) for h in hosts):
        hits.append("url_mailto")


def _anchors(ex: Extracted, domains: set[str], phrases: list[set[str]]) -> tuple[bool, bool]:
    """(an anchor whose visible text names one domain and links to another, a brand named in the
    text whose links all go elsewhere)."""
    mismatched = False
    for doc in ex.markup:
        low = doc[:60_000].lower()
        for found in _ANCHOR_OPEN_RE.finditer(low):
            end = low.find("</a", found.end(), found.end() + 300)
            if end < 0:
                continue
            shown = _DOMAINISH_RE.search(_INNER_TAG_RE.sub("", low[found.end():end]))
            href = found.group(1)
            if not shown or not href.startswith(("http", "www")):
                continue
            target = registrable_domain(url_host(href.split("://", 1)[-1]))
            if target and registrable_domain(url_host(shown.group(0).split("://", 1)[-1])) != target:
                mismatched = True
                break
    brand_elsewhere = bool(domains) and any(not domains.intersection(_BRANDS[b]) for b in phrases[BRAND])
    return mismatched, brand_elsewhere


def _headers(ex: Extracted, mail_from: str, rcpt_to: Sequence[str], hits: list[str]) -> None:
    h = ex.headers
    names = set(h.names)
    if not h.received:
        hits.append("no_received")
    if h.date:
        sent = parsedate_tz(h.date)
        if sent is None:
            hits.append("date_malformed")
        else:
            if not _DATE_SHAPE_RE.match(h.date.strip()):
                hits.append("date_odd_format")
            _date_skew(sent, h.received, hits)
    else:
        hits.append("date_missing")
    if not h.message_id:
        hits.append("message_id_missing")
    elif not _MSGID_RE.fullmatch(h.message_id.strip()):
        hits.append("message_id_malformed")
    if "x-msmail-priority" in names and "outlook" not in h.x_mailer and "x-mimeole" not in names:
        hits.append("msmail_priority_not_outlook")
    if "outlook" in h.x_mailer and "x-mimeole" not in names and "thread-index" not in names:
        hits.append("outlook_without_mimeole")
    if "x-priority" in names and "x-msmail-priority" in names and not h.x_mailer:
        hits.append("priority_no_mailer")
    if h.priority[:1] == "1" or h.priority.startswith("high"):
        hits.append("priority_high")
    if h.to_count == 0:
        hits.append("to_missing")
    if "undisclosed" in h.to or "recipient list suppressed" in h.to:
        hits.append("to_undisclosed")
    from_dom = registrable_domain(h.from_addr.rpartition("@")[2]) if "@" in h.from_addr else ""
    if from_dom in FREE_MAIL:
        hits.append("from_free_mail")
        if h.reply_to and registrable_domain(h.reply_to.rpartition("@")[2]) != from_dom:
            hits.append("free_mail_reply_elsewhere")
    local = h.from_addr.partition("@")[0]
    if len(local) >= 8 and sum(c.isdigit() for c in local) >= 3:
        hits.append("from_local_digits")
    if "in-reply-to" in names or "references" in names:
        hits.append("reply_headers")
    if "list-id" in names or "list-unsubscribe" in names:
        hits.append("list_headers")
    if any(_received_forged(r) for r in h.received[:1]):
        hits.append("received_helo_ip_mismatch")
    relays = " ".join(h.received[:8])
    if _DYNAMIC_RDNS_RE.search(relays):
        hits.append("received_dynamic_host")
    if _NO_RDNS_RE.search(relays):
        hits.append("received_no_rdns")

    if rcpt_to and h.to and not any(r.lower() in h.to for r in rcpt_to):
        hits.append("rcpt_not_in_to")


def _date_skew(sent: tuple, received: Sequence[str], hits: list[str]) -> None:
    """The Date the sender wrote far from when our nearest relay got the mail (SpamAssassin's
    DATE_IN_PAST / DATE_IN_FUTURE): bulk senders stamp a campaign once and send it for days."""
    if not received or ";" not in received[0]:
        return
    got = parsedate_tz(received[0].rpartition(";")[2].strip())
    if got is None:
        return
    try:
        skew = mktime_tz(sent) - mktime_tz(got)
    except (OverflowError, ValueError):
        return
    if skew > 3 * 3600:
        hits.append("date_in_future")
    elif skew < -48 * 3600:
        hits.append("date_in_past")


def _received_forged(line: str) -> bool:
    """The nearest hop says it was helo'd as one of our recipients' own style hosts, or as a bare IP
    in brackets different from the connecting address: cheap signs of a forged first hop."""
    found = _RECEIVED_FROM_RE.match(line)
    if not found:
        return False
    helo = found.group(1).strip("[]()")
    return helo.replace(".", "").isdigit() and f"[{helo}]" not in line
