"""pop3-proxy / pop3s-proxy: collect mail from POP3 accounts into mail.in.

- ``settings``: the accounts (``Pop3Settings``, ``Pop3Account``);
- ``client``: the POP3 session (asyncio; STLS, UIDL, RETR, DELE, QUIT, PIPELINING);
- ``uidls``: the UIDL ledger kept in the compacted topic pop3.uidls (store injected);
- ``events``: MailReceived from a collected mail;
- ``collector``: one account's cycle, schedule, backoff and status;
- ``service``: ``serve()`` / ``Pop3Service``, all accounts of one service (wiring injected);
- ``kafka``: the Kafka edge: ``KafkaUidlStore`` (pop3.uidls); MailReceived goes to mail.in through ``core.publish``;
- ``status``: each account's status to control.status (``mailgate pop3 status`` reads it);
- ``main``: ``run_service()``, the process (`mailgate service pop3-proxy|pop3s-proxy`).
"""
