"""Settings for every mailgate service, declared once.

Each key is read from the environment (``MAILGATE_<SECTION>__<KEY>``), then from
the TOML file named by ``MAILGATE_CONFIG`` (default ``./mailgate.toml`` when it
exists), then the default below. Business code receives a ``Settings`` object and
never reads ``os.environ`` itself.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Stage settings are declared next to their stage (plain pydantic models) and composed here.
from core.dns_settings import DnsSettings  # noqa: E402,F401  (re-exported: core.settings.DnsSettings)
from core.dns_settings import split_list as _split_list  # noqa: E402
from ingress.pop3.settings import Pop3Settings  # noqa: E402
from streams.spam.settings import SpamSettings  # noqa: E402
from streams.validation.settings import ValidationFilterSettings  # noqa: E402
from egress.maildepot.settings import MaildepotSettings  # noqa: E402
from ingress.connector.settings import ConnectorSettings  # noqa: E402
from streams.archive.settings import ArchiveSettings  # noqa: E402

CONFIG_ENV = "MAILGATE_CONFIG"
DEFAULT_CONFIG_FILE = "mailgate.toml"


def _default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "mailgate"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mailgate"


class KafkaSettings(BaseModel):
    """How to reach Kafka, and the defaults every producer and consumer gets."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="External cluster (host:port,...). Unset: the local broker that mailgate provisions.",
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic and group name.")
    replication_factor: int = Field(default=1, ge=1)
    partitions: int = Field(default=6, ge=1, description="Partitions of the mail topics.")
    linger_ms: int = Field(
        default=0, ge=0,
        description="How long a record waits for others before its batch is sent. 0: at once when no request "
        "is in flight; with max_in_flight 1 the records arriving meanwhile still go as one batch, and none "
        "waits for a timer (bench/smtp_vs_postfix.py: ~6% more mails/s than 5 ms).",
    )
    max_in_flight: int = Field(
        default=1, ge=1, le=5,
        description="Produce requests in flight per broker connection. 1: records that arrive while one "
        "request is out go together in the next, so the batch grows with load and no record waits a linger "
        "for company (bench/smtp_vs_postfix.py measured more mails/s than with 5).",
    )
    compression: str = Field(default="lz4", description="Kafka batch compression.")
    produce_timeout_s: float = Field(
        default=10.0, gt=0, description="How long an SMTP accept waits for the broker before 451."
    )
    extra: dict[str, str] = Field(default_factory=dict, description="Extra librdkafka settings.")


class LocalBrokerSettings(BaseModel):
    """The single-node KRaft broker mailgate provisions when no external cluster is set."""

    version: str = "4.3.1"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "1g"
    cache_dir: Path = Field(default_factory=lambda: _default_cache() / "kafka")
    data_dir: Path | None = Field(default=None, description="Default: <home>/kafka")


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
        if isinstance(v, str):
            pairs = [p.split("=", 1) for p in v.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError('expected "user=secret" pairs separated by commas')
            return {k.strip(): s.strip() for k, s in pairs}
        return v


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


class RelayFilterSettings(_SmtpListSplitter):
    """Relay control: mail for our domains only, unless the client is trusted or authenticated."""

    trusted_networks: Annotated[list[str], NoDecode] = Field(default_factory=list, description="CIDRs allowed to relay anywhere.")
    relay_authenticated: bool = Field(default=True, description="Authenticated clients may relay.")


class OwnerSenderLists(_SmtpListSplitter):
    """The sender lists of one of our domains or users (entries as in ListFilterSettings)."""

    sender_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sender_deny: Annotated[list[str], NoDecode] = Field(default_factory=list)


class ListFilterSettings(_SmtpListSplitter):
    """Allow/deny lists. Entries: "user@domain" (one user), "domain" (every user of it) or
    ".domain" (its subdomains'). The sender lists can also be set per recipient domain and
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
        default_factory=dict, description="One of smtp_server.domains -> its sender lists (for its recipients).")
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

    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "mailgate.localdomain"
    domains: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["example.com"])
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
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

    @field_validator("domains", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [d.strip().lower() for d in v.split(",") if d.strip()]
        return [d.lower() for d in v]

    @model_validator(mode="after")
    def _list_owners_are_ours(self) -> SmtpServerSettings:
        # A list for a domain we do not take mail for would never apply: say so instead.
        ours = set(self.domains)
        for kind, owners in (("domains", self.lists.domains), ("users", self.lists.users)):
            for owner in owners:
                domain = owner.rpartition("@")[2] if kind == "users" else owner
                if (kind == "users" and "@" not in owner) or domain not in ours:
                    what = "an address of one of" if kind == "users" else "one of"
                    raise ValueError(f"smtp_server.lists.{kind}.{owner}: not {what} smtp_server.domains "
                                     f"({', '.join(sorted(ours))})")
        return self


def _split_map(v: Any) -> Any:
    """"a.test=x,b.test=y" (or JSON, or a TOML table) → {"a.test": "x", "b.test": "y"}."""
    if isinstance(v, str):
        v = v.strip()
        if v.startswith("{"):
            return json.loads(v)
        pairs = [p.split("=", 1) for p in v.split(",") if p.strip()]
        bad = [p[0] for p in pairs if len(p) != 2]
        if bad:
            raise ValueError(f"expected domain=value pairs separated by commas, got {bad[0]!r}")
        return {k.strip().lower(): val.strip() for k, val in pairs}
    return {str(k).lower(): val for k, val in v.items()}


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """ "host:port", "[v6addr]:port" or "host" → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:
        return value, default_port
    return host, int(port or default_port)


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
        return _split_list(v)

    @field_validator("transport", "tls_policy", mode="before")
    @classmethod
    def _split_maps(cls, v: Any) -> Any:
        return _split_map(v)

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAILGATE_", env_nested_delimiter="__", extra="ignore"
    )

    node: str = Field(default_factory=lambda: os.uname().nodename)
    home: Path = Field(default_factory=_default_home)
    log_level: str = "info"
    log_format: str = Field(default="console", description="console or json")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker: LocalBrokerSettings = Field(default_factory=LocalBrokerSettings)
    smtp_server: SmtpServerSettings = Field(default_factory=SmtpServerSettings)
    smtp_client: SmtpClientSettings = Field(default_factory=SmtpClientSettings)
    validation: ValidationFilterSettings = Field(default_factory=ValidationFilterSettings)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    pop3: Pop3Settings = Field(default_factory=Pop3Settings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    maildepot: MaildepotSettings = Field(default_factory=MaildepotSettings)
    connector: ConnectorSettings = Field(default_factory=ConnectorSettings)
    control: ControlSettings = Field(default_factory=lambda: ControlSettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if os.environ.get(CONFIG_ENV) and not path.is_file():
            raise FileNotFoundError(
                f"{CONFIG_ENV}={path} names no file: create it or unset {CONFIG_ENV}"
            )
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _pop3_mail_fits_the_topics(self) -> Settings:
        # The topics are sized for smtp_server.max_message_size: a larger POP3 mail would fail its
        # publish at every cycle instead of being left on the server and reported.
        for account in self.pop3.accounts:
            if account.max_message_size > self.smtp_server.max_message_size:
                raise ValueError(
                    f"pop3 account {account.name!r}: max_message_size {account.max_message_size} is larger than "
                    f"smtp_server.max_message_size {self.smtp_server.max_message_size}, which sizes the topics; "
                    f"lower the account's or raise smtp_server.max_message_size")
        return self

    @property
    def uses_local_broker(self) -> bool:
        return not self.kafka.bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers or f"{self.broker.host}:{self.broker.port}"

    @cached_property
    def broker_data_dir(self) -> Path:
        return self.broker.data_dir or self.home / "kafka"


class ControlSettings(BaseModel):
    """control-server (gRPC), the engine's control of this node's services, remote support, /metrics."""

    host: str = Field(default="127.0.0.1", description="Where control-server listens (and the CLI connects).")
    port: int = Field(default=50051, ge=1, le=65535)
    tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description='Who may call: "admin:NAME=TOKEN,user:ADDRESS=TOKEN,..." (a user sees the mail of ADDRESS only).',
    )
    token: SecretStr | None = Field(default=None, description="The token the CLI sends (also --token).")
    tls_cert_file: Path | None = Field(default=None, description="PEM chain: control-server speaks TLS; unset: plain.")
    tls_key_file: Path | None = Field(default=None, description="PEM key of tls_cert_file.")
    tls_ca_file: Path | None = Field(default=None, description="CA the CLI trusts; set: the CLI uses TLS.")
    timeout_s: float = Field(default=10.0, gt=0, description="How long the CLI waits for control-server.")
    status_interval_s: float = Field(default=5.0, gt=0, description="How often an engine reports its services.")
    grace_restart_s: float = Field(
        default=300.0, ge=0,
        description="A stopped spam-filter, maildepot-archiver or maildepot-connector starts again after this.",
    )
    remote_support_port: int = Field(default=50052, ge=1, le=65535, description="Loopback port of remote-support.")
    remote_support_max_s: float = Field(default=8 * 3600.0, gt=0, description="Longest time remote support may run.")
    metrics_port_base: int = Field(
        default=9400, ge=0, le=65535,
        description="The engine gives the n-th service /metrics on base+n (registry order); 0: no /metrics.",
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, description="Set by the engine: this process's /metrics port.")
    run_until_ms: int | None = Field(default=None, description="Set by the engine: a service started until then.")

    @field_validator("tokens", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        if isinstance(v, str):
            pairs = [p.split("=", 1) for p in v.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError('expected "role:name=token" pairs separated by commas')
            v = {k.strip(): t.strip() for k, t in pairs}
        for who in v:
            role, _, name = str(who).partition(":")
            if role not in ("admin", "user") or not name:
                raise ValueError(f'{who!r}: name a token "admin:NAME" or "user:ADDRESS"')
        return v


Settings.model_rebuild()  # the control field names ControlSettings, declared after Settings
