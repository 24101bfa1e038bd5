"""message-archive: decides by archive rules which mail goes to the archive spool."""
