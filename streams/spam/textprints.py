"""spam-filter: a mail's classifier tokens and text signature, in one call per mail.

Words, their hashes, the tokens of ``classifier.body_tokens``, the shingles and
the MinHash are most of the work of scoring after MIME, and all per word. The
Rust extension ``streams.spam._native`` (crate in ``streams/spam/rust``, built
by ``pip install`` through setuptools-rust) does them in one pass over the text
and hands back only what scoring reads: the token hashes as one ``array("Q")``,
the signature, and the tokens as a sequence whose strings are made when read
(scoring reads five). One call per mail, not per word: crossing into Rust per
word would cost what it saves. ``text_prints_py`` is the reference and the
fallback where the extension is not built; the two give the same values
(``tests/unit/spam/test_spam_native.py``, on the corpus).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from streams.spam.classifier import body_tokens
from streams.spam.fingerprint import Signature, shingles, signature, token_hashes, words
from streams.spam.urls import url_skeleton

from streams.spam.native import NATIVE as _native


@dataclass(frozen=True, slots=True)
class TextPrints:
    tokens: Sequence[str]  # the classifier tokens of the mail, each once
    hashes: array  # typecode "Q": their hashes, in the same order
    signature: Signature | None  # MinHash of the text and URL shingles; None for too short a text


def text_prints(subject: str, text: str, extra: list[str], urls: Sequence[str], min_shingles: int) -> TextPrints:
    """Tokens (body and subject words, then ``extra``), their hashes and the text signature."""
    if _native is None:
        return text_prints_py(subject, text, extra, urls, min_shingles)
    skeletons = [url_skeleton(u) for u in urls]
    try:
        tokens, packed, sig = _native.text_prints(subject, text, extra, skeletons, min_shingles)
    except UnicodeEncodeError:  # a lone surrogate (Rust strings are UTF-8): Python hashes it "surrogatepass"
        return text_prints_py(subject, text, extra, urls, min_shingles)
    hashes = array("Q")
    hashes.frombytes(packed)
    return TextPrints(tokens, hashes, None if sig is None else array("I", sig))


def text_prints_py(subject: str, text: str, extra: list[str], urls: Sequence[str], min_shingles: int) -> TextPrints:
    """``text_prints`` in Python: the reference."""
    subject_words, body_words = words(subject), words(text)
    body_hashes = token_hashes(body_words)
    tokens, hashes = body_tokens(subject_words, body_words, body_hashes, extra)
    sig = signature(shingles(token_hashes(subject_words), body_hashes, urls), min_shingles)
    return TextPrints(tokens, array("Q", hashes), sig)
