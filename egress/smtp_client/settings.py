"""smtp-client: its settings — routing, TLS, connection limits, retries and bounces
(``[smtp_client]`` in mailgate.toml, ``MAILGATE_SMTP_CLIENT__*``). ``Settings`` is what
the service is given: the gateway's identity and this section."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from core.settings import DnsSettings, GatewaySettings, parse_hostport, split_list, split_map

TlsPolicy = Literal["none", "may", "required"]


class SmtpClientSettings(BaseModel):
    """smtp-client: routing, TLS, connection limits, retries and bounces."""

    smarthost: str = Field(
        default="127.0.0.1:2526",
        description="host:port for every domain the transport map does not name; empty: deliver by MX.",
    )
    transport: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Per-domain next hop: "example.com=10.0.0.5:25,example.org=mx" ("mx": look up MX).',
    )
    mx_port: int = Field(default=25, ge=1, le=65535, description="Port of hosts found by MX/A lookup.")
    dns: DnsSettings = Field(default_factory=DnsSettings)
    timeout_s: float = Field(default=30.0, gt=0, description="Per SMTP command and for connecting.")
    concurrency: int = Field(default=20, ge=1, description="Records being delivered at once.")
    destination_concurrency: int = Field(default=10, ge=1, description="Connections at once per next hop.")
    connection_reuse: int = Field(default=100, ge=1, description="Mails per connection before QUIT.")
    connection_idle_s: float = Field(default=5.0, ge=0, description="How long an idle connection is kept.")
    tls: TlsPolicy = Field(default="may", description="TLS for domains tls_policy does not name.")
    tls_policy: Annotated[dict[str, TlsPolicy], NoDecode] = Field(
        default_factory=dict, description='Per-domain TLS: "bank.example=required,old.example=none".'
    )
    tls_ca_file: Path | None = Field(default=None, description="CA bundle for required TLS; unset: system CAs.")
    retry_delays_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [60.0, 600.0, 3600.0],
        description="Wait before attempts 2, 3 and 4+ (one retry topic each: mail.retry.1, .2, .3).",
    )
    max_queue_lifetime_s: float = Field(
        default=5 * 86400.0, gt=0, description="Since the mail was received; then it bounces."
    )
    journal_fsync: bool = Field(
        default=False,
        description="fsync the local delivery journal (in batches) before each delivery log write: survives "
        "a power loss too, not only a kill of the process.",
    )

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _split_lists(cls, v: Any) -> Any:
        return split_list(v)

    @field_validator("transport", "tls_policy", mode="before")
    @classmethod
    def _split_maps(cls, v: Any) -> Any:
        return split_map(v)

    @field_validator("retry_delays_s")
    @classmethod
    def _three_delays(cls, v: list[float]) -> list[float]:
        if len(v) != 3 or any(d <= 0 for d in v):
            raise ValueError("give 3 positive delays in seconds, one per retry topic, e.g. 60,600,3600")
        return v

    @property
    def smarthost_addr(self) -> tuple[str, int]:
        return parse_hostport(self.smarthost, 25)

    def tls_for(self, domain: str) -> TlsPolicy:
        return self.tls_policy.get(domain.lower(), self.tls)


class Settings(GatewaySettings):
    """What smtp-client is given: the gateway's identity and its own section."""

    smtp_client: SmtpClientSettings = Field(default_factory=SmtpClientSettings)
