"""maildepot-archiver: the archive store (content-addressed, compressed, indexed, tamper-evident)."""
