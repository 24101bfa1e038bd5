"""control/cli — what every command group of the `mailgate` CLI shares — the consoles, failing with an
exit code, loading the settings, and saying that Kafka cannot be reached. The groups import this
module, never ``control.cli.app`` (which imports them)."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from core.settings import Settings

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} (MAILGATE_{'__'.join(str(p) for p in e['loc']).upper()}): "
            f"{e['msg']}" for e in exc.errors())
        fail(f"invalid settings: {problems}")
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def unreachable(settings: Settings, exc: Exception) -> NoReturn:
    hint = ("start it with `mailgate kafka start`" if settings.uses_local_broker
            else "check MAILGATE_KAFKA__BOOTSTRAP_SERVERS")
    fail(f"cannot reach Kafka at {settings.bootstrap_servers} ({exc}): {hint}")
