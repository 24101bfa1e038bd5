"""smtp-server: the ESMTP listener that accepts mail into mail.in — its own protocol
engine (``engine.py``) on aiosmtpd's session and envelope objects, the phase-1 filters
(``filters/``), and the entry point (``service.py``)."""
