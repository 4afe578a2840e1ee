"""Console routes for editions and alerts: the list, one edition's page (progress, rate chart,
errors, uncertain sends), its live numbers, the operator actions (each confirmed first, each
asked of the state machine, each done by ``worker.sending.control``), preview and test send."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from worker.actors import actors_of
from worker.audit import list_audit_events
from worker.bounces import queries as bounces
from worker.catalog import queries as catalog
from worker.errors import InputError, NewsletterError, NotFound
from worker.models import Edition, utcnow
from worker.sending import control
from worker.sending import progress as reports
from worker.sending import queries as sending
from worker.sending.states import actions_for, allows
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import clean_email, join_categories, split_categories
from worker.web.console import views
from worker.web.console.base import (
    ConsoleRoute,
    ConsoleSession,
    audit,
    changing,
    confirmation,
    page,
    refusal,
    rt_of,
    signed_in,
)

router = APIRouter(route_class=ConsoleRoute)
PAGE_SIZE = 50

ACTIONS: dict[str, tuple[str, str]] = {
    # action: (button, what it does, for the confirmation page)
    "send": ("Send", "Fan the edition out to every active reader and start sending it."),
    "pause": ("Pause", "Stop handing out deliveries; workers stop within about a second."),
    "resume": (
        "Resume",
        "Send again, re-queueing whatever the database says is still owed. Nobody gets it twice.",
    ),
    "cancel": (
        "Cancel",
        "Skip every delivery not sent yet. This cannot be undone: the edition is over.",
    ),
    "retry": ("Retry failed", "Give every failed delivery another round of attempts."),
}


def _edition(request: Request, week: str) -> Edition:
    try:
        return control.get_edition(rt_of(request), week)
    except NotFound:
        raise refusal(request, 404, "No such edition", f"There is no edition {week}.") from None


def _progress(request: Request, editions: list[Edition]) -> list[views.Progress]:
    rt = rt_of(request)
    ids = [e.id for e in editions if e.id is not None]
    now = utcnow()
    since = now - timedelta(seconds=views.RATE_WINDOW_S)
    with rt.session() as db:
        counts = reports.count_deliveries_of(db, ids)
        kinds = reports.count_bounce_kinds_of(db, ids)
        recent = reports.count_sent_since(db, ids, since)
    return [
        views.progress(
            e.week,
            e.kind,
            e.status,
            counts[e.id or 0],
            kinds[e.id or 0],
            recent.get(e.id or 0, 0),
            e.pause_reason,
            views.rate_window_s(views.aware(e.started_at), now),
        )
        for e in editions
    ]


@router.get("", name="console_home")
def editions(
    request: Request,
    page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """Every edition and alert, newest first, with its numbers."""
    rt = rt_of(request)
    with rt.session() as db:
        rows, total = reports.list_editions_page(db, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)
    return page(
        request,
        "editions.html",
        session,
        rows=list(zip(rows, _progress(request, rows), strict=True)),
        total=total,
        page_no=page_no,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


def _edition_details(request: Request, edition: Edition) -> dict[str, Any]:
    rt = rt_of(request)
    assert edition.id is not None
    (progress,) = _progress(request, [edition])
    now = utcnow()
    with rt.session() as db:
        sent_times = reports.list_sent_times(db, edition.id)
    started = views.aware(edition.started_at)
    finished = views.aware(edition.finished_at)
    chart = views.rate_chart(sent_times, started, finished or now)
    return {"progress": progress, "chart": views.chart_svg(chart)}


@router.get("/editions/{week}", name="console_edition")
def edition_page(
    request: Request,
    week: str,
    done: str = "",
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """One edition: progress, rate chart, counts, errors, uncertain sends, actions."""
    rt = rt_of(request)
    edition = _edition(request, week)
    assert edition.id is not None
    with rt.session() as db:
        errors = reports.list_error_groups(db, edition.id)
        uncertain = reports.list_uncertain(db, edition.id)
        kinds = bounces.count_bounce_kinds(db, edition.id)
        events = list_audit_events(db, limit=20, target=edition.week)
        carried = catalog.get_comparison_views(
            db, sending.list_edition_comparison_ids(db, edition.id)
        )
    return page(
        request,
        "edition.html",
        session,
        edition=edition,
        actions=actions_for(edition.status),
        labels=ACTIONS,
        errors=errors,
        uncertain=uncertain,
        kinds=kinds,
        events=events,
        carried=carried,
        done=done if done in ACTIONS or done in ("test-send", "intro") else "",
        intro_editable=edition.status in control.INTRO_EDITABLE,
        duration=views.duration,
        **_edition_details(request, edition),
    )


@router.get("/editions/{week}/live", name="console_edition_live")
def edition_live(
    request: Request, week: str, session: ConsoleSession = Depends(signed_in)
) -> JSONResponse:
    """The edition page's live numbers and chart (polled by console.js)."""
    edition = _edition(request, week)
    details = _edition_details(request, edition)
    return JSONResponse({**details["progress"].as_json(), "chart": str(details["chart"])})


@router.get("/editions/{week}/confirm/{action}", name="console_confirm_action")
def confirm_action(
    request: Request, week: str, action: str, session: ConsoleSession = Depends(signed_in)
) -> Response:
    """The confirmation step of an action (its button posts)."""
    edition = _edition(request, week)
    return confirmation(
        request,
        session,
        ACTIONS,
        action,
        heading=f"{{label}} {edition.week}?",
        status=edition.status,
        allowed=allows,
        base_url=f"/admin/editions/{edition.week}",
        danger="cancel",
    )


# --- preview and test send --------------------------------------------------------------------


@router.get("/editions/{week}/preview", name="console_preview")
def preview(
    request: Request,
    week: str,
    subscriber: str = "",
    categories: Annotated[list[str] | None, Query()] = None,
    sent: str = "",
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """The edition as one reader (or a set of categories) gets it, at 320 and 600 px."""
    rt = rt_of(request)
    edition = _edition(request, week)
    chosen = [c for c in categories or [] if c]
    name, notice = "", ""
    if subscriber.strip():
        with rt.session() as db:
            found = subscribers.get_subscriber_by_email(db, subscriber.strip())
        if found is None:
            notice = f"No subscriber {subscriber.strip()}: showing the categories chosen below."
        else:
            chosen, name = split_categories(found.categories), found.name
    with rt.session() as db:
        known = catalog.list_categories(db)
    shown = control.preview_as(rt, edition.week, join_categories(chosen), name)
    return page(
        request,
        "preview.html",
        session,
        edition=edition,
        preview=shown,
        subscriber=subscriber.strip(),
        chosen=chosen,
        known=known,
        notice=notice,
        sent=sent,
    )


@router.post("/editions/{week}/test-send", name="console_test_send")
def test_send(
    request: Request,
    week: str,
    email: Annotated[str, Form()] = "",
    session: ConsoleSession = Depends(changing),
) -> Response:
    """Send the edition to one address now (``[TEST]`` subject, counted nowhere)."""
    rt = rt_of(request)
    edition = _edition(request, week)
    try:
        address = clean_email(email)
        message_id = control.test_send(rt, address, edition.week, utcnow())
    except InputError as exc:
        raise refusal(request, 422, "Not sent", str(exc)) from None
    except NewsletterError as exc:
        raise refusal(request, 502, "Not sent", str(exc)) from None
    audit(request, session, "edition test-send", edition.week, f"to {address} ({message_id})")
    return RedirectResponse(
        f"/admin/editions/{edition.week}/preview?sent={address}", status_code=303
    )


@router.post("/editions/{week}/intro", name="console_edition_intro")
def edition_intro(
    request: Request,
    week: str,
    intro: Annotated[str, Form()] = "",
    session: ConsoleSession = Depends(changing),
) -> Response:
    """Give a draft or paused edition its own one-line intro."""
    edition = _edition(request, week)
    try:
        text = control.set_intro(rt_of(request), edition.week, intro)
    except InputError as exc:
        raise refusal(request, 422, "Not saved", str(exc)) from None
    except NewsletterError as exc:
        raise refusal(request, 409, "Not saved", str(exc)) from None
    audit(request, session, "edition intro", edition.week, text or "(the configured one)")
    return RedirectResponse(f"/admin/editions/{edition.week}?done=intro", status_code=303)


# Last: "/editions/{week}/{action}" would otherwise take "test-send" or "intro" for an action.
@router.post("/editions/{week}/{action}", name="console_edition_action")
def edition_action(
    request: Request, week: str, action: str, session: ConsoleSession = Depends(changing)
) -> Response:
    """Do an operator action on an edition, if the state machine allows it (409 if not)."""
    if action not in ACTIONS:
        raise refusal(request, 404, "No such action", f"There is no action {action}.")
    rt = rt_of(request)
    edition = _edition(request, week)
    if not allows(action, edition.status):
        raise refusal(
            request,
            409,
            "Not allowed now",
            f"A {edition.status} edition cannot take “{ACTIONS[action][0]}”. Nothing was changed.",
        )
    now = utcnow()
    try:
        if action == "send":
            detail = control.start_send(rt, edition.week, now, actors_of(rt)).message
        elif action == "pause":
            control.pause(rt, edition.week, f"paused by an operator ({session.actor})")
            detail = "paused"
        elif action == "resume":
            detail = f"{control.resume(rt, edition.week, now, actors_of(rt))} re-queued"
        elif action == "cancel":
            detail = f"{control.cancel(rt, edition.week)} deliveries skipped"
        else:
            detail = f"{control.retry_failed(rt, edition.week, now, actors_of(rt))} queued again"
    except NewsletterError as exc:
        raise refusal(request, 409, "Not done", str(exc)) from None
    audit(request, session, f"edition {action}", edition.week, detail)
    return RedirectResponse(f"/admin/editions/{edition.week}?done={action}", status_code=303)
