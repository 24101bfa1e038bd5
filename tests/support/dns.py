"""A real DNS server on loopback that the test controls (dnspython, UDP and TCP).

It answers authoritatively for every name: what the test added is answered,
any other name gets NXDOMAIN (a DNSBL lookup of an unlisted address, a domain
that does not exist). Records can be changed while it runs; every answer has
TTL 0 by default, so resolvers do not cache stale data between tests.

    with DnsServer() as dns:
        dns.add("example.test", "MX", "10 mx.example.test.")
        dns.add("mx.example.test", "A", "127.0.0.1")
        dns.add("example.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")   # quoted/split for you
        dns.add_ptr("127.0.0.1", "mx.example.test")                    # 1.0.0.127.in-addr.arpa PTR
        dns.fail("broken.test")                  # SERVFAIL for that name
        dns.fail("slow.test", rcode=None)        # no answer at all: the client times out
        resolver = dns.resolver()                # dns.asyncresolver.Resolver, configure=False
        settings = dns.settings()                # core.settings.DnsSettings pointing here
        env = dns.env("MAILGATE_SMTP_CLIENT__DNS__")  # the same, for a subprocess

As a pytest fixture (one server per session; use names unique to each test, or
call ``reset()``):

    from tests.support.dns import dns_server   # in a conftest.py: registers the fixture

``queries`` lists every (name, type) asked, lower-case and without the final dot.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from core.settings import DnsSettings

_Key = tuple[str, str]  # (name without final dot, lower-case; type mnemonic)


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


def _txt(value: str) -> str:
    """A TXT value as dnspython's zone syntax: quoted, split into 255-byte strings."""
    if value.startswith('"'):
        return value
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


class DnsServer:
    """Authoritative DNS on ``host`` (127.0.0.1), UDP and TCP on one free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ttl: int = 0) -> None:
        self.host = host
        self.ttl = ttl
        self.queries: list[_Key] = []
        self._records: dict[_Key, list[str]] = {}
        self._failures: dict[str, dns.rcode.Rcode | None] = {}
        self._lock = threading.Lock()
        self._udp, self._tcp = self._bind(port)
        self.port: int = self._udp.server_address[1]
        self._threads: list[threading.Thread] = []

    # -- what the test controls ------------------------------------------------

    def add(self, name: str, rtype: str, *values: str) -> None:
        """Add records (zone-file syntax for the data: "10 mx.example.test.", "127.0.0.2")."""
        rtype = rtype.upper()
        texts = [_txt(v) if rtype == "TXT" else v for v in values]
        dns.rrset.from_text(_norm(name) + ".", self.ttl, "IN", rtype, *texts)  # fail early on bad data
        with self._lock:
            self._records.setdefault((_norm(name), rtype), []).extend(texts)

    def add_ptr(self, address: str, name: str) -> None:
        """The reverse record of an IPv4/IPv6 address."""
        self.add(dns.reversename.from_address(address).to_text(), "PTR", _norm(name) + ".")

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._records if k[0] == _norm(name) and rtype in (None, k[1].upper())]:
                del self._records[key]

    def fail(self, name: str, rcode: str | None = "SERVFAIL") -> None:
        """Answer queries for ``name`` with this rcode (SERVFAIL, REFUSED, ...), or not at all (None)."""
        with self._lock:
            self._failures[_norm(name)] = None if rcode is None else dns.rcode.from_text(rcode)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._failures.clear()
            self.queries.clear()

    # -- how mailgate is pointed here ------------------------------------------

    @property
    def nameservers(self) -> list[str]:
        return [self.host]

    def settings(self, timeout_s: float = 2.0) -> DnsSettings:
        return DnsSettings(nameservers=self.nameservers, port=self.port, timeout_s=timeout_s)

    def env(self, prefix: str) -> dict[str, str]:
        """Environment for a subprocess, e.g. prefix="MAILGATE_SMTP_CLIENT__DNS__"."""
        return {f"{prefix}NAMESERVERS": ",".join(self.nameservers), f"{prefix}PORT": str(self.port)}

    def resolver(self, timeout_s: float = 2.0) -> dns.asyncresolver.Resolver:
        return self.settings(timeout_s).resolver()

    # -- answering ---------------------------------------------------------------

    def answer(self, wire: bytes, max_size: int) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        name, rtype = _norm(q.name.to_text()), dns.rdatatype.to_text(q.rdtype)
        with self._lock:
            self.queries.append((name, rtype))
            if name in self._failures:
                rcode = self._failures[name]
                if rcode is None:
                    return None
                response.set_rcode(rcode)
                return response.to_wire()
            texts = list(self._records.get((name, rtype), ()))
            cname = list(self._records.get((name, "CNAME"), ()))
            exists = any(k[0] == name for k in self._records)
        if not texts and cname and rtype != "CNAME":
            rtype, texts = "CNAME", cname
        if texts:
            response.answer.append(dns.rrset.from_text(q.name, self.ttl, "IN", rtype, *texts))
        elif not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    # -- lifecycle ---------------------------------------------------------------

    def _bind(self, port: int) -> tuple[socketserver.UDPServer, socketserver.TCPServer]:
        server = self
        socketserver.TCPServer.allow_reuse_address = True

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                query_size = 512
                try:
                    q = dns.message.from_wire(data)
                    query_size = max(512, q.payload if q.edns >= 0 else 512)
                except dns.exception.DNSException:
                    pass
                reply = server.answer(data, query_size)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                try:
                    while True:
                        head = sock.recv(2, socket.MSG_WAITALL)
                        if len(head) < 2:
                            return
                        data = sock.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                        reply = server.answer(data, 65535)
                        if reply is None:
                            return
                        sock.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return

        for _ in range(20):
            udp = socketserver.ThreadingUDPServer((self.host, port), Udp)
            udp.daemon_threads = True
            try:
                tcp = socketserver.ThreadingTCPServer((self.host, udp.server_address[1]), Tcp)
            except OSError:
                udp.server_close()
                if port:
                    raise
                continue
            tcp.daemon_threads = True
            return udp, tcp
        raise OSError(f"no port on {self.host} free for both UDP and TCP")

    def start(self) -> DnsServer:
        for srv in (self._udp, self._tcp):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 name=f"test-dns-{type(srv).__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    """One loopback DNS server for the session (import this name into a conftest.py)."""
    with DnsServer() as server:
        yield server
