"""What a worker process remembers of editions between deliveries: what each carries, its
status (for at most a second, so a pause takes effect that fast), and its compiled mail per set
of comparisons (rendered once per process)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from worker.catalog import queries as catalog
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.message import PreparedMail, prepare
from worker.sending.planning import Candidate, category_key, pick_for
from worker.subscribers.rules import split_categories

MAIL_CACHE_SIZE = 256
EDITION_INFO_TTL_S = 1.0
"""How stale a worker's view of an edition's status may be: a pause takes effect this fast."""


MailKey = tuple[str, tuple[int, ...], bool, str]


class EditionCache:
    """One process's memory of editions (see the module docstring)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        # (week, comparison ids, alert for a reader who follows all, intro) -> compiled mail
        self._mails: OrderedDict[MailKey, PreparedMail] = OrderedDict()
        self._editions: dict[int, tuple[float, sending.EditionInfo]] = {}
        self._planned: dict[int, list[Candidate]] = {}

    def planned(self, edition_id: int) -> list[Candidate]:
        """The comparisons an edition carries, as candidates, newest first."""
        with self._lock:
            cached = self._planned.get(edition_id)
        if cached is not None:
            return cached
        with self.rt.session() as session:
            ids = sending.list_edition_comparison_ids(session, edition_id)
            views = catalog.get_comparison_views(session, ids)
        planned = [Candidate(v.id, v.category, v.published_at) for v in views]
        with self._lock:
            self._planned[edition_id] = planned
        return planned

    def picks_for(self, edition_id: int, categories: str) -> tuple[int, ...]:
        """Ids of the comparisons of an edition that a subscriber with ``categories`` gets."""
        return pick_for(category_key(split_categories(categories)), self.planned(edition_id))

    def edition_info(self, edition_id: int) -> sending.EditionInfo:
        """Week, kind and status of an edition, re-read at most once a second."""
        now = time.monotonic()
        cached = self._editions.get(edition_id)
        if cached is not None and now - cached[0] < EDITION_INFO_TTL_S:
            return cached[1]
        with self.rt.engine.connect() as conn:
            info = sending.get_edition_info(conn, edition_id)
        self._editions[edition_id] = (now, info)
        return info

    def forget_edition(self, edition_id: int) -> None:
        """Drop the remembered status of an edition (this process just changed it)."""
        self._editions.pop(edition_id, None)

    def mail_for(
        self,
        week: str,
        comparison_ids: tuple[int, ...],
        kind: str = "digest",
        follows_all: bool = False,
        intro: str = "",
    ) -> PreparedMail:
        """The compiled mail for this set of comparisons, rendered once per process; an alert
        is worded for a reader who follows every category when ``follows_all``; a digest
        carries the edition's own ``intro`` when it has one, else the configured one."""
        cache_key = (week, comparison_ids, follows_all and kind == "alert", intro)
        with self._lock:
            mail = self._mails.get(cache_key)
            if mail is not None:
                self._mails.move_to_end(cache_key)
                return mail
        with self.rt.session() as session:
            views = catalog.get_comparison_views(session, comparison_ids)
        if kind == "alert":
            mail = prepare(self.rt.renderer.render_alert(views, key=week, follows_all=follows_all))
        else:
            mail = prepare(self.rt.renderer.render_digest(week, views, intro or None))
        with self._lock:
            self._mails[cache_key] = mail
            while len(self._mails) > MAIL_CACHE_SIZE:
                self._mails.popitem(last=False)
        return mail


def editions_of(rt: Runtime) -> EditionCache:
    """The process's edition cache."""
    return rt.kept("sending.editions", lambda: EditionCache(rt))
