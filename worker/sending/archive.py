"""The public archive: every digest and alert that went out, and its web version.

A web version is the mail as a reader saw it, rendered again from the store with no greeting,
no personal link (no unsubscribe or preferences token) and nothing that tracks: the same
template, compiled in its ``web`` mode, so it has no slot for anything personal. Pages are
kept for a minute per process; their ETag is the hash of the page, so a changed comparison
shows at the next fetch after that.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.catalog import queries as catalog
from worker.models import Edition, EditionKind
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.digest import count
from worker.sending.planning import parse_week

PAGE_TTL_S = 60.0
ARCHIVE_PAGE_SIZE = 50


@dataclass(frozen=True)
class WebVersion:
    """One edition's web version and what caches need to know about it."""

    key: str
    kind: str
    subject: str
    html: str
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ArchiveEntry:
    """One line of the archive."""

    key: str
    kind: str
    subject: str
    label: str
    """"Week 48, 2026" or "Alert"; with how many comparisons it carried."""
    sent_on: datetime
    updated: datetime


def _aware(value: datetime) -> datetime:
    # SQLite hands times back naive; every time we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def updated_at(edition: Edition) -> datetime:
    """When the edition last changed for a reader: sending started, or it finished."""
    moments = [m for m in (edition.started_at, edition.finished_at, edition.created_at) if m]
    return max(_aware(m) for m in moments)


def _label(edition: Edition, comparisons: int) -> str:
    carried = count(comparisons, "comparison")
    if edition.kind == EditionKind.alert.value:
        return f"Instant alert · {carried}"
    year, week = parse_week(edition.week)
    return f"Week {week}, {year} · {carried}"


def list_archive(
    rt: Runtime, page: int = 1, size: int = ARCHIVE_PAGE_SIZE
) -> tuple[list[ArchiveEntry], int]:
    """One page of the archive, newest first, and how many editions it has in all."""
    offset = (max(page, 1) - 1) * size
    with rt.session() as session:
        editions = sending.list_public_editions(session, size, offset)
        total = sending.count_public_editions(session)
        counts = sending.count_edition_comparisons(
            session, [e.id for e in editions if e.id is not None]
        )
    entries = [
        ArchiveEntry(
            key=e.week,
            kind=e.kind,
            subject=e.subject,
            label=_label(e, counts.get(e.id or 0, 0)),
            sent_on=_aware(e.started_at or e.created_at),
            updated=updated_at(e),
        )
        for e in editions
    ]
    return entries, total


class _Pages:
    """Web versions this process rendered lately (an MJML compile per request would be slow)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pages: dict[str, tuple[float, WebVersion | None]] = {}


def web_version(rt: Runtime, key: str) -> WebVersion | None:
    """The web version of the edition keyed ``key``; None when no such edition went out."""
    pages = rt.kept("sending.archive", _Pages)
    now = time.monotonic()
    with pages.lock:
        cached = pages.pages.get(key)
    if cached is not None and now - cached[0] < PAGE_TTL_S:
        return cached[1]
    version = _render(rt, key)
    with pages.lock:
        if len(pages.pages) > 500:
            pages.pages.clear()
        pages.pages[key] = (now, version)
    return version


def _render(rt: Runtime, key: str) -> WebVersion | None:
    with rt.session() as session:
        edition = sending.get_public_edition(session, key)
        if edition is None or edition.id is None:
            return None
        ids = sending.list_edition_comparison_ids(session, edition.id)
        views = catalog.get_comparison_views(session, ids)
    if not views:
        return None
    if edition.kind == EditionKind.alert.value:
        mail = rt.renderer.render_alert(views, key=edition.week, web=True)
    else:
        mail = rt.renderer.render_digest(edition.week, views, edition.intro or None, web=True)
    html = mail.html.fill({}, escape=True)
    digest = hashlib.sha256(html.encode()).hexdigest()[:32]
    return WebVersion(
        key=edition.week,
        kind=edition.kind,
        subject=edition.subject or mail.subject,
        html=html,
        etag=f'"{digest}"',
        last_modified=updated_at(edition),
    )
