"""control/web — the web-console service: the administrator and user consoles in the browser.

Server-rendered pages (Starlette + Jinja2, no JavaScript build chain). Each page module
under ``control/web/`` exports ``routes(context) -> list[BaseRoute]`` and is named in
``app.PAGE_MODULES``; every action goes through the same control layer as gRPC.
"""
