"""Ingress: protocol in, one event out (smtp-server, pop3(s)-proxy, maildepot-connector)."""
