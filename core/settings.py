"""Settings for every mailgate service, declared once.

Each key is read from the environment (``MAILGATE_<SECTION>__<KEY>``), then from
the TOML file named by ``MAILGATE_CONFIG`` (default ``./mailgate.toml`` when it
exists), then the default below. Business code receives a ``Settings`` object and
never reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

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
    linger_ms: int = Field(default=5, ge=0)
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


class SmtpServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "mailgate.localdomain"
    domains: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["example.com"])
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=100, ge=1)

    @field_validator("domains", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [d.strip().lower() for d in v.split(",") if d.strip()]
        return [d.lower() for d in v]


class SmtpClientSettings(BaseModel):
    smarthost: str = Field(default="127.0.0.1:2526", description="host:port of the next hop.")
    timeout_s: float = Field(default=30.0, gt=0)
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    concurrency: int = Field(default=20, ge=1)

    @property
    def smarthost_addr(self) -> tuple[str, int]:
        host, _, port = self.smarthost.rpartition(":")
        return (host or self.smarthost).strip("[]"), int(port or 25)


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

    @property
    def uses_local_broker(self) -> bool:
        return not self.kafka.bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers or f"{self.broker.host}:{self.broker.port}"

    @cached_property
    def broker_data_dir(self) -> Path:
        return self.broker.data_dir or self.home / "kafka"
