"""The loopback DNS server of tests/support/dns.py, asked by a real resolver (UDP and TCP)."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver
import pytest

from tests.support.dns import DnsServer


async def test_answers_what_the_test_added_and_nxdomain_otherwise() -> None:
    with DnsServer() as server:
        server.add("example.test", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
        server.add("mx1.example.test", "A", "127.0.0.1")
        server.add("mx1.example.test", "AAAA", "::1")
        server.add("example.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
        server.add("long.example.test", "TXT", "x" * 600)
        server.add_ptr("127.0.0.1", "mx1.example.test")
        res = server.resolver()

        mx = await res.resolve("example.test", "MX")
        assert sorted((r.preference, r.exchange.to_text()) for r in mx) == [(10, "mx1.example.test."),
                                                                            (20, "mx2.example.test.")]
        assert [r.address for r in await res.resolve("mx1.example.test", "A")] == ["127.0.0.1"]
        assert [r.address for r in await res.resolve("mx1.example.test", "AAAA")] == ["::1"]
        txt = await res.resolve("example.test", "TXT")
        assert [b"".join(r.strings) for r in txt] == [b"v=spf1 ip4:127.0.0.1 -all"]
        long_txt = await res.resolve("long.example.test", "TXT", tcp=True)
        assert [b"".join(r.strings) for r in long_txt] == [b"x" * 600]
        ptr = await res.resolve_address("127.0.0.1")
        assert [r.target.to_text() for r in ptr] == ["mx1.example.test."]
        with pytest.raises(dns.resolver.NXDOMAIN):
            await res.resolve("2.0.0.127.zen.dnsbl.test", "A")
        with pytest.raises(dns.resolver.NoAnswer):  # the name exists, not this type
            await res.resolve("example.test", "A")
        assert ("example.test", "MX") in server.queries


async def test_failures_and_changes_while_running() -> None:
    with DnsServer() as server:
        res = server.resolver(timeout_s=0.5)
        server.fail("broken.test")
        with pytest.raises(dns.resolver.NoNameservers):  # SERVFAIL from the only server
            await res.resolve("broken.test", "MX")
        server.fail("slow.test", rcode=None)
        with pytest.raises(dns.exception.Timeout):
            await res.resolve("slow.test", "A")
        server.add("new.test", "A", "127.0.0.9")
        assert [r.address for r in await res.resolve("new.test", "A")] == ["127.0.0.9"]
        server.remove("new.test")
        with pytest.raises(dns.resolver.NXDOMAIN):
            await res.resolve("new.test", "A")


def test_settings_and_env_point_at_the_server() -> None:
    with DnsServer() as server:
        settings = server.settings()
        assert settings.nameservers == ["127.0.0.1"] and settings.port == server.port
        assert server.env("MAILGATE_SMTP_CLIENT__DNS__") == {
            "MAILGATE_SMTP_CLIENT__DNS__NAMESERVERS": "127.0.0.1",
            "MAILGATE_SMTP_CLIENT__DNS__PORT": str(server.port),
        }
        res = settings.resolver()
        assert isinstance(res, dns.asyncresolver.Resolver)
        assert res.nameservers == ["127.0.0.1"] and res.port == server.port
