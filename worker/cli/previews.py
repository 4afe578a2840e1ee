"""``newsletter preview --serve``: a local page with every mail a reader can get (digest,
alert, confirmation, welcome) side by side at 320 and 600 px, with their text parts.

A small threaded HTTP server from the standard library, on the loopback address by default.
Mails are rendered again at each load of the page, so an edited template shows on reload.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from worker.sending.previews import PreviewMail

WIDTHS_PX = (320, 600)


def index_page(mails: list[PreviewMail]) -> str:
    """The page: per mail, its subject, two frames (320 and 600 px) and its text part."""
    rows = []
    for mail in mails:
        frames = "".join(
            f'<figure><figcaption>{w} px</figcaption><iframe src="/mail/{mail.name}.html" '
            f'width="{w}" height="900" title="{html.escape(mail.title)} at {w} px" '
            f'sandbox="allow-popups"></iframe></figure>'
            for w in WIDTHS_PX
        )
        rows.append(
            f'<section id="{mail.name}"><h2>{html.escape(mail.title)}</h2>'
            f"<p class=subject>Subject: <b>{html.escape(mail.subject)}</b></p>"
            f'<div class=row>{frames}<figure><figcaption>text part · <a href="/mail/'
            f'{mail.name}.txt">raw</a></figcaption><pre>{html.escape(mail.text)}</pre>'
            f"</figure></div></section>"
        )
    nav = " · ".join(f'<a href="#{m.name}">{html.escape(m.title)}</a>' for m in mails)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Mail previews — Weekly AI Tool Verdicts</title><style>"
        "body{font:15px/1.4 system-ui,sans-serif;margin:1rem;background:#e5e7eb;color:#111827}"
        ".row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}"
        "figure{margin:0}figcaption{font-size:13px;color:#4b5563;margin-bottom:.25rem}"
        "iframe{border:1px solid #9ca3af;background:#fff}"
        "pre{width:74ch;max-height:900px;overflow:auto;background:#fff;padding:.5rem;"
        "border:1px solid #9ca3af;margin:0;font-size:12px}"
        "section{margin:0 0 2rem}h2{margin:.5rem 0}.subject{margin:.25rem 0 .75rem}"
        f"</style></head><body><h1>Mail previews</h1><p>{nav}</p>{''.join(rows)}</body></html>"
    )


def make_server(
    host: str, port: int, render: Callable[[], list[PreviewMail]]
) -> ThreadingHTTPServer:
    """A server answering ``/`` (the page) and ``/mail/<name>.html|.txt`` (one part)."""
    latest: dict[str, PreviewMail] = {}
    lock = threading.Lock()

    def current(refresh: bool) -> dict[str, PreviewMail]:
        with lock:
            if refresh or not latest:
                latest.clear()
                latest.update({m.name: m for m in render()})
            return dict(latest)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            path = self.path.split("?", 1)[0]
            try:
                if path == "/":
                    mails = current(refresh=True)
                    self._answer(200, "text/html", index_page(list(mails.values())))
                    return
                name, _, part = path.removeprefix("/mail/").rpartition(".")
                mail = current(refresh=False).get(name) if path.startswith("/mail/") else None
                if mail is None or part not in ("html", "txt"):
                    self._answer(404, "text/plain", "not found\n")
                    return
                if part == "html":
                    self._answer(200, "text/html", mail.html)
                else:
                    self._answer(200, "text/plain", mail.text)
            except Exception as exc:  # shown on the page: the operator is looking at it
                self._answer(500, "text/plain", f"could not render the mails: {exc}\n")

        def _answer(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the terminal shows the URL and nothing else

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
