"""pop3-proxy / pop3s-proxy: collect mail from POP3 accounts into mail.in.

- ``settings``: the accounts (``Pop3Settings``, ``Pop3Account``);
- ``client``: the POP3 session (asyncio; STLS, UIDL, RETR, DELE, QUIT, PIPELINING);
- ``uidls``: the UIDL ledger kept in the compacted topic pop3.uidls (store injected);
- ``events``: MailReceived from a collected mail;
- ``collector``: one account's cycle, schedule, backoff and status;
- ``service``: ``serve()`` / ``Pop3Service``, the entry of both services.
"""
