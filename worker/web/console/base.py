"""What every console route shares: the route class that turns a refusal into its page and
adds the security headers, the sign-in and POST checks, page rendering and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from worker.audit import create_audit_event
from worker.runtime import Runtime
from worker.sending.render import TEMPLATES_DIR
from worker.web.console import views
from worker.web.console.sessions import (
    SESSION_COOKIE,
    ConsoleSession,
    get_session,
    origin_of,
    same_origin,
    tokens_match,
)

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "admin"))
templates.env.filters["when"] = views.when
templates.env.filters["percent"] = views.percent
templates.env.filters["num"] = views.num

# The console's own scripts and styles only; previews are srcdoc frames (no script runs in
# them: the frames are sandboxed, and this policy applies to them too).
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class Refused(Exception):
    """Stop a console request with this response (a redirect to sign in, a 403 page)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class ConsoleRoute(APIRoute):
    """Answers a ``Refused`` with its response, and puts the security headers on every one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Refused as refused:
                response = refused.response
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler


def rt_of(request: Request) -> Runtime:
    """The process runtime."""
    rt: Runtime = request.app.state.rt
    return rt


def client_ip(request: Request) -> str:
    """The caller's address (run uvicorn with --proxy-headers behind a proxy)."""
    return request.client.host if request.client else "unknown"


def page(
    request: Request,
    name: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A console page from ``templates/admin/<name>``."""
    return templates.TemplateResponse(
        request, name, {"session": session, **context}, status_code=status_code
    )


def refusal(request: Request, status_code: int, heading: str, text: str) -> Refused:
    """A refusal page, to raise."""
    session = current_session(request)
    return Refused(page(request, "message.html", session, status_code, heading=heading, text=text))


def confirmation(
    request: Request,
    session: ConsoleSession,
    labels: dict[str, tuple[str, str]],
    action: str,
    *,
    heading: str,
    status: str,
    allowed: Callable[[str, str], bool],
    base_url: str,
    danger: str,
) -> Response:
    """The confirmation step of an action: its label and text from ``labels``, and a button
    that posts to ``base_url/action`` (shown only when ``allowed(action, status)``);
    ``heading`` may name the action as ``{label}``. 404 for an action not in ``labels``."""
    if action not in labels:
        raise refusal(request, 404, "No such action", f"There is no action {action}.")
    label, text = labels[action]
    return page(
        request,
        "confirm.html",
        session,
        heading=heading.format(label=label),
        text=text,
        allowed=allowed(action, status),
        status=status,
        action_url=f"{base_url}/{action}",
        button=label,
        back_url=base_url,
        danger=action == danger,
    )


def current_session(request: Request) -> ConsoleSession | None:
    """The caller's console session, if they are signed in."""
    rt = rt_of(request)
    return get_session(rt.redis, request.cookies.get(SESSION_COOKIE), rt.settings.console_session_s)


def signed_in(request: Request) -> ConsoleSession:
    """Dependency of every console page: the session, or a redirect to the sign-in form."""
    session = current_session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = request.url_for("console_login_form").include_query_params(next=target)
        raise Refused(RedirectResponse(str(login.path) + "?" + login.query, status_code=303))
    return session


def allowed_origins(request: Request) -> set[str]:
    """Where console forms are served from: this request's own origin and the public URL's."""
    rt = rt_of(request)
    return {origin_of(str(request.base_url)), origin_of(rt.settings.public_url)} - {""}


def check_origin(request: Request) -> None:
    """Refuse a POST from another site (403), before anything else is read."""
    if not same_origin(
        request.headers.get("origin"), request.headers.get("referer"), allowed_origins(request)
    ):
        raise refusal(
            request, 403, "Refused", "This form was not sent from the console's own pages."
        )


def changing(request: Request, csrf: str = Form("")) -> ConsoleSession:
    """Dependency of every state-changing POST: same origin, signed in, the session's CSRF
    token in the form; 403 otherwise, and nothing is changed."""
    check_origin(request)
    session = current_session(request)
    if session is None:
        raise refusal(request, 403, "Sign in first", "Your session has ended. Sign in again.")
    if not tokens_match(session.csrf, csrf):
        raise refusal(
            request,
            403,
            "Refused",
            "This form is out of date or did not come from the console. Reload the page and "
            "try again.",
        )
    return session


def audit(
    request: Request, session: ConsoleSession, action: str, target: str, detail: str = ""
) -> None:
    """Write one console action to the audit log."""
    rt = rt_of(request)
    with rt.session() as db, db.begin():
        create_audit_event(db, session.actor, client_ip(request), action, target, detail)
