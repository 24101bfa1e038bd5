"""spam-filter: fuzzy, pattern-based spam scoring that learns from spam/ham reports.

The pure core lives here (no Kafka): ``mime`` splits a raw message into its
parts; ``normalize`` turns it into folded text, URLs and attachments;
``fingerprint`` makes near-duplicate-proof signatures of it; ``patterns`` keeps
the reported patterns (the state of the compacted ``spam.patterns`` topic),
found by ``lsh``, the banded index of their signatures;
``classifier`` is a token classifier trained from the same patterns;
``scoring`` joins them into ``SpamFilter``, the one object the Faust agent calls.
"""
