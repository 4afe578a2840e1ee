"""Setting up and running: ``init``, ``worker``, ``web``, ``scheduler``, ``up`` and ``demo``."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.table import Table

from worker.actors import actors_of
from worker.catalog import queries as catalog
from worker.cli.app import app, cli_runtime, err, setup_logging
from worker.cli.output import wait_for
from worker.config import Settings, load_settings
from worker.db import make_engine, migrate
from worker.models import EditionStatus, utcnow
from worker.runtime import open_runtime
from worker.sending import control
from worker.subscribers import queries as subscribers

DEMO_POSTAL_ADDRESS = "Weekly AI Tool Verdicts (demo), 1 Example Street, 75001 Paris, France"


@app.command()
def init() -> None:
    """Create the data dir and apply database migrations (safe to run again)."""
    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    err.print(f"database ready: {_safe_url(settings.resolved_database_url)}")
    err.print(f"data dir: {settings.data_dir.resolve()}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command("worker")
def worker_command(
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (default NEWSLETTER_WORKER_THREADS).")
    ] = None,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run a worker: deliver jobs, retry, and sweep for lost work, until Ctrl-C."""
    from worker import supervisor

    settings = load_settings()
    setup_logging(settings)
    if processes > 1:
        rt = open_runtime(settings)
        rt.redis.ping()  # start the embedded server before the children look for it
        args = ["worker"] + (["--threads", str(threads)] if threads else [])
        children = {f"worker-{i}": supervisor.spawn(args) for i in range(processes)}
        raise typer.Exit(supervisor.supervise(children))
    rt = open_runtime(settings)
    rt.redis.ping()
    supervisor.run_worker(rt, threads)
    rt.close()


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the reader pages, the operator API and the webhooks over HTTP."""
    import uvicorn

    from worker.web import create_app

    settings = load_settings()
    setup_logging(settings)
    _warn_links_elsewhere(settings, host, port)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )


@app.command()
def scheduler() -> None:
    """Run the weekly schedule (NEWSLETTER_WEEKLY_CRON) until Ctrl-C."""
    import scheduler as scheduler_module

    settings = load_settings()
    setup_logging(settings)
    scheduler_module.run(settings)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Web interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Web port.")] = 8000,
) -> None:
    """Run web, worker and scheduler together on this machine; Ctrl-C stops them all."""
    from worker import supervisor

    settings = load_settings()
    setup_logging(settings)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    rt = open_runtime(settings)
    rt.redis.ping()  # the embedded Redis lives at least as long as this process
    _warn_plain_http(settings)
    _warn_links_elsewhere(settings, host, port)
    err.print(f"web: http://{host}:{port}  (reader form: {settings.public_url}/subscribe)")
    err.print(f"operator token: {settings.operator_token}")
    children = {
        "web": supervisor.spawn(["web", "--host", host, "--port", str(port)]),
        "worker": supervisor.spawn(["worker"]),
        "scheduler": supervisor.spawn(["scheduler"]),
    }
    code = supervisor.supervise(children)
    rt.close()
    raise typer.Exit(code)


def _warn_plain_http(settings: Settings) -> None:
    if settings.smtp_url and not settings.public_url.startswith("https://"):
        err.print(
            "[yellow]warning:[/] NEWSLETTER_PUBLIC_URL is not https while mail goes to a "
            "real SMTP server: unsubscribe links must be https in production"
        )


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})


def links_elsewhere(public_url: str, host: str, port: int) -> str | None:
    """Why links in mail would miss this server: the public URL names this machine (or the
    interface we listen on) but another port. A public URL on another host is taken to be a
    proxy in front of us, and says nothing about our port."""
    parsed = urlsplit(public_url)
    try:
        public_port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    if (parsed.hostname or "") not in LOCAL_HOSTS | {host} or public_port == port:
        return None
    return (
        f"NEWSLETTER_PUBLIC_URL is {public_url}, but the web listens on port {port}: links in"
        f" mail (confirm, unsubscribe, preferences) will point elsewhere; set"
        f" NEWSLETTER_PUBLIC_URL={parsed.scheme}://{parsed.hostname}:{port} or use --port"
        f" {public_port}"
    )


def _warn_links_elsewhere(settings: Settings, host: str, port: int) -> None:
    problem = links_elsewhere(settings.public_url, host, port)
    if problem:
        err.print(f"[yellow]warning:[/] {problem}")


@app.command()
def demo(
    how_many: Annotated[int, typer.Option("--subscribers", help="How many demo subscribers.")] = 25,
) -> None:
    """Run the whole pipeline on the embedded defaults and show what was sent."""
    from worker import supervisor
    from worker.catalog.service import import_comparisons
    from worker.demo import dated_samples, demo_subscribers

    settings = load_settings()
    if settings.smtp_url and not settings.postal_address:
        # Mail to an SMTP server carries a postal address in its footer; the demo's is a sample.
        os.environ["NEWSLETTER_POSTAL_ADDRESS"] = DEMO_POSTAL_ADDRESS
        err.print(f"postal address (a sample, for the demo): {DEMO_POSTAL_ADDRESS}")
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    now = utcnow()
    with cli_runtime() as rt:
        records = dated_samples(now, settings.tz)
        report = import_comparisons(rt.engine, json.dumps(records))
        err.print(f"comparisons: {report.created} created, {report.updated} updated")
        with rt.session() as session, session.begin():
            categories = catalog.list_categories(session)
            counts = subscribers.merge_subscribers(
                session, demo_subscribers(categories, how_many), True, "demo"
            )
        err.print(f"subscribers: {counts.added} added, {counts.updated + counts.unchanged} known")
        week = control.resolve_week(rt, None, now)
        started = time.monotonic()
        with supervisor.running_worker(rt, threads=4) as (actors, _worker):
            outcome = control.start_send(rt, week, now, actors_of(rt))
            if outcome.edition is not None and outcome.edition.status in (
                EditionStatus.sent.value,
                EditionStatus.cancelled.value,
            ):
                err.print(f"{week}: already {outcome.edition.status}, nothing to do")
                return
            err.print(outcome.message)
            if outcome.edition is None:
                return
            view = wait_for(rt, week, timeout_s=120)
        elapsed = time.monotonic() - started
        print_summary(view, elapsed)
        err.print(
            f"outbox: {settings.outbox_dir.resolve()}"
            if not settings.smtp_url
            else f"sent through {settings.smtp_url}"
        )


def print_summary(view: control.EditionStatusView, elapsed_s: float) -> None:
    table = Table(title=f"Edition {view.week}: {view.status} in {elapsed_s:.1f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    for field in ("comparisons", "total", "sent", "skipped", "failed", "bounced", "queued"):
        table.add_row(field, str(getattr(view, field)))
    err.print(table)
