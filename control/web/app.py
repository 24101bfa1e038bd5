"""The web console's application: the page modules' routes, the templates, the shared context."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from control.settings import Settings
from control.web.secret import signing_key

HERE = Path(__file__).parent

#: The page modules: each exports ``routes(context: WebContext) -> list[BaseRoute]``.
PAGE_MODULES: tuple[str, ...] = (
    "control.web.pages_home",
)


@dataclass
class WebContext:
    """What every page module gets: the settings tree, the signing key, the templates, and
    whatever long-lived objects a page module keeps (``extras``, by its own key)."""

    settings: Settings
    key: bytes
    templates: Environment
    extras: dict[str, Any] = field(default_factory=dict)

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        page = self.templates.get_template(template).render(request=request, public_url=self.settings.web.public_url,
                                                            **values)
        return HTMLResponse(page, status_code=status_code)


def templates() -> Environment:
    # autoescape everything: mail subjects and senders are attacker-chosen text
    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))


def create_app(settings: Settings, modules: tuple[str, ...] = PAGE_MODULES) -> Starlette:
    context = WebContext(settings, signing_key(settings.web.secret_path(settings.home)), templates())
    routes: list[BaseRoute] = []
    for name in modules:
        routes.extend(importlib.import_module(name).routes(context))
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))

    async def error_page(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "The console met an error; it is logged."
        return context.render(request, "error.html", status_code=status, status=status, detail=detail)

    app = Starlette(routes=routes, exception_handlers={HTTPException: error_page, 500: error_page})
    app.state.context = context
    return app
