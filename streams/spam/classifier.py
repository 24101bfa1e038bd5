"""spam-filter: a token classifier trained from the reported patterns.

Tokens are words of the folded text (3–12 letters; longer ones only by their
first letter and length), subject words, URL hosts and registrable domains,
and, when enabled, header facts (which headers are present, sender and
Reply-To domains, mailer, MIME structure, relays) and header anomalies.

The model is Robinson's per-token probability with Fisher's chi-squared
combining of the 150 most decisive tokens, as in SpamBayes: counts only, so
learning and unlearning are exact and order-free. Every node feeds it the same
patterns from ``spam.patterns`` and so holds the same model; a retracted or
expired pattern is unlearned.
"""

from __future__ import annotations

import math
import re
import struct
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_tz
from functools import lru_cache
from itertools import compress, islice, repeat
from operator import gt, is_, itemgetter

from streams.spam.fingerprint import token_hashes
from streams.spam.normalize import Extracted
from streams.spam.urls import registrable_domain, url_host

from streams.spam.native import NATIVE as _native

_SUBJECT_RE = re.compile(r"[^\W_]+|[!$%*]{2,}")
Clue = tuple[float, float, float, int]  # (strength |p-0.5|, ln p, ln(1-p), token hash)
# the runs of these characters that hold a dot, as r"[a-z0-9.-]*\.[a-z0-9.-]*" finds them; tried only where a
# run starts, without backtracking (that one retried every position of a run without a dot)
_RECEIVED_DOTTED_RE = re.compile(r"(?<![a-z0-9.-])[a-z0-9-]*+\.[a-z0-9.-]*")
MEMO_LIMIT = 1_000_000  # tokens memoised at most
_HALF_ULP = 2.0**-54  # a term below this share of a sum rounds away when added to it
_TINY = 2.0**-60  # 1.0 - x is 1.0 for x below 2**-54; this leaves room for the bound's rounding
_WORD_LENGTHS = frozenset(range(3, 13))  # body words of these lengths are tokens as they are
_DIGITS_RE = re.compile(r"\d")
_PACKED_CLUE = struct.Struct("=dddQ")  # a Clue as the native classifier packs it


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].strip(">").strip() if "@" in addr else ""


def anomalies(ex: Extracted, mail_from: str, rcpt_to: Sequence[str] = ()) -> list[str]:
    """Header and structure oddities, each a token (their weight is learned, not set)."""
    h = ex.headers
    from_dom = registrable_domain(_domain(h.from_addr)) if h.from_addr else ""
    env_dom = registrable_domain(_domain(mail_from or h.return_path)) if (mail_from or h.return_path) else ""
    flags = {
        "no_date": not h.date,
        "bad_date": bool(h.date) and parsedate_tz(h.date) is None,
        "no_message_id": not h.message_id,
        "message_id_no_at": bool(h.message_id) and "@" not in h.message_id,
        "no_from": not h.from_addr,
        "no_to": h.to_count == 0,
        "rcpt_not_in_to": bool(rcpt_to) and not any(r.lower() in h.to for r in rcpt_to),
        "many_to": h.to_count > 10,
        "from_name_has_address": "@" in h.from_name and from_dom not in h.from_name,
        "reply_to_elsewhere": bool(h.reply_to) and registrable_domain(_domain(h.reply_to)) != from_dom,
        "envelope_elsewhere": bool(env_dom) and env_dom != from_dom,
        "html_only": ex.html_only,
        "url_ip_host": any(url_host(u).replace(".", "").isdigit() for u in ex.urls),
        "url_non_ascii_host": any(not url_host(u).isascii() for u in ex.urls),
        "many_urls": len(ex.urls) > 10,
        "mime_defects": ex.defects > 0,
        "subject_empty": not ex.subject,
    }
    return ["anomaly:" + name for name, on in flags.items() if on]


def _received_tokens(received: Sequence[str]) -> list[str]:
    """Relay domains and /16 networks of the last few hops (a site's own relays say "ham")."""
    return list(filter(None, map(_received_token, _RECEIVED_DOTTED_RE.findall("\n".join(received[:6])))))


@lru_cache(maxsize=8192)
def _received_token(word: str) -> str:
    """The token of one dotted word of a Received line ("" for none); memoised: relays repeat."""
    parts = word.strip(".-").split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return f"rcvd-ip:{parts[0]}.{parts[1]}"
    if len(parts) >= 2 and parts[-1].isalpha() and len(parts[-1]) >= 2:
        return "rcvd:" + registrable_domain(".".join(parts))
    return ""


# Header fields that say how a mail was stored or who looked at it on the way, not how it was sent:
# learned as clues they describe a corpus's mailbox software (the SpamAssassin corpus's spam_2 carries
# X-Keywords and Delivery-Date, its ham does not) and never generalise; upstream verdicts can be forged.
STORE_HEADERS = frozenset({
    "x-uidl", "x-uid", "status", "x-status", "x-keywords", "x-mozilla-status", "x-mozilla-status2",
    "x-mozilla-keys", "x-evolution", "x-evolution-source", "x-gmail-labels", "x-gm-thrid", "lines",
    "content-length", "delivery-date", "delivered-to", "return-path", "x-original-to", "envelope-to",
    "x-envelope-to", "x-envelope-from", "x-rcpt-to", "x-apparently-to", "x-spam-status", "x-spam-level",
    "x-spam-flag", "x-spam-checker-version", "x-spam-report", "x-spam-score", "x-spam", "x-virus-scanned",
    "x-virus-status", "x-mailscanner", "x-mailscanner-spamcheck", "x-pyzor", "x-razor", "x-dcc",
    "x-original-date", "old-subject", "x-filtered-by", "x-antivirus", "x-antivirus-status", "x-mime-autoconverted",
})


def header_tokens(ex: Extracted, mail_from: str, rcpt_to: Sequence[str] = ()) -> list[str]:
    h = ex.headers
    out = ["hdr:" + name for name in h.names if name not in STORE_HEADERS]
    out += ["from-dom:" + _domain(h.from_addr), "from-name:" + ("yes" if h.from_name else "no")]
    out += ["from-name:" + w for w in _SUBJECT_RE.findall(h.from_name)[:6]]
    out += ["mailer:" + _DIGITS_RE.sub("0", h.x_mailer)[:30], "msgid-dom:" + _DIGITS_RE.sub("0", _domain(h.message_id))]
    out += ["ct:" + c for c in ex.content_types] + ["cs:" + c for c in ex.charsets]
    out += ["cte:" + c for c in ex.encodings] + [f"rcpts:{min(h.to_count, 20) // 5}"]
    out += _received_tokens(h.received) + anomalies(ex, mail_from, rcpt_to)
    return out


def tokenize(ex: Extracted, subject_words: list[str], body_words: list[str], body_hashes: list[int],
             mail_from: str = "", rcpt_to: Sequence[str] = (), use_headers: bool = True) -> tuple[list[str], list[int]]:
    """The unique tokens of one mail and their hashes (body words as ``fingerprint.words``
    cuts them, with ``body_hashes`` their hashes, so that no word is hashed twice)."""
    return body_tokens(subject_words, body_words, body_hashes, extra_tokens(ex, mail_from, rcpt_to, use_headers))


def extra_tokens(ex: Extracted, mail_from: str = "", rcpt_to: Sequence[str] = (), use_headers: bool = True) -> list[str]:
    """The tokens that are not words of the text: URL hosts and domains, and header tokens if used."""
    out: list[str] = []
    for url in ex.urls:
        host = url_host(url)
        out += ["url:" + host, "url-dom:" + registrable_domain(host)]
    if use_headers:
        out += header_tokens(ex, mail_from, rcpt_to)
    return out


def body_tokens(subject_words: list[str], body_words: list[str], body_hashes: list[int],
                extra: list[str]) -> tuple[list[str], list[int]]:
    """Body words of 3-12 letters, subject words, the long words' ``skip:`` tokens, then ``extra``:
    each token once (by hash), in order of first use, with its hash."""
    # each word once, in order of first use; keyed by its hash (an int: cheaper to key by than the str)
    unique = dict(zip(body_hashes, body_words))
    lengths = list(map(len, unique.values()))
    tokens = dict(compress(unique.items(), map(_WORD_LENGTHS.__contains__, lengths)))  # no bytecode per word
    more = ["s:" + w for w in subject_words]
    more += [f"skip:{w[0]}{len(w) // 10}" for w in compress(unique.values(), map(gt, lengths, repeat(12)))]
    more += extra
    tokens.update(zip(token_hashes(more), more))
    return list(tokens.values()), list(tokens)


@dataclass(frozen=True, slots=True)
class Verdict:
    prob: float
    used: Sequence[Clue] = ()  # (strength, ln p, ln(1-p), token) of each token used
    tokens: Sequence[int] = ()  # the list given to ``classify`` (for ``clue_positions``)
    ordered: bool = True  # ``used`` most decisive first; else in input order (all were used: sorted only when asked)
    places: Sequence[int] | None = None  # each clue's token's place in ``tokens``, when the classifier knew it

    @property
    def best(self) -> list[Clue]:
        """The tokens used, most decisive first, as (strength, ln p, ln(1-p), token hash)."""
        return list(self.used) if self.ordered else sorted(self.used, reverse=True)

    def clues(self, limit: int | None = None) -> list[tuple[float, int]]:
        """(token probability, token hash), most decisive first; with ``limit``, only as many
        as that of those that speak for the verdict (spam when prob >= 0.5, else ham)."""
        return [(math.exp(c[1]), c[3]) for c in self._clues(limit)]

    def clue_positions(self, limit: int | None = None) -> list[tuple[float, int]]:
        """``clues`` with each token's place in the list given to ``classify`` instead of its hash."""
        if self.places is None or not self.ordered:
            return [(math.exp(c[1]), self.tokens.index(c[3])) for c in self._clues(limit)]
        pairs = zip(self.used, self.places)  # the native classifier's (a search of the tokens per clue cost ~10 us)
        if limit is not None:
            spammy = self.prob >= 0.5
            pairs = islice(((c, at) for c, at in pairs if (c[1] > c[2]) == spammy), limit)  # type: ignore[assignment]
        return [(math.exp(c[1]), at) for c, at in pairs]

    def _clues(self, limit: int | None) -> list[Clue]:
        if limit is None:
            return self.best
        # ln p > ln(1-p): p > 0.5; the side is picked first, so only its clues are sorted
        spammy = self.prob >= 0.5
        side = (c for c in self.used if (c[1] > c[2]) == spammy)
        return list(islice(side, limit)) if self.ordered else sorted(side, reverse=True)[:limit]


def chi2q(x2: float, v: int) -> float:
    """P(chi-squared with v (even) degrees of freedom >= x2)."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        if term < total * _HALF_ULP and i > m:  # the terms only shrink from here, none changes the sum
            break
        total += term
    return min(total, 1.0)


def one_minus_chi2q(x2: float, v: int) -> float:
    """``1.0 - chi2q(x2, v)``, without its sum when that is surely below 2**-55 (so 1.0 - it is 1.0):
    the terms grow while i < m, so with m past v/2 the sum is at most v/2 times its last term."""
    m = x2 / 2.0
    k = v // 2
    if m > k and k * math.exp(-m + (k - 1) * math.log(m) - math.lgamma(k)) < _TINY:
        return 1.0
    return 1.0 - chi2q(x2, v)


class TokenClassifier:
    """Token counts per class; probabilities are memoised until the counts change."""

    def __init__(self, strength: float = 0.45, unknown_prob: float = 0.5,
                 max_tokens: int = 150, min_strength: float = 0.1) -> None:
        self.spam: dict[int, int] = {}
        self.ham: dict[int, int] = {}
        self.nspam = self.nham = 0
        self.strength, self.unknown_prob = strength, unknown_prob
        self.max_tokens, self.min_strength = max_tokens, min_strength
        # the memo: token -> its clue, or () when it says too little
        self._memo: dict[int, Clue | tuple[()]] = {}

    def _forget(self) -> None:
        """Empty the memo (the counts changed)."""
        self._memo.clear()

    def learn(self, tokens: Iterable[int], is_spam: bool, weight: int = 1) -> None:
        """Count one mail's tokens for its class; weight -1 unlearns it."""
        table = self.spam if is_spam else self.ham
        for tok in tokens:
            count = table.get(tok, 0) + weight
            if count > 0:
                table[tok] = count
            else:
                table.pop(tok, None)
        if is_spam:
            self.nspam = max(0, self.nspam + weight)
        else:
            self.nham = max(0, self.nham + weight)
        self._forget()

    def _token(self, tok: int) -> Clue | None:
        """(strength, ln p, ln(1-p), token) of a token, None when it says too little."""
        s, h = self.spam.get(tok, 0), self.ham.get(tok, 0)
        if s + h == 0:
            return None
        sr = s / max(self.nspam, 1)
        hr = h / max(self.nham, 1)
        n = s + h
        p = (self.strength * self.unknown_prob + n * sr / (sr + hr)) / (self.strength + n)
        dist = abs(p - 0.5)
        return None if dist < self.min_strength else (dist, math.log(p), math.log1p(-p), tok)

    def classify(self, tokens: list[int]) -> Verdict:
        memo = self._memo
        if len(memo) > MEMO_LIMIT:  # unknown tokens are memoised too: bound it
            memo.clear()
        found = list(map(memo.get, tokens))  # None: not memoised yet
        if None in found:
            for at in compress(range(len(found)), map(is_, found, repeat(None))):
                tok = tokens[at]
                found[at] = memo[tok] = self._token(tok) or ()
        used: list[Clue] = list(filter(None, found))  # type: ignore[arg-type]  # () left out
        if not used:
            return Verdict(0.5)
        ordered = len(used) > self.max_tokens
        if ordered:  # the most decisive max_tokens, by (strength, ln p, ln(1-p), token) as tuples compare
            used = sorted(used, reverse=True)[: self.max_tokens]  # in C: beats heapq.nlargest here
        # else all are used, and fsum (exactly rounded) does not depend on their order
        n = len(used)
        hamminess = one_minus_chi2q(-2.0 * math.fsum(map(itemgetter(1), used)), 2 * n)
        spamminess = one_minus_chi2q(-2.0 * math.fsum(map(itemgetter(2), used)), 2 * n)
        return Verdict((spamminess - hamminess + 1.0) / 2.0, used, tokens, ordered)


class PackedClues(Sequence[Clue]):
    """The native classifier's clues, most decisive first, packed ("dddQ" records) and unpacked
    only when read: scoring reads five of up to 150."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data) // _PACKED_CLUE.size

    def __iter__(self) -> Iterator[Clue]:
        return _PACKED_CLUE.iter_unpack(self._data)  # type: ignore[return-value]  # tuples of dddQ

    def __getitem__(self, index: int | slice) -> Clue | list[Clue]:  # type: ignore[override]
        if isinstance(index, slice):
            return list(self)[index]
        at = index + len(self) if index < 0 else index
        if not 0 <= at < len(self):
            raise IndexError("clue index out of range")
        return _PACKED_CLUE.unpack_from(self._data, at * _PACKED_CLUE.size)  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class NativeTokenClassifier:
    """``TokenClassifier`` with counts, memo and ``classify`` in Rust (``_native.TokenCounts``):
    the same verdicts and clues (tests/unit/spam/test_spam_native.py), a few times faster."""

    def __init__(self, strength: float = 0.45, unknown_prob: float = 0.5,
                 max_tokens: int = 150, min_strength: float = 0.1) -> None:
        if _native is None:
            raise RuntimeError("streams.spam._native is not built: use TokenClassifier")
        self._counts = _native.TokenCounts(strength, unknown_prob, max_tokens, min_strength)

    @property
    def nspam(self) -> int:
        return self._counts.nspam

    @property
    def nham(self) -> int:
        return self._counts.nham

    def learn(self, tokens: Iterable[int], is_spam: bool, weight: int = 1) -> None:
        """Count one mail's tokens for its class; weight -1 unlearns it."""
        self._counts.learn(_hash_array(tokens), is_spam, weight)

    def classify(self, tokens: Sequence[int]) -> Verdict:
        prob, packed, places = self._counts.classify(_hash_array(tokens))
        return Verdict(prob, PackedClues(packed), tokens, places=array("I", places)) if packed else Verdict(0.5)


def _hash_array(tokens: Iterable[int]) -> array:
    """Token hashes as an ``array("Q")`` (what the native side reads), without a copy if they are one."""
    return tokens if isinstance(tokens, array) and tokens.typecode == "Q" else array("Q", tokens)


def new_classifier(strength: float = 0.45, unknown_prob: float = 0.5, max_tokens: int = 150,
                   min_strength: float = 0.1) -> TokenClassifier | NativeTokenClassifier:
    """The native classifier when the extension is built, else the Python one."""
    kind = TokenClassifier if _native is None else NativeTokenClassifier
    return kind(strength, unknown_prob, max_tokens, min_strength)
