"""smtp-server: the ESMTP listener that accepts mail into mail.in."""
