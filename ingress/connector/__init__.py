"""maildepot-connector: mail for the archive from an SMTP journal endpoint and from files."""
