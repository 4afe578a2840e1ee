"""Rendering of the reader pages (Jinja2, autoescaped)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from worker.sending.render import TEMPLATES_DIR

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "web"))


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``templates/web/<name>``."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def message(request: Request, heading: str, text: str, status_code: int = 200) -> HTMLResponse:
    """A plain page with a heading and one paragraph."""
    return page(request, "message.html", status_code, heading=heading, text=text)
