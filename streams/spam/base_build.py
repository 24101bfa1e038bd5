"""spam-filter: build the base model from labelled corpora.

    python -m streams.spam.base_build --corpus ../shared/corpora/spamassassin \\
        [--ham easy_ham,easy_ham_2,hard_ham,hard_ham_2] [--spam spam,spam_2] [--out streams/spam/base_model.bin]

Steps, each deterministic so that the same corpus gives the same file:
1. every mail once (exact duplicates of a body within a class are counted once);
2. each mail's classifier tokens and rule hits, as scoring sees them;
3. the classifier's probability of each mail *out of fold* (five folds, by a hash
   of the mail): what it says of mail it did not learn from;
4. the rule weights fitted to those probabilities and the hits (``combine.fit``);
5. the token counts of all the mails, tokens seen in fewer than ``--min-count``
   mails left out (they are mostly one-off words and cost most of the file).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

from streams.spam import combine
from streams.spam.base import BUILTIN, BaseModel
from streams.spam.classifier import new_classifier
from streams.spam.scoring import SpamFilter, clear_caches
from streams.spam.settings import SpamSettings

HAM_FOLDERS = ("easy_ham", "easy_ham_2", "hard_ham", "hard_ham_2")
SPAM_FOLDERS = ("spam", "spam_2")
FOLDS = 5


@dataclass(frozen=True, slots=True)
class Sample:
    raw: bytes
    spam: bool


@dataclass(frozen=True, slots=True)
class Seen:
    """What scoring sees of one training mail."""

    hashes: array
    hits: list[str]
    spam: bool
    fold: int


def envelope(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """The envelope a stored mail kept: Return-Path and Delivered-To (what a corpus has of it)."""
    head = raw.partition(b"\n\n")[0].decode("latin-1")
    sender = re.search(r"^return-path:\s*<?([^>\s]*)", head, re.IGNORECASE | re.MULTILINE)
    rcpt = re.search(r"^delivered-to:\s*(\S+)", head, re.IGNORECASE | re.MULTILINE)
    return (sender.group(1) if sender else ""), ((rcpt.group(1),) if rcpt else ())


def read_folders(corpus: Path, ham: Sequence[str], spam: Sequence[str]) -> list[Sample]:
    samples = []
    for folder, is_spam in [(f, False) for f in ham] + [(f, True) for f in spam]:
        path = corpus / folder
        if not path.is_dir():
            raise SystemExit(f"base_build: {path} is not a folder of mails (see --corpus, --ham, --spam)")
        for file in sorted(path.iterdir()):
            if file.is_file() and not file.name.startswith("cmds"):
                samples.append(Sample(file.read_bytes(), is_spam))
    return samples


def unique(samples: Sequence[Sample]) -> list[Sample]:
    """Each body once per class: a corpus's copies of one mail would count it as many times."""
    seen: set[tuple[bool, bytes]] = set()
    out = []
    for s in samples:
        key = (s.spam, blake2b(b" ".join(s.raw.partition(b"\n\n")[2].split()), digest_size=16).digest())
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def look(samples: Sequence[Sample], settings: SpamSettings,
         progress: Callable[[str], None] = lambda _m: None) -> list[Seen]:
    clear_caches()
    scorer = SpamFilter(settings, node="base-build")
    seen = []
    for n, s in enumerate(samples):
        sender, rcpts = envelope(s.raw)
        f = scorer.features(s.raw, sender, rcpts)
        fold = blake2b(s.raw, digest_size=2).digest()[0] % FOLDS
        seen.append(Seen(array("Q", f.hashes), f.hits, s.spam, fold))
        if n % 1000 == 999:
            progress(f"  read {n + 1} of {len(samples)} mails")
    return seen


def out_of_fold(seen: Sequence[Seen], settings: SpamSettings) -> list[float]:
    probs = [0.5] * len(seen)
    for fold in range(FOLDS):
        clf = _classifier(settings)
        for s in seen:
            if s.fold != fold:
                clf.learn(s.hashes, s.spam)
        for i, s in enumerate(seen):
            if s.fold == fold:
                probs[i] = clf.classify(s.hashes).prob
    return probs


def _classifier(settings: SpamSettings):  # type: ignore[no-untyped-def]
    return new_classifier(settings.unknown_word_strength, settings.unknown_word_prob,
                          settings.classifier_max_tokens, settings.classifier_min_strength)


def build(samples: Sequence[Sample], min_count: int = 2, meta: dict[str, object] | None = None,
          progress: Callable[[str], None] = lambda _m: None, settings: SpamSettings | None = None) -> BaseModel:
    """The base model of ``samples``; ``settings`` (their base_model aside) as scoring will use them."""
    settings = (settings or SpamSettings()).model_copy(update={"base_model": "none"})
    samples = unique(samples)
    progress(f"{len(samples)} distinct mails ({sum(s.spam for s in samples)} spam)")
    seen = look(samples, settings, progress)
    progress("classifier out of fold, then the rule weights")
    weights = combine.fit(out_of_fold(seen, settings), [s.hits for s in seen], [s.spam for s in seen])
    spam_counts: Counter[int] = Counter()
    ham_counts: Counter[int] = Counter()
    for s in seen:
        (spam_counts if s.spam else ham_counts).update(s.hashes)
    kept = sorted(h for h in spam_counts.keys() | ham_counts.keys() if spam_counts[h] + ham_counts[h] >= min_count)
    nspam = sum(s.spam for s in seen)
    info = {"mails": len(seen), "spam": nspam, "min_count": min_count, **(meta or {})}
    return BaseModel(array("Q", kept), array("I", (spam_counts[h] for h in kept)), array("I", (ham_counts[h] for h in kept)),
                     nspam, len(seen) - nspam, weights, info)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a folder with one sub-folder of mails per label set")
    parser.add_argument("--ham", default=",".join(HAM_FOLDERS), help="sub-folders of ham (comma-separated)")
    parser.add_argument("--spam", default=",".join(SPAM_FOLDERS), help="sub-folders of spam (comma-separated)")
    parser.add_argument("--min-count", type=int, default=2, help="mails a token needs to be kept")
    parser.add_argument("--out", type=Path, default=BUILTIN)
    args = parser.parse_args(argv)
    ham, spam = args.ham.split(","), args.spam.split(",")
    began = time.monotonic()
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    model = build(read_folders(args.corpus, ham, spam), args.min_count,
                  {"corpus": args.corpus.name, "ham": ham, "spam": spam}, say)
    data = model.to_bytes()
    args.out.write_bytes(data)
    say(f"wrote {args.out}: {len(model.hashes)} tokens, {len(data) / 1024:.0f} KiB, "
        f"{model.nspam} spam and {model.nham} ham mails, {len(model.weights.rules)} rule weights, "
        f"{time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
