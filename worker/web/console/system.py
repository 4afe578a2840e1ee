"""Console routes: sign in and out, health, the audit log, and the console's small script."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from worker.actors import QUEUE_DELIVERIES, QUEUE_EDITIONS, QUEUE_TRANSACTIONAL
from worker.audit import create_audit_event, list_audit_events
from worker.broker import NAMESPACE
from worker.config import parse_rate
from worker.heartbeat import list_workers, queue_depths, read_scheduler_heartbeat
from worker.models import utcnow
from worker.sending.render import TEMPLATES_DIR
from worker.sending.throttle import over_limit
from worker.web.console.base import (
    ConsoleRoute,
    ConsoleSession,
    changing,
    check_origin,
    client_ip,
    current_session,
    page,
    rt_of,
    signed_in,
)
from worker.web.console.sessions import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_FORM_S,
    LOGIN_RATE_KEY,
    SESSION_COOKIE,
    cookie_secure,
    create_session,
    delete_session,
    safe_next,
    tokens_match,
)

router = APIRouter(route_class=ConsoleRoute)
SCRIPT = (TEMPLATES_DIR / "admin" / "console.js").read_text(encoding="utf-8")


@router.get("/console.js", name="console_script")
def script() -> Response:
    """The progressive enhancement: live numbers on the edition page."""
    return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


def _login_page(
    request: Request, next_path: str, error: str = "", status_code: int = 200
) -> Response:
    rt = rt_of(request)
    form_token = secrets.token_urlsafe(32)
    response = page(
        request,
        "login.html",
        None,
        status_code,
        csrf=form_token,
        next_path=safe_next(next_path),
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        form_token,
        max_age=LOGIN_FORM_S,
        path=COOKIE_PATH,
        httponly=True,
        secure=cookie_secure(rt.settings.public_url),
        samesite="strict",
    )
    return response


@router.get("/login", name="console_login_form")
def login_form(
    request: Request, next_path: Annotated[str, Query(alias="next")] = "/admin"
) -> Response:
    """The sign-in form (the operator token)."""
    if current_session(request) is not None:
        return RedirectResponse(safe_next(next_path), status_code=303)
    return _login_page(request, next_path)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "/admin",
) -> Response:
    """Check the operator token (constant time), then start a session; 429 past the limit."""
    check_origin(request)
    rt = rt_of(request)
    ip = client_ip(request)
    count, period_s = parse_rate(rt.settings.console_login_rate)
    wait_s = over_limit(rt.redis, LOGIN_RATE_KEY + ip, count, period_s)
    if wait_s is not None:
        response = page(
            request,
            "message.html",
            None,
            429,
            heading="Too many attempts",
            text="Too many sign-in attempts from this address. Wait a minute and try again.",
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return response
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_page(
            request, next_path, "This form had expired. Enter the token again.", status_code=403
        )
    if not tokens_match(rt.settings.operator_token, token.strip()):
        with rt.session() as db, db.begin():
            create_audit_event(db, "console", ip, "sign-in refused", "console")
        return _login_page(request, next_path, "That is not the operator token.", status_code=401)
    session_id, session = create_session(rt.redis, ip, rt.settings.console_session_s)
    with rt.session() as db, db.begin():
        create_audit_event(db, session.actor, ip, "sign-in", "console")
    signed = RedirectResponse(safe_next(next_path), status_code=303)
    signed.set_cookie(
        SESSION_COOKIE,
        session_id,
        path=COOKIE_PATH,
        httponly=True,
        secure=cookie_secure(rt.settings.public_url),
        samesite="strict",
    )
    signed.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return signed


@router.post("/logout")
def logout(request: Request, session: ConsoleSession = Depends(changing)) -> Response:
    """End the session."""
    rt = rt_of(request)
    delete_session(rt.redis, request.cookies.get(SESSION_COOKIE))
    with rt.session() as db, db.begin():
        create_audit_event(db, session.actor, client_ip(request), "sign-out", "console")
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("/health", name="console_health")
def health(request: Request, session: ConsoleSession = Depends(signed_in)) -> Response:
    """Database, Redis, workers, queues and the scheduler."""
    rt = rt_of(request)
    checks: dict[str, str] = {}
    try:
        with rt.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure is the answer here
        checks["database"] = f"error: {type(exc).__name__}"
    workers: list[tuple[str, int]] = []
    depths: dict[str, int] = {}
    beat = None
    try:
        rt.redis.ping()
        checks["redis"] = "ok"
        workers = list_workers(rt.redis)
        depths = queue_depths(
            rt.redis, NAMESPACE, [QUEUE_DELIVERIES, QUEUE_EDITIONS, QUEUE_TRANSACTIONAL]
        )
        beat = read_scheduler_heartbeat(rt.redis)
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    now = utcnow()
    return page(
        request,
        "health.html",
        session,
        checks=checks,
        workers=workers,
        depths=depths,
        beat=beat,
        scheduler_alive=beat.alive(now) if beat else False,
        cron=rt.settings.weekly_cron,
        timezone=rt.settings.timezone,
    )


@router.get("/audit", name="console_audit")
def audit_log(
    request: Request,
    page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """Every operator action, newest first."""
    rt = rt_of(request)
    page_no = max(1, page_no)
    with rt.session() as db:
        events = list_audit_events(db, limit=100, offset=(page_no - 1) * 100)
    return page(request, "audit.html", session, events=events, page_no=page_no)
