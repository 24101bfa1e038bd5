"""control: its own settings section, and the whole settings tree composed from every
stage's section — the one place that knows them all.

The engine and the CLI load the tree (``Settings()``: environment → TOML → defaults,
unknown keys refused); the service registry (``control/services.py``) gives each service
only its view (``view``): the gateway's identity and its own section. Loading the tree
builds every view once, so a cross-check of a stage (a list for a domain that is not
ours, a POP3 account larger than the topics) refuses the start of the whole gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode

from control.broker.retention import QueueRetentionSettings
from core.settings import GatewaySettings, ServiceControl, SettingsLoader, split_pairs, view
import egress.maildepot.settings as maildepot_
import egress.smtp_client.settings as smtp_client_
import ingress.connector.settings as connector_
import ingress.pop3.settings as pop3_
import ingress.smtp.settings as smtp_server_
import streams.archive.settings as archive_
import streams.spam.settings as spam_
import streams.validation.settings as validation_
from control.web.settings import WebSettings

#: What each stage's service is given (its module's ``Settings``), by section.
STAGE_VIEWS: tuple[type[GatewaySettings], ...] = (
    smtp_server_.Settings, smtp_client_.Settings, pop3_.Settings, spam_.Settings, validation_.Settings,
    archive_.Settings, maildepot_.Settings, connector_.Settings,
)

#: Keys that moved to the gateway's identity: still read at the old place when the new one is unset.
MOVED = {f"smtp_server.{key}": key for key in ("hostname", "domains", "max_message_size")}


class ControlSettings(ServiceControl):
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
    run_until_ms: int | None = Field(default=None, description="Set by the engine: a service started until then.")

    @field_validator("tokens", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        v = split_pairs(v, "role:name=token")
        for who in v:
            role, _, name = str(who).partition(":")
            if role not in ("admin", "user") or not name:
                raise ValueError(f'{who!r}: name a token "admin:NAME" or "user:ADDRESS"')
        return v


class Settings(SettingsLoader, GatewaySettings):
    """The whole tree: the gateway's identity, Kafka, and every stage's section."""

    smtp_server: smtp_server_.SmtpServerSettings = Field(default_factory=smtp_server_.SmtpServerSettings)
    smtp_client: smtp_client_.SmtpClientSettings = Field(default_factory=smtp_client_.SmtpClientSettings)
    validation: validation_.ValidationFilterSettings = Field(default_factory=validation_.ValidationFilterSettings)
    spam: spam_.SpamSettings = Field(default_factory=spam_.SpamSettings)
    pop3: pop3_.Pop3Settings = Field(default_factory=pop3_.Pop3Settings)
    archive: archive_.ArchiveSettings = Field(default_factory=archive_.ArchiveSettings)
    maildepot: maildepot_.MaildepotSettings = Field(default_factory=maildepot_.MaildepotSettings)
    connector: connector_.ConnectorSettings = Field(default_factory=connector_.ConnectorSettings)
    control: ControlSettings = Field(default_factory=lambda: ControlSettings())
    retention: QueueRetentionSettings = Field(default_factory=QueueRetentionSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @classmethod
    def moved_keys(cls) -> dict[str, str]:
        return MOVED

    @model_validator(mode="before")
    @classmethod
    def _moved_to_the_identity(cls, data: Any) -> Any:
        section = data.get("smtp_server") if isinstance(data, dict) else None
        if not isinstance(section, dict):
            return data
        section = dict(section)
        data = {**data, "smtp_server": section}
        for old, new in MOVED.items():
            key = old.partition(".")[2]
            if key in section:
                data.setdefault(new, section.pop(key))
        return data

    @model_validator(mode="after")
    def _every_view_is_valid(self) -> Settings:
        for cls in STAGE_VIEWS:
            try:
                view(self, cls)
            except ValidationError as exc:
                raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
        return self


def explain(exc: ValidationError) -> str:
    """Each problem of a settings error with its key and variable (a check across sections names its own)."""
    def one(e: Any) -> str:
        msg = str(e["msg"]).removeprefix("Value error, ")
        if not e["loc"]:
            return msg
        key = ".".join(str(p) for p in e["loc"])
        return f"{key} (MAILGATE_{'__'.join(str(p) for p in e['loc']).upper()}): {msg}"
    return "; ".join(one(e) for e in exc.errors())

