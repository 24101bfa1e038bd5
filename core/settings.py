"""core: the settings plumbing every service shares — the loader, Kafka, the local
broker, and the gateway's identity.

Each key is read from the environment (``MAILGATE_<SECTION>__<KEY>``), then from
the TOML file named by ``MAILGATE_CONFIG`` (default ``./mailgate.toml`` when it
exists), then the default. A key the tree does not declare is an error that names
it, where it was found and the nearest valid name (``core.settings_keys``).

A stage declares its own section next to its code (``ingress/smtp/settings.py``,
...) and the settings its service is given: ``GatewaySettings`` plus that section.
The whole tree is composed only where services start (``control/settings.py``,
used by the service registry); ``view`` cuts a service's settings out of it.
Business code receives a settings object and never reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.dns_settings import DnsSettings, parse_hostport, split_list, split_map, split_pairs
from core.settings_keys import ENV_PREFIX, refuse, unknown_in_env, unknown_in_file

__all__ = [  # the DNS settings and the value parsers are the stages' too
    "CONFIG_ENV", "DnsSettings", "GatewaySettings", "KafkaSettings", "LocalBrokerSettings", "ServiceControl",
    "SettingsLoader", "parse_hostport", "split_list", "split_map", "split_pairs", "view",
]

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
    brokers: int = Field(
        default=1, ge=1, le=9,
        description="1: one broker, a 250 means its page cache. 3: a KRaft cluster on loopback (ports port+2i, "
                    "controller_port+2i), replication 3 and min.insync.replicas 2: a 250 means two brokers hold "
                    "the mail, and one may die without loss or a pause of SMTP.",
    )
    cache_dir: Path = Field(default_factory=lambda: _default_cache() / "kafka")
    data_dir: Path | None = Field(default=None, description="Default: <home>/kafka")


class ServiceControl(BaseModel):
    """What every service process needs of the control section: its status interval and
    its /metrics port (set by the engine). control's own section extends it."""

    status_interval_s: float = Field(default=5.0, gt=0, description="How often an engine reports its services.")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, description="Set by the engine: this process's /metrics port.")


class GatewaySettings(BaseModel):
    """What every service is given: who this gateway is (node, home, hostname, our domains,
    the largest mail, which sizes the topics), how it logs, and how it reaches Kafka."""

    node: str = Field(default_factory=lambda: os.uname().nodename)
    home: Path = Field(default_factory=_default_home)
    hostname: str = Field(default="mailgate.localdomain", description="The name the gateway greets and signs with.")
    domains: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["example.com"], description="Our domains: mail is accepted for these (comma-separated).")
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024,
                                  description="The largest mail taken; also sizes the topics' max.message.bytes.")
    log_level: str = "info"
    log_format: str = Field(default="console", description="console or json")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker: LocalBrokerSettings = Field(default_factory=LocalBrokerSettings)
    control: ServiceControl = Field(default_factory=ServiceControl)

    @field_validator("domains", mode="before")
    @classmethod
    def _split_domains(cls, v: Any) -> Any:
        return [str(d).strip().lower() for d in split_list(v) if str(d).strip()]

    @property
    def uses_local_broker(self) -> bool:
        return not self.kafka.bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers or ",".join(
            f"{self.broker.host}:{self.broker.port + 2 * i}" for i in range(self.broker.brokers))

    @property
    def topic_replication(self) -> int:
        """Replication of the topics mailgate makes: the setting, and 3 on a local cluster of 3 or more."""
        local = min(3, self.broker.brokers) if self.uses_local_broker else 1
        return max(self.kafka.replication_factor, local)

    @cached_property
    def broker_data_dir(self) -> Path:
        return self.broker.data_dir or self.home / "kafka"


class SettingsLoader(BaseSettings):
    """The loader: environment → TOML file → defaults, refusing keys the tree does not declare."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

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
        problems = unknown_in_env(settings_cls, os.environ, cls.moved_keys())
        if path.is_file():
            toml = TomlConfigSettingsSource(settings_cls, toml_file=path)
            problems += unknown_in_file(settings_cls, toml.toml_data, path, cls.moved_keys())
            sources.append(toml)
        refuse(problems)
        return tuple(sources)

    @classmethod
    def moved_keys(cls) -> dict[str, str]:
        """Old dotted keys still read, and where they moved (the tree moves their values)."""
        return {}


M = TypeVar("M", bound=BaseModel)


def view(tree: BaseModel, cls: type[M]) -> M:
    """The settings of one service, cut out of the whole tree: the fields ``cls`` declares,
    each section narrowed to the model ``cls`` names for it (a service that needs one switch
    of another stage's section declares a model with only that switch)."""
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        value = getattr(tree, name)
        wanted = info.annotation
        if isinstance(value, BaseModel) and isinstance(wanted, type) and issubclass(wanted, BaseModel) \
                and type(value) is not wanted:
            value = wanted.model_validate({k: getattr(value, k) for k in wanted.model_fields})
        values[name] = value
    return cls.model_validate(values)
