"""The console's front page and its health probe."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from control.web.app import WebContext


def routes(context: WebContext) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        return context.render(request, "home.html", hostname=context.settings.hostname)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return [Route("/", home, name="home"), Route("/healthz", healthz, name="healthz")]
