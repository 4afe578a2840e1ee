"""Every mail a reader can get, rendered for a look before anyone gets it: the week's digest, an
instant alert, the confirmation and the welcome mail, each as HTML and plain text.

The personal links are the sample ones (``/unsubscribe/preview``), which open a page saying
the mail was a test; the reader is a sample one, stored nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.catalog import queries as catalog
from worker.errors import NotFound
from worker.models import Subscriber, SubscriberStatus
from worker.runtime import Runtime
from worker.sending import control, transactional
from worker.sending import queries as sending
from worker.sending.planning import alert_key
from worker.sending.render import RenderedMail, sample_values
from worker.subscribers import service as readers

ALERT_SAMPLE = 3
"""Comparisons in the sample alert: a batch, as when several are published together."""


@dataclass(frozen=True)
class PreviewMail:
    """One mail as a reader would get it."""

    name: str
    title: str
    subject: str
    html: str
    text: str


def _filled(name: str, title: str, mail: RenderedMail, values: dict[str, str]) -> PreviewMail:
    return PreviewMail(
        name=name,
        title=title,
        subject=mail.subject,
        html=mail.html.fill(values, escape=True),
        text=mail.text.fill(values, escape=False),
    )


def sample_reader() -> Subscriber:
    """A reader for previews, stored nowhere."""
    return Subscriber(
        email="reader@example.com",
        email_key="reader@example.com",
        token="preview",
        name="Reader",
        status=SubscriberStatus.active.value,
    )


def preview_mails(rt: Runtime, week: str, now: datetime) -> list[PreviewMail]:
    """The digest of ``week``, an alert, the confirmation and the welcome mail."""
    with rt.session() as session:
        edition = sending.get_edition(session, week)
        if edition is not None and edition.id is not None:
            ids = sending.list_edition_comparison_ids(session, edition.id)
        else:
            ids = control.plan(rt, week, now)
        views = catalog.get_comparison_views(session, ids)
    if not views:
        raise NotFound(f"nothing to preview for {week}: no comparisons in that week")
    values = sample_values(rt.settings.public_url)
    intro = edition.intro or None if edition is not None else None
    batch = views[:ALERT_SAMPLE]
    reader = sample_reader()
    mails = [
        _filled(
            "digest",
            f"Weekly digest, {week}",
            rt.renderer.render_digest(week, views, intro),
            values,
        ),
        _filled(
            "alert",
            "Instant alert",
            rt.renderer.render_alert(batch, key=alert_key(batch[-1].id), follows_all=True),
            values,
        ),
    ]
    for kind, title in ((readers.MAIL_CONFIRM, "Confirmation"), (readers.MAIL_WELCOME, "Welcome")):
        mail, personal = transactional.render(rt, kind, reader)
        mails.append(_filled(kind, title, mail, {**personal, **values}))
    return mails
