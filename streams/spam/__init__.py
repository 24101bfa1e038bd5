"""spam-filter: fuzzy, pattern-based spam scoring that learns from spam/ham reports.

The pure core lives here (no Kafka): ``mime`` splits a raw message into its
parts; ``normalize`` turns it into folded text, URLs (in ``urls``' forms) and attachments;
``fingerprint`` makes near-duplicate-proof signatures of it; ``patterns`` keeps
the reported patterns (the state of the compacted ``spam.patterns`` topic),
found by ``lsh``, the banded index of their signatures;
``classifier`` is a token classifier trained from the same patterns;
``scoring`` joins them into ``SpamFilter``, the one object the Faust agent calls.

The per-word and per-character work (words, token hashes, shingles, MinHash,
the classifier's lookups, the LSH buckets, markup stripping, the URL split and
header splitting) is also written in Rust: ``_native``, crate in ``rust/``,
built by ``pip install`` (setuptools-rust). Each module uses it when it is
built and its own Python code otherwise, with the same results
(tests/unit/spam/test_spam_native.py); ``textprints`` is the one-call-a-mail
entry to the text part.
"""
