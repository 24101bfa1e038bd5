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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_tz
from functools import lru_cache
from itertools import compress, repeat
from operator import gt, is_, neg

import numpy as np

from streams.spam.fingerprint import token_hashes
from streams.spam.normalize import Extracted, registrable_domain, url_host

_SUBJECT_RE = re.compile(r"[^\W_]+|[!$%*]{2,}")
Clue = tuple[float, float, float, int]  # (strength |p-0.5|, ln p, ln(1-p), token hash)
# the runs of these characters that hold a dot, as r"[a-z0-9.-]*\.[a-z0-9.-]*" finds them; tried only where a
# run starts, without backtracking (that one retried every position of a run without a dot)
_RECEIVED_DOTTED_RE = re.compile(r"(?<![a-z0-9.-])[a-z0-9-]*+\.[a-z0-9.-]*")
MEMO_LIMIT = 1_000_000  # tokens memoised at most
_FEW_TOKENS = 32  # fewer new tokens than this: memoised one by one
_HALF_ULP = 2.0**-54  # a term below this share of a sum rounds away when added to it
_WORD_LENGTHS = frozenset(range(3, 13))  # body words of these lengths are tokens as they are
_DIGITS_RE = re.compile(r"\d")


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


def header_tokens(ex: Extracted, mail_from: str, rcpt_to: Sequence[str] = ()) -> list[str]:
    h = ex.headers
    out = ["hdr:" + name for name in h.names]
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
    # each word once, in order of first use; keyed by the word, whose str hash is cached (a word has one hash)
    unique = dict(zip(body_words, body_hashes))
    lengths = list(map(len, unique))
    tokens = dict(compress(zip(unique.values(), unique), map(_WORD_LENGTHS.__contains__, lengths)))  # no bytecode per word
    extra = ["s:" + w for w in subject_words]
    extra += [f"skip:{w[0]}{len(w) // 10}" for w in compress(unique, map(gt, lengths, repeat(12)))]
    for url in ex.urls:
        host = url_host(url)
        extra += ["url:" + host, "url-dom:" + registrable_domain(host)]
    if use_headers:
        extra += header_tokens(ex, mail_from, rcpt_to)
    tokens.update(zip(token_hashes(extra), extra))
    return list(tokens.values()), list(tokens)


@dataclass(frozen=True, slots=True)
class Verdict:
    prob: float
    table: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))  # strength, ln p, ln(1-p) of each token used
    tokens: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))  # ... and its hash
    positions: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))  # ... and its place in the input
    ordered: bool = True  # rows most decisive first; else in input order (all were used: sorted only when asked)

    @property
    def best(self) -> list[Clue]:
        """The tokens used, most decisive first, as (strength, ln p, ln(1-p), token hash)."""
        rows = self._sorted(np.arange(len(self.tokens)))
        return [(*row, tok) for row, tok in zip(self.table[rows].tolist(), self.tokens[rows].tolist())]

    def clues(self, limit: int | None = None) -> list[tuple[float, int]]:
        """(token probability, token hash), most decisive first; with ``limit``, only as many
        as that of those that speak for the verdict (spam when prob >= 0.5, else ham)."""
        rows = self._clue_rows(limit)
        return list(zip(map(math.exp, self.table[rows, 1].tolist()), self.tokens[rows].tolist()))

    def clue_positions(self, limit: int | None = None) -> list[tuple[float, int]]:
        """``clues`` with each token's place in the list given to ``classify`` instead of its hash."""
        rows = self._clue_rows(limit)
        return list(zip(map(math.exp, self.table[rows, 1].tolist()), self.positions[rows].tolist()))

    def _clue_rows(self, limit: int | None) -> np.ndarray:
        if limit is None:
            return self._sorted(np.arange(len(self.tokens)))
        # ln p > ln(1-p): p > 0.5; the side is picked first, so only its rows are sorted
        side = np.flatnonzero((self.table[:, 1] > self.table[:, 2]) == (self.prob >= 0.5))
        return self._sorted(side)[:limit]

    def _sorted(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` most decisive first, by (strength, ln p, ln(1-p), token) as tuples compare."""
        if self.ordered:
            return rows
        t = self.table[rows]
        return rows[np.lexsort((self.tokens[rows], t[:, 2], t[:, 1], t[:, 0]))[::-1]]


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


class TokenClassifier:
    """Token counts per class; probabilities are memoised until the counts change."""

    def __init__(self, strength: float = 0.45, unknown_prob: float = 0.5,
                 max_tokens: int = 150, min_strength: float = 0.1) -> None:
        self.spam: dict[int, int] = {}
        self.ham: dict[int, int] = {}
        self.nspam = self.nham = 0
        self.strength, self.unknown_prob = strength, unknown_prob
        self.max_tokens, self.min_strength = max_tokens, min_strength
        # the memo: token -> its row in the clue arrays, -1 when it says too little
        self._rows: dict[int, int] = {}
        self._table = np.empty((1024, 3))  # strength, ln p, ln(1-p)
        self._tokens = np.empty(1024, np.uint64)
        self._used = 0  # rows

    def _forget(self) -> None:
        """Empty the memo (the counts changed)."""
        self._rows.clear()
        self._used = 0

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

    def _memoise(self, tokens: list[int]) -> None:
        """``_token`` of each token into the memo; many at once as arrays (the same IEEE
        operations, so the same numbers), a few one by one (numpy's calls cost more then)."""
        if len(tokens) < _FEW_TOKENS:
            clues = [c for c in map(self._token, tokens) if c is not None]
            kept = [c[3] for c in clues]
            table = np.array([c[:3] for c in clues]).reshape(-1, 3)
        else:
            spam = np.fromiter(map(self.spam.get, tokens, repeat(0)), np.float64, len(tokens))
            ham = np.fromiter(map(self.ham.get, tokens, repeat(0)), np.float64, len(tokens))
            n = spam + ham
            sr, hr = spam / max(self.nspam, 1), ham / max(self.nham, 1)
            with np.errstate(divide="ignore", invalid="ignore"):  # tokens never counted: 0/0, left out below
                p = (self.strength * self.unknown_prob + n * sr / (sr + hr)) / (self.strength + n)
            dist = np.abs(p - 0.5)
            keep = np.flatnonzero((n > 0) & (dist >= self.min_strength))
            kept = list(map(tokens.__getitem__, keep.tolist()))
            p = p[keep].tolist()
            table = np.array([dist[keep].tolist(), list(map(math.log, p)), list(map(math.log1p, map(neg, p)))]).T
        self._append(tokens, kept, table)

    def _append(self, tokens: list[int], kept: list[int], table: np.ndarray) -> None:
        """Memoise ``tokens``: ``kept`` (those that say enough) with their rows of ``table``, the rest as -1."""
        first = self._used
        self._used += len(kept)
        while self._used > len(self._tokens):
            self._table = np.concatenate((self._table, np.empty_like(self._table)))
            self._tokens = np.concatenate((self._tokens, np.empty_like(self._tokens)))
        self._table[first : first + len(kept)] = table
        self._tokens[first : first + len(kept)] = kept
        self._rows.update(zip(tokens, repeat(-1)))
        self._rows.update(zip(kept, range(first, first + len(kept))))

    def classify(self, tokens: list[int]) -> Verdict:
        if len(self._rows) > MEMO_LIMIT:  # unknown tokens are memoised too: bound it
            self._forget()
        rows = list(map(self._rows.get, tokens))  # None: not memoised yet
        if None in rows:
            self._memoise(list(compress(tokens, map(is_, rows, repeat(None)))))
            rows = list(map(self._rows.get, tokens))
        index = np.array(rows, dtype=np.intp)
        positions = np.flatnonzero(index >= 0)
        if not len(positions):
            return Verdict(0.5)
        index = index[positions]
        table, toks = self._table[index], self._tokens[index]
        ordered = len(positions) > self.max_tokens
        if ordered:  # the most decisive max_tokens, by (strength, ln p, ln(1-p), token) as tuples compare
            order = np.lexsort((toks, table[:, 2], table[:, 1], table[:, 0]))[::-1][: self.max_tokens]
            table, toks, positions = table[order], toks[order], positions[order]
        # else all are used, and fsum (exactly rounded) does not depend on their order
        n = len(toks)
        hamminess = 1.0 - chi2q(-2.0 * math.fsum(table[:, 1].tolist()), 2 * n)
        spamminess = 1.0 - chi2q(-2.0 * math.fsum(table[:, 2].tolist()), 2 * n)
        return Verdict((spamminess - hamminess + 1.0) / 2.0, table, toks, positions, ordered)
