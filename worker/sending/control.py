"""What operators do with editions: create, send (or send again), pause, resume, cancel, retry
the failed, count, preview and test-send. The CLI, the operator API and the scheduler call these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from worker.bounces import queries as bounces
from worker.bounces.rates import BounceRates, bounce_rates
from worker.catalog import queries as catalog
from worker.dispatch import Dispatch
from worker.errors import (
    Conflict,
    InputError,
    NotFound,
)
from worker.models import (
    Edition,
    EditionStatus,
    utcnow,
)
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.caches import editions_of
from worker.sending.delivery import check_can_mail_readers
from worker.sending.digest import count as plural
from worker.sending.message import Recipient, build_message, test_message_id
from worker.sending.pipeline import finish_if_done, pause_edition, recover, refill, reset_guard
from worker.sending.planning import (
    parse_week,
    plan_edition,
    week_bounds,
    week_of,
)
from worker.sending.render import sample_values
from worker.sending.states import ACTIONS, allows, from_statuses
from worker.subscribers import queries as subscribers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditionStatusView:
    """What ``status --json`` and ``GET /api/editions/{week}`` show."""

    week: str
    status: str
    total: int
    queued: int
    sending: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    comparisons: int
    bounces: dict[str, int]
    uncertain: int = 0
    """Sends whose final reply never came (the server may have taken them; SPEC §6)."""
    pause_reason: str | None = None
    """Why a paused edition is paused: an operator, or the guard rail and its numbers."""

    def as_json(self) -> dict[str, Any]:
        """The fields of ``status --json`` (SPEC §4), in its order, then the extra counters."""
        return {
            "week": self.week,
            "status": self.status,
            "total": self.total,
            "queued": self.queued,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "bounced": self.bounced,
            "skipped": self.skipped,
            "uncertain": self.uncertain,
            "pause_reason": self.pause_reason,
            "bounce_rate": round(self.rates.hard_rate, 6),
            "complaint_rate": round(self.rates.complaint_rate, 6),
            "warnings": self.rates.warnings,
        }

    @property
    def rates(self) -> BounceRates:
        """Hard-bounce and complaint rates, and the warnings they call for."""
        return bounce_rates(self.sent, self.bounced, self.failed, self.bounces)

    @property
    def done(self) -> int:
        """Deliveries that reached a final status."""
        return self.sent + self.failed + self.bounced + self.skipped


def resolve_week(rt: Runtime, week: str | None, now: datetime | None = None) -> str:
    """The week asked for, validated, or the current one in the configured time zone."""
    if week is None:
        return week_of(now or utcnow(), rt.settings.tz)
    parse_week(week)
    return week.strip()


def plan(rt: Runtime, week: str, now: datetime) -> list[int]:
    """Ids of the comparisons the edition of ``week`` would carry (SPEC §3)."""
    start, end = week_bounds(week, rt.settings.tz)
    with rt.session() as session:
        existing = sending.get_edition(session, week)
        candidates = catalog.list_candidates(session, end - timedelta(days=14), end)
        carried = catalog.list_carried_ids(session, existing.id if existing else None)
    chosen = plan_edition(week, rt.settings.tz, now, candidates, carried, rt.settings.digest_max)
    return [c.id for c in chosen]


def preview_html(
    rt: Runtime, week: str, comparison_ids: list[int], intro: str = ""
) -> tuple[str, str]:
    """Subject and HTML of the full digest (every comparison), with sample slot values;
    ``intro`` is the edition's own ("": the configured one)."""
    with rt.session() as session:
        views = catalog.get_comparison_views(session, comparison_ids)
    mail = rt.renderer.render_digest(week, views, intro or None)
    return mail.subject, mail.html.fill(sample_values(rt.settings.public_url), escape=True)


def ensure_edition(rt: Runtime, week: str, now: datetime) -> tuple[Edition | None, bool]:
    """The edition of ``week``, created (as a draft) when it does not exist and has content.

    Returns (None, False) for a week with nothing to carry.
    """
    with rt.session() as session:
        existing = sending.get_edition(session, week)
    if existing is not None:
        return existing, False
    ids = plan(rt, week, now)
    if not ids:
        return None, False
    subject, html = preview_html(rt, week, ids)
    return sending.create_edition(rt.engine, week, ids, subject, html)


def get_edition(rt: Runtime, week: str) -> Edition:
    """The edition of ``week``; NotFound when there is none."""
    with rt.session() as session:
        edition = sending.get_edition(session, week)
    if edition is None:
        raise NotFound(f"no edition for {week}")
    return edition


def check_allowed(edition: Edition, action: str) -> None:
    """Conflict when the state machine forbids ``action`` on the edition (asking for the
    status it already has is allowed: pausing a paused edition changes nothing)."""
    if allows(action, edition.status) or edition.status == ACTIONS[action].to.value:
        return
    done = {"send": "sent", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}
    raise Conflict(
        f"the {edition.week} edition is {edition.status}: it cannot be "
        + done.get(action, "retried")
    )


@dataclass(frozen=True)
class SendOutcome:
    """What ``send`` did for a week."""

    week: str
    edition: Edition | None
    created: bool
    started: bool
    requeued: int
    message: str


def start_send(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> SendOutcome:
    """Create the week's edition if needed and start (or restart) sending it.

    Sending a week again re-queues what the database says is owed and sends nothing twice.
    """
    check_can_mail_readers(rt.settings)
    edition, created = ensure_edition(rt, week, now)
    if edition is None:
        return SendOutcome(
            week,
            None,
            False,
            False,
            0,
            f"nothing to send for {week}: no new comparisons in that week",
        )
    assert edition.id is not None
    if edition.status == EditionStatus.cancelled.value:
        return SendOutcome(week, edition, created, False, 0, f"the {week} edition was cancelled")
    if edition.status == EditionStatus.paused.value:
        raise Conflict(
            f"the {week} edition is paused; `newsletter resume --week {week}` sends the rest"
        )
    with rt.session() as session, session.begin():
        started = sending.mark_edition_status(
            session, edition.id, EditionStatus.sending, from_statuses("send")
        )
    requeued = 0
    if started or edition.status == EditionStatus.sending.value:
        dispatch.start_fan_out(edition.id)
        if not created:
            requeued = recover(rt, edition.id, now, dispatch)
    with rt.session() as session:
        edition = sending.get_edition(session, week) or edition
    verb = "sending" if started else f"already {edition.status}"
    return SendOutcome(
        week,
        edition,
        created,
        started,
        requeued,
        f"{week}: {verb}"
        + (f", {plural(requeued, 'delivery', 'deliveries')} re-queued" if requeued else ""),
    )


def pause(rt: Runtime, week: str, reason: str = "paused by an operator") -> bool:
    """Stop handing out deliveries; jobs already queued put their delivery back."""
    edition = get_edition(rt, week)
    check_allowed(edition, "pause")
    return pause_edition(rt, edition.id or 0, reason)


def resume(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> int:
    """Sending again, handing whatever the database says is owed (and no job carries) to new
    jobs; returns how many. Resuming twice enqueues nothing twice."""
    edition = get_edition(rt, week)
    assert edition.id is not None
    check_allowed(edition, "resume")
    with rt.session() as session, session.begin():
        sending.mark_edition_status(
            session, edition.id, EditionStatus.sending, from_statuses("resume")
        )
    editions_of(rt).forget_edition(edition.id)
    reset_guard(rt, edition.id)
    # Fan-out is idempotent: it resumes an unfinished one, and either way it (re)starts the
    # refill chain that marks the edition sent once nothing is owed.
    dispatch.start_fan_out(edition.id)
    requeued = recover(rt, edition.id, now, dispatch)
    finish_if_done(rt, edition.id)
    return requeued


def cancel(rt: Runtime, week: str) -> int:
    """Cancel an edition: nothing more is sent; returns how many deliveries were skipped."""
    edition = get_edition(rt, week)
    check_allowed(edition, "cancel")
    editions_of(rt).forget_edition(edition.id or 0)
    with rt.session() as session, session.begin():
        sending.mark_edition_status(
            session, edition.id or 0, EditionStatus.cancelled, from_statuses("cancel")
        )
        return sending.skip_owed(session, edition.id or 0, "the edition was cancelled")


def retry_failed(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> int:
    """Give failed deliveries another round of attempts; returns how many.

    The edition goes back to `sending` first, in the same transaction: that takes its row
    lock, so the check that marks an edition sent waits for this one and sees its rows.
    """
    edition = get_edition(rt, week)
    assert edition.id is not None
    check_allowed(edition, "retry")
    with rt.session() as session, session.begin():
        sending.lock_edition(session, edition.id)
        sending.mark_edition_status(
            session, edition.id, EditionStatus.sending, from_statuses("retry")
        )
        count = sending.requeue_failed(session, edition.id)
    editions_of(rt).forget_edition(edition.id)
    refill(rt, edition.id, now, dispatch)
    dispatch.start_refill(edition.id)  # marks the edition sent again once nothing is owed
    if not count:
        finish_if_done(rt, edition.id)
    return count


def status(rt: Runtime, week: str) -> EditionStatusView:
    """Counters of an edition, from the delivery rows (the truth)."""
    edition = get_edition(rt, week)
    assert edition.id is not None
    with rt.session() as session:
        counts = sending.count_deliveries(session, edition.id)
        by_kind = bounces.count_bounce_kinds(session, edition.id)
        carried = len(sending.list_edition_comparison_ids(session, edition.id))
        uncertain = sending.count_uncertain(session, edition.id)
    return EditionStatusView(
        week=edition.week,
        status=edition.status,
        total=sum(counts.values()),
        comparisons=carried,
        bounces=by_kind,
        uncertain=uncertain,
        pause_reason=edition.pause_reason if edition.status == EditionStatus.paused.value else None,
        **counts,
    )


INTRO_MAX = 500
INTRO_EDITABLE = (EditionStatus.draft.value, EditionStatus.paused.value)
"""An intro changes only before the first mail or while paused: every reader of an edition
reads the same one."""


def clean_intro(intro: str) -> str:
    """The editor's line as stored: one line, trimmed, at most INTRO_MAX characters
    (InputError naming what is wrong otherwise); "" means the NEWSLETTER_EDITION_INTRO default."""
    text = " ".join(intro.split())
    if any(ch in intro for ch in "\r\n"):
        raise InputError("intro: one line only")
    if len(text) > INTRO_MAX:
        raise InputError(f"intro: at most {INTRO_MAX} characters ({len(text)} given)")
    return text


def set_intro(rt: Runtime, week: str, intro: str) -> str:
    """Give an edition its own one-line intro (draft or paused only: Conflict otherwise)."""
    text = clean_intro(intro)
    edition = get_edition(rt, week)
    assert edition.id is not None
    html = edition.html
    if edition.kind != "alert":
        ids = [c.id for c in editions_of(rt).planned(edition.id)]
        _subject, html = preview_html(rt, edition.week, ids, text)
    with rt.session() as session, session.begin():
        changed = sending.mark_edition_intro(session, edition.id, text, html, INTRO_EDITABLE)
    if not changed:
        raise Conflict(
            f"the {edition.week} edition is {edition.status}: its intro can change only while"
            " it is a draft or paused"
        )
    editions_of(rt).forget_edition(edition.id or 0)
    return text


def test_send(rt: Runtime, email: str, week: str, now: datetime) -> str:
    """Send the week's digest to one address now: no delivery row, ``[TEST]`` subject."""
    edition, _ = ensure_edition(rt, week, now)
    if edition is None or edition.id is None:
        raise NotFound(f"nothing to send for {week}: no comparisons in that week")
    ids = [c.id for c in editions_of(rt).planned(edition.id)]
    mail = editions_of(rt).mail_for(week, tuple(ids), edition.kind, intro=edition.intro)
    values = sample_values(rt.settings.public_url)
    with rt.session() as session:
        known = subscribers.get_subscriber_by_email(session, email)
    # Greet a subscriber by name; the links stay the sample ones, which open a page saying
    # that this was a test (a test send must unsubscribe nobody).
    values["name"] = known.name if known else ""
    message_id = test_message_id(rt.settings.mail_domain)
    data = build_message(
        mail,
        Recipient(email, values["name"], values["unsubscribe_url"], values["preferences_url"]),
        rt.identity,
        message_id,
        now,
        subject_prefix="[TEST] ",
        extra_headers={
            "X-Newsletter-Test": "yes",
            "Feedback-ID": rt.identity.feedback_id(week, "test"),
        },
    )
    rt.transport.send(rt.settings.bounce_address, email, data)
    return message_id


@dataclass(frozen=True)
class Preview:
    """An edition as one reader gets it: the comparisons their categories pick, both parts."""

    subject: str
    html: str
    text: str
    picked: int
    carried: int


def preview_as(rt: Runtime, week: str, categories: str, name: str = "") -> Preview:
    """The edition of ``week`` as a reader with ``categories`` (stored form; empty: all) and
    ``name`` would get it, with sample links in place of their personal ones."""
    edition = get_edition(rt, week)
    assert edition.id is not None
    cache = editions_of(rt)
    picks = cache.picks_for(edition.id, categories)
    carried = len(cache.planned(edition.id))
    if not picks:
        return Preview(edition.subject, "", "", 0, carried)
    with rt.session() as session:
        views = catalog.get_comparison_views(session, picks)
    if edition.kind == "alert":
        mail = rt.renderer.render_alert(views, key=edition.week)
    else:
        mail = rt.renderer.render_digest(edition.week, views, edition.intro or None)
    values = {**sample_values(rt.settings.public_url), "name": name, "greeting_name": name}
    if not name:
        values["greeting_name"] = "there"
    return Preview(
        mail.subject,
        mail.html.fill(values, escape=True),
        mail.text.fill(values, escape=False),
        len(picks),
        carried,
    )
