"""The public archive: ``/editions`` (every digest and alert that went out, newest first),
``/editions/{key}`` (one as a reader saw it, without anything personal), ``/sitemap.xml``.

Public and cacheable: ``Cache-Control: public``, an ETag and Last-Modified, and 304 answers
to conditional requests. An unknown key is the site's HTML 404 page.
"""

from __future__ import annotations

import math
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from worker.runtime import Runtime
from worker.sending import archive
from worker.web.deps import runtime
from worker.web.pages import page

router = APIRouter(tags=["archive"])
RT = Annotated[Runtime, Depends(runtime)]

PAGE_CACHE = "public, max-age=300"
LIST_CACHE = "public, max-age=60"
SITEMAP_MAX = 50_000  # sitemaps.org: URLs per file
# A web version is the mail's own HTML: inline styles, no script, links out.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'"


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def _not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.1: If-None-Match decides when present; else If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return last_modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _cached(
    request: Request, response: Response, etag: str, last_modified: datetime, policy: str
) -> Response:
    headers = {
        "Cache-Control": policy,
        "ETag": etag,
        "Last-Modified": _http_date(last_modified),
        "X-Content-Type-Options": "nosniff",
    }
    if _not_modified(request, etag, last_modified):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


@router.get("/editions", response_class=HTMLResponse)
def editions(
    request: Request, rt: RT, page_number: Annotated[int, Query(alias="page", ge=1)] = 1
) -> Response:
    """Every digest and instant alert that went out, newest first (50 a page: ``?page=``)."""
    entries, total = archive.list_archive(rt, page_number)
    pages = max(1, math.ceil(total / archive.ARCHIVE_PAGE_SIZE))
    newest = max((e.updated for e in entries), default=None)
    response = page(
        request,
        "archive.html",
        entries=entries,
        total=total,
        page_number=page_number,
        pages=pages,
    )
    if newest is None:
        response.headers["Cache-Control"] = LIST_CACHE
        return response
    etag = f'"{total}-{page_number}-{int(newest.timestamp())}"'
    return _cached(request, response, etag, newest, LIST_CACHE)


@router.get("/editions/{key}", response_class=HTMLResponse)
def edition(key: str, request: Request, rt: RT) -> Response:
    """An edition (``2026-W48``) or an alert (``A12``) as a reader saw it, minus anything
    personal: no greeting, no unsubscribe or preferences link, no tracking."""
    version = archive.web_version(rt, key) if len(key) <= 10 else None
    if version is None:
        return page(
            request,
            "error.html",
            404,
            heading="No such edition",
            text=f"We have no edition called {key[:40]}. Every one we sent is in the archive.",
        )
    response = HTMLResponse(version.html, headers={"Content-Security-Policy": _CSP})
    return _cached(request, response, version.etag, version.last_modified, PAGE_CACHE)


@router.get("/sitemap.xml")
def sitemap(request: Request, rt: RT) -> Response:
    """The archive for search engines (sitemaps.org 0.9)."""
    base = rt.settings.public_url
    entries, _total = archive.list_archive(rt, 1, SITEMAP_MAX)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
        f"<url><loc>{escape(base)}/editions</loc></url>",
    ]
    for entry in entries:
        lines.append(
            f"<url><loc>{escape(base)}/editions/{escape(entry.key)}</loc>"
            f"<lastmod>{entry.updated.date().isoformat()}</lastmod></url>"
        )
    lines.append("</urlset>")
    return Response(
        "\n".join(lines) + "\n", media_type="application/xml", headers={"Cache-Control": LIST_CACHE}
    )
