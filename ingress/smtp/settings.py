"""smtp-server: its settings — where it listens, what it offers, its limits and its
phase-1 filters (``[smtp_server]`` in mailgate.toml, ``MAILGATE_SMTP_SERVER__*``).

Our domains, the hostname and the largest mail are the gateway's identity
(``core.settings.GatewaySettings``: ``domains``, ``hostname``, ``max_message_size``);
``Settings`` is what the service is given: that identity and this section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from core.settings import DnsSettings, GatewaySettings, split_pairs


class _SmtpListSplitter(BaseModel):
    """Base of the smtp-server setting groups: comma-separated strings become lists."""

    @field_validator("*", mode="before")
    @classmethod
    def _split_commas(cls, v: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if isinstance(v, str) and field is not None and "list[" in str(field.annotation):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v


class SmtpTlsSettings(_SmtpListSplitter):
    """STARTTLS and the implicit-TLS port. Without a certificate a self-signed one is made."""

    starttls: bool = Field(default=True, description="Offer STARTTLS on the plain port.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Implicit-TLS port (e.g. 465); unset: none.")
    cert_file: Path | None = Field(default=None, description="PEM certificate chain; unset: self-signed in <home>/tls.")
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file.")
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"


class SmtpAuthSettings(_SmtpListSplitter):
    """AUTH PLAIN/LOGIN for submission clients, offered only over TLS and only when users are set."""

    users: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description='"user=secret,..." where secret is a password or "pbkdf2_sha256$iter$salt_hex$hash_hex".',
    )

    @field_validator("users", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        return split_pairs(v, "user=secret")


class SmtpLimitSettings(_SmtpListSplitter):
    """What one client may do: sizes, counts, time. Counts are per listener process."""

    max_line_length: int = Field(default=4096, ge=1000, description="Octets per line incl. CRLF; a longer command line gets "
                                 "500 5.5.2, a longer line in DATA fails that message with 500 5.5.2 after its end; "
                                 "the session goes on.")
    max_commands: int = Field(default=1000, ge=10, description="Commands per session; then 421 and close.")
    max_errors: int = Field(default=20, ge=1, description="4xx/5xx replies per session; then 421 and close.")
    max_connections: int = Field(default=1000, ge=1, description="Concurrent connections of the node.")
    max_connections_per_ip: int = Field(default=50, ge=1, description="Concurrent connections per client IP.")
    idle_timeout_s: float = Field(default=300.0, gt=0, description="Silence from the client before 421 and close.")
    retry_window_s: float = Field(
        default=600.0, ge=0,
        description="A client's retry of a mail accepted this recently (same client, envelope, Message-ID and body) "
                    "gets 250 with the first copy's id and is not stored twice; 0: every copy is stored.")


class RelayFilterSettings(_SmtpListSplitter):
    """Relay control: mail for our domains only, unless the client is trusted or authenticated."""

    trusted_networks: Annotated[list[str], NoDecode] = Field(default_factory=list, description="CIDRs allowed to relay anywhere.")
    relay_authenticated: bool = Field(default=True, description="Authenticated clients may relay.")


class OwnerSenderLists(_SmtpListSplitter):
    """The sender lists of one of our domains or users (entries as in ListFilterSettings)."""

    sender_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sender_deny: Annotated[list[str], NoDecode] = Field(default_factory=list)


class ListFilterSettings(_SmtpListSplitter):
    """Allow/deny lists. Entries (as in phase 2, ``core.address_lists``): "user@domain" (one
    user), "domain" (every user of it and of its subdomains), "@domain" (of it only) or
    ".domain" (of its subdomains only). The sender lists can also be set per recipient domain and
    per recipient user; the most specific list that names the sender decides (user >
    domain > these global ones), and on one level deny wins::

        [smtp_server.lists.domains."example.com"]
        sender_deny = ["spammer.test"]
        [smtp_server.lists.users."alice@example.com"]
        sender_allow = ["partner.test"]

    In the environment as JSON: MAILGATE_SMTP_SERVER__LISTS__DOMAINS='{"example.com": {"sender_deny": [...]}}'.
    """

    client_allow: Annotated[list[str], NoDecode] = Field(default_factory=list, description="CIDRs that skip the DNS and greylist checks.")
    client_deny: Annotated[list[str], NoDecode] = Field(default_factory=list, description="CIDRs refused (554 5.7.1).")
    sender_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sender_deny: Annotated[list[str], NoDecode] = Field(default_factory=list)
    recipient_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    recipient_deny: Annotated[list[str], NoDecode] = Field(default_factory=list)
    domains: dict[str, OwnerSenderLists] = Field(
        default_factory=dict, description="One of our domains (the gateway's domains) -> its sender lists (for its recipients).")
    users: dict[str, OwnerSenderLists] = Field(
        default_factory=dict, description="A recipient address of our domains -> its own sender lists.")

    @field_validator("domains", "users", mode="before")
    @classmethod
    def _lower_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.strip() else {}
        return {str(k).strip().lower().rstrip("."): val for k, val in v.items()} if isinstance(v, dict) else v

    @property
    def sender_owners(self) -> bool:
        """Lists of a domain or a user are set."""
        return any(o.sender_allow or o.sender_deny for o in (*self.domains.values(), *self.users.values()))


class RateLimitSettings(_SmtpListSplitter):
    """Messages per window per client IP and per sender (0: no limit); over it: 450 4.7.1."""

    per_client: int = Field(default=0, ge=0)
    per_sender: int = Field(default=0, ge=0)
    window_s: float = Field(default=60.0, gt=0)


class RecipientFilterSettings(_SmtpListSplitter):
    """Recipient verification: a static list, or an SMTP callout to the internal server, cached."""

    addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Valid recipients ("user@domain", "@domain" for all). A domain without entries is not checked.',
    )
    callout: str | None = Field(default=None, description="host:port asked with RCPT TO for the rest; unset: off.")
    callout_timeout_s: float = Field(default=10.0, gt=0)
    cache_valid_s: float = Field(default=3600.0, ge=0)
    cache_invalid_s: float = Field(default=600.0, ge=0)


class HeloFilterSettings(_SmtpListSplitter):
    """HELO/EHLO sanity: a syntactically valid name or address literal, not ours."""

    enabled: bool = True
    require_fqdn: bool = Field(default=False, description="The name must have a dot (or be an address literal).")


class DnsCheckSettings(_SmtpListSplitter):
    """Client checks that ask the DNS: reverse DNS, DNSBLs, SPF."""

    rdns: Literal["off", "present", "confirmed"] = Field(
        default="off", description="present: a PTR; confirmed: a PTR whose name resolves back to the client."
    )
    dnsbl_zones: Annotated[list[str], NoDecode] = Field(default_factory=list, description="e.g. zen.spamhaus.org; empty: off.")
    spf: Literal["off", "record", "enforce"] = Field(
        default="off", description="record: carried to phase 2; enforce: also reject fail, tempfail temperror."
    )


class GreylistSettings(_SmtpListSplitter):
    """Greylisting of (client /24, sender, recipient); state in the compacted topic smtp.greylist."""

    enabled: bool = False
    delay_s: float = Field(default=300.0, ge=0, description="How long a new triplet is refused.")
    retry_window_s: float = Field(default=4 * 3600.0, gt=0, description="A retry must come within this.")
    max_age_s: float = Field(
        default=35 * 86400.0, gt=0, validation_alias=AliasChoices("max_age_s", "expiry_s"),
        description="A passed triplet not seen again for this long is forgotten (postgrey's max-age: 35 days). "
                    "Old name: expiry_s.")
    pending_max_age_s: float = Field(
        default=86400.0, gt=0,
        description="A triplet never retried in time is forgotten after this; at least retry_window_s.")
    sweep_interval_s: float = Field(
        default=3600.0, gt=0, description="How often each node tombstones the expired triplets (±50% jitter).")

    @model_validator(mode="after")
    def _pending_outlives_the_window(self) -> GreylistSettings:
        # Forgotten inside its own retry window, a triplet's retry would be greylisted again, for ever.
        if self.pending_max_age_s < self.retry_window_s:
            raise ValueError(f"greylist.pending_max_age_s ({self.pending_max_age_s:g}) must be at least "
                             f"greylist.retry_window_s ({self.retry_window_s:g})")
        return self


class SmtpServerSettings(_SmtpListSplitter):
    """smtp-server: where it listens, what it offers, its limits and its phase-1 filters."""

    # hostname, domains and max_message_size moved to the gateway's identity: refuse them here
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 2525
    max_recipients: int = Field(default=100, ge=1)
    listeners: int = Field(default=1, ge=1, le=64, description="Processes sharing the port (SO_REUSEPORT).")
    tls: SmtpTlsSettings = Field(default_factory=SmtpTlsSettings)
    auth: SmtpAuthSettings = Field(default_factory=SmtpAuthSettings)
    limits: SmtpLimitSettings = Field(default_factory=SmtpLimitSettings)
    relay: RelayFilterSettings = Field(default_factory=RelayFilterSettings)
    lists: ListFilterSettings = Field(default_factory=ListFilterSettings)
    rate: RateLimitSettings = Field(default_factory=RateLimitSettings)
    recipients: RecipientFilterSettings = Field(default_factory=RecipientFilterSettings)
    helo: HeloFilterSettings = Field(default_factory=HeloFilterSettings)
    checks: DnsCheckSettings = Field(default_factory=DnsCheckSettings)
    greylist: GreylistSettings = Field(default_factory=GreylistSettings)
    dns: DnsSettings = Field(default_factory=lambda: DnsSettings(),
                             description="The resolver of the DNS checks (MAILGATE_SMTP_SERVER__DNS__NAMESERVERS).")


class Settings(GatewaySettings):
    """What smtp-server is given: the gateway's identity and its own section."""

    smtp_server: SmtpServerSettings = Field(default_factory=SmtpServerSettings)

    @model_validator(mode="after")
    def _list_owners_are_ours(self) -> Settings:
        # A list for a domain we do not take mail for would never apply: say so instead.
        ours = set(self.domains)
        lists = self.smtp_server.lists
        for kind, owners in (("domains", lists.domains), ("users", lists.users)):
            for owner in owners:
                domain = owner.rpartition("@")[2] if kind == "users" else owner
                if (kind == "users" and "@" not in owner) or domain not in ours:
                    what = "an address of one of" if kind == "users" else "one of"
                    raise ValueError(f"smtp_server.lists.{kind}.{owner}: not {what} the gateway's domains "
                                     f"({', '.join(sorted(ours))})")
        return self
