"""Settings of pop3-proxy / pop3s-proxy: the POP3 accounts to collect, one model each.

The ``[pop3]`` section; ``Settings`` is what pop3-proxy and pop3s-proxy are given (the
gateway's identity and this section). An account is configured in the TOML file::

    [[pop3.accounts]]
    name = "sales"
    host = "pop.example.net"
    tls = "implicit"                  # none | starttls-required | starttls-opportunistic | implicit
    user = "sales@example.net"
    password_file = "/run/secrets/pop3-sales"   # or password_env = "POP3_SALES_PASSWORD"
    recipient = "sales@example.com"
    interval_s = 300

The password is read once, when the settings are loaded, from the environment
variable named by ``password_env`` or from the file named by ``password_file``
(its first line); an error names the account and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from core.settings import GatewaySettings

TlsMode = Literal["none", "starttls-required", "starttls-opportunistic", "implicit"]

#: Which accounts each service collects: pop3-proxy speaks plain POP3 (+STLS) on 110,
#: pop3s-proxy implicit TLS on 995.
SERVICE_TLS_MODES: dict[str, frozenset[str]] = {
    "pop3-proxy": frozenset({"none", "starttls-required", "starttls-opportunistic"}),
    "pop3s-proxy": frozenset({"implicit"}),
}


class Pop3Account(BaseModel):
    """One POP3 maildrop collected into mail.in for one local recipient."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                      description="Short id of the account: in logs, status and the UIDL ledger keys.")
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 995 for implicit TLS, else 110.")
    tls: TlsMode = "starttls-required"
    ca_file: Path | None = Field(default=None,
                                 description="CA bundle to verify the server with; default: the system's.")
    user: str = Field(min_length=1)
    password: SecretStr | None = Field(default=None, description="Prefer password_env or password_file.")
    password_env: str | None = Field(default=None, description="Environment variable holding the password.")
    password_file: Path | None = Field(default=None, description="Secrets file holding the password (first line).")
    recipient: str = Field(description="Local address the collected mail is for (the envelope recipient).")
    interval_s: float = Field(default=300.0, gt=0, description="Time between two collect cycles.")
    delete: bool = Field(default=True, description="Delete each mail on the server once its event is durable.")
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024,
                                  description="Mails larger than this are left on the server and reported.")
    timeout_s: float = Field(default=60.0, gt=0, description="How long to wait for the server at any step.")
    enabled: bool = True

    @field_validator("user", "recipient")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0"):
            raise ValueError("must not contain CR, LF or NUL")
        return v.strip()

    @field_validator("recipient")
    @classmethod
    def _address(cls, v: str) -> str:
        local, at, domain = v.rpartition("@")
        if not at or not local or not domain or " " in v:
            raise ValueError(f"{v!r} is not a mail address (local@domain)")
        return v

    @model_validator(mode="after")
    def _resolve_password(self) -> Pop3Account:
        sources = [k for k in ("password", "password_env", "password_file") if getattr(self, k) is not None]
        where = f"pop3 account {self.name!r}"
        if len(sources) != 1:
            raise ValueError(f"{where}: set exactly one of password_env, password_file, password"
                             f" (got {sources or 'none'})")
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"{where}: password_env names {self.password_env}, which is not set")
            self.password = SecretStr(value)
        elif self.password_file is not None:
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{where}: password_file {self.password_file} cannot be read: {exc.strerror}") from exc
            self.password = SecretStr(text.splitlines()[0] if text else "")
        assert self.password is not None
        secret = self.password.get_secret_value()
        if not secret or any(c in secret for c in "\r\n\0"):
            raise ValueError(f"{where}: the password ({sources[0]}) is empty or contains CR, LF or NUL")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (995 if self.tls == "implicit" else 110)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.effective_port}"


class Pop3Settings(BaseModel):
    """The accounts, and limits shared by all of them."""

    accounts: list[Pop3Account] = Field(default_factory=list)
    max_sessions: int = Field(default=4, ge=1, description="POP3 sessions open at once per service.")
    max_in_flight: int = Field(default=256, ge=1,
                               description="Mails of one session fetched but not yet acknowledged by Kafka.")
    max_in_flight_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                     description="Their bytes, at most (a single larger mail still goes).")
    backoff_max_s: float = Field(default=3600.0, gt=0,
                                 description="Longest wait after repeated failures (doubling from interval_s).")

    @field_validator("accounts")
    @classmethod
    def _unique_names(cls, accounts: list[Pop3Account]) -> list[Pop3Account]:
        seen: set[str] = set()
        for a in accounts:
            if a.name in seen:
                raise ValueError(f"two pop3 accounts are named {a.name!r}: names must be unique")
            seen.add(a.name)
        return accounts

    def accounts_for(self, service: str | None) -> list[Pop3Account]:
        """The enabled accounts one service collects (None: all of them)."""
        if service is not None and service not in SERVICE_TLS_MODES:
            raise ValueError(f"unknown POP3 service {service!r}: one of {', '.join(SERVICE_TLS_MODES)}")
        modes = SERVICE_TLS_MODES.get(service or "", None)
        return [a for a in self.accounts if a.enabled and (modes is None or a.tls in modes)]


class Settings(GatewaySettings):
    """What pop3-proxy and pop3s-proxy are given: the gateway's identity and their section."""

    pop3: Pop3Settings = Field(default_factory=Pop3Settings)

    @model_validator(mode="after")
    def _mail_fits_the_topics(self) -> Settings:
        # The topics are sized for max_message_size: a larger POP3 mail would fail its
        # publish at every cycle instead of being left on the server and reported.
        for account in self.pop3.accounts:
            if account.max_message_size > self.max_message_size:
                raise ValueError(
                    f"pop3 account {account.name!r}: max_message_size {account.max_message_size} is larger than "
                    f"the gateway's max_message_size {self.max_message_size}, which sizes the topics; "
                    f"lower the account's or raise max_message_size")
        return self
