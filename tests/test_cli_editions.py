"""The edition commands as an operator runs them (real processes, the real database):
``editions list``, ``status --json`` with its rates, ``status --follow``, pause, resume, cancel
and retry on the current week, the delivered rate, the backoff note, the port warning."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest

from tests.conftest import SmtpHandler, free_port, wait_until
from tests.factories import comparison, load, send, subscribe
from worker.cli.output import DeliveredRate, _waiting_on_backoff, rate_text, wait_for
from worker.cli.setup import links_elsewhere
from worker.errors import NewsletterError
from worker.models import utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control
from worker.sending import queries as sending
from worker.sending.planning import week_of


def run(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def this_week() -> str:
    return week_of(utcnow(), UTC)


def draft(rt: Runtime, back_weeks: int = 0, slug: str = "duel") -> str:
    """A draft edition ``back_weeks`` ago; returns its week."""
    moment = utcnow() - timedelta(weeks=back_weeks)
    load(rt, comparison(f"{slug}-{back_weeks}", "Writing", moment - timedelta(minutes=5)))
    week = week_of(moment, UTC)
    edition, created = control.ensure_edition(rt, week, moment)
    assert edition is not None and created
    return week


def edition_status(rt: Runtime, week: str) -> str:
    with rt.session() as session:
        edition = sending.get_edition(session, week)
    assert edition is not None
    return edition.status


def test_editions_list_shows_every_edition_newest_first(rt: Runtime, env: dict[str, str]) -> None:
    older, newer = draft(rt, 1), draft(rt, 0)
    result = run(env, "editions", "list")
    assert result.returncode == 0, result.stderr
    assert "Editions, newest first" in result.stdout
    assert result.stdout.index(newer) < result.stdout.index(older)
    lines = run(env, "editions", "list", "--json").stdout.splitlines()
    listed = [json.loads(line) for line in lines]
    assert [(e["week"], e["kind"], e["status"]) for e in listed] == [
        (newer, "digest", "draft"),
        (older, "digest", "draft"),
    ]
    assert run(env, "editions", "list", "--limit", "1", "--json").stdout.count("\n") == 1


def test_editions_list_on_an_empty_database(rt: Runtime, env: dict[str, str]) -> None:
    result = run(env, "editions", "list")
    assert result.returncode == 0 and result.stdout == ""
    assert "no editions yet" in result.stderr


def test_status_json_carries_the_rates_the_table_warns_about(
    rt: Runtime, env: dict[str, str], worker: Callable[[], None], smtp: SmtpHandler
) -> None:
    week = this_week()
    load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(3)], ("gone@example.com", "", ()))
    smtp.replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: user unknown"
    send(rt, week, utcnow())
    worker()
    status = json.loads(run(env, "status", "--json").stdout)
    assert (status["week"], status["sent"], status["bounced"]) == (week, 3, 1)
    assert (status["bounce_rate"], status["complaint_rate"]) == (0.25, 0.0)
    assert status["warnings"] == ["hard_bounces"]
    table = run(env, "status")
    assert "1 hard (25.00%)" in table.stderr
    assert "warning: hard bounces above 2%" in table.stderr


def test_pause_resume_cancel_and_retry_default_to_the_current_week(
    rt: Runtime, env: dict[str, str]
) -> None:
    week = draft(rt, 0)
    other = draft(rt, 1, slug="older")
    paused = run(env, "pause")
    assert paused.returncode == 0, paused.stderr
    assert paused.stderr.strip() == f"{week}: paused"
    assert (edition_status(rt, week), edition_status(rt, other)) == ("paused", "draft")
    resumed = run(env, "resume")
    assert resumed.returncode == 0 and resumed.stderr.startswith(f"{week}: sending")
    assert edition_status(rt, week) == "sending"
    assert run(env, "cancel").stderr.startswith(f"{week}: cancelled")
    assert edition_status(rt, week) == "cancelled"
    refused = run(env, "retry")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: the {week} edition is cancelled: it cannot be retried"
    assert edition_status(rt, other) == "draft"


def test_status_follow_redraws_until_the_edition_is_sent(
    rt: Runtime, env: dict[str, str], worker: Callable[[], None], smtp: SmtpHandler
) -> None:
    week = this_week()
    load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(5)])
    send(rt, week, utcnow())
    watching = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "status", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker()
    stdout, stderr = watching.communicate(timeout=60)
    assert watching.returncode == 0, stderr
    assert f"Edition {week}: sent" in stdout
    assert "Traceback" not in stderr


def test_ctrl_c_stops_status_follow_cleanly(rt: Runtime, env: dict[str, str]) -> None:
    week = draft(rt, 0)
    control.pause(rt, week)
    watching = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "status", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watching.stderr is not None
    first = watching.stderr.readline()  # the command started and found the edition paused
    assert first.startswith(f"watching {week} until it is sent or cancelled")
    watching.send_signal(signal.SIGINT)
    stdout, stderr = watching.communicate(timeout=30)
    assert watching.returncode == 0, stderr
    assert "stopped watching; the edition goes on" in stderr
    assert "Traceback" not in stderr and "interrupted" not in stderr
    assert edition_status(rt, week) == "paused"


def test_send_wait_names_the_backoff_instead_of_asking_for_a_worker(
    make_settings: Callable[..., Any],
    redis_client: Any,
    smtp: SmtpHandler,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker.supervisor import running_worker

    rt = open_runtime(make_settings(retry_min_s=600, retry_max_s=600), redis_client=redis_client)
    try:
        week = this_week()
        load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1)))
        subscribe(rt, ("ada@example.com", "", ()), ("grey@example.com", "", ()))
        smtp.fail_next["grey@example.com"] = ["451 4.7.1 greylisted, try again later"]
        with running_worker(rt, threads=2, sweep=False):
            send(rt, week, utcnow())
            # The refill chain ticks while the edition is sending: wait on the rows instead.
            wait_until(lambda: control.status(rt, week).sent == 1)
            wait_until(lambda: _waiting_on_backoff(rt, week) is not None)
            retry_at = _waiting_on_backoff(rt, week)
            assert retry_at is not None and retry_at > utcnow() + timedelta(seconds=60)
            with pytest.raises(NewsletterError, match="not complete after"):
                wait_for(rt, week, timeout_s=3, quiet_s=1)
        shown = capsys.readouterr().err
        assert "1 deliveries waiting out a backoff" in shown
        assert "is a worker running?" not in shown
    finally:
        rt.close()


def test_a_stalled_edition_with_nothing_backing_off_asks_for_a_worker(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    week = this_week()
    load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, ("ada@example.com", "", ()))
    send(rt, week, utcnow())  # queued; no worker runs
    assert _waiting_on_backoff(rt, week) is None
    with pytest.raises(NewsletterError):
        wait_for(rt, week, timeout_s=3, quiet_s=1)
    assert "is a worker running?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "samples,limit,expected",
    [
        ([(0.0, 0), (0.4, 5)], 0, None),  # under half a second of samples: not known yet
        ([(0.0, 0), (1.0, 10), (2.0, 20)], 0, 10.0),
        # 170 sent before the command started count for nothing: the rate is what changes
        ([(0.0, 170), (1.0, 180), (2.0, 190)], 0, 10.0),
        ([(0.0, 0), (1.0, 17)], 10, 10.0),  # a sample just after a commit: capped at the limit
        ([(0.0, 0), (5.0, 50), (16.0, 50), (17.0, 50)], 0, 0.0),  # the window moved: stopped
    ],
)
def test_the_delivered_rate(samples: list[tuple[float, int]], limit: float, expected: Any) -> None:
    rate = DeliveredRate(limit_per_s=limit)
    result = None
    for at_s, sent in samples:
        result = rate.add(at_s, sent)
    assert result == expected


def test_rate_text_shows_the_eta_of_what_is_owed() -> None:
    assert rate_text(None, 10) == "measuring…"
    assert rate_text(10.0, 600) == "10.0 sent/s, eta 0:01:00"
    assert rate_text(0.0, 600) == "0.0 sent/s"


@pytest.mark.parametrize(
    "public_url,host,port,warns",
    [
        ("http://localhost:8000", "127.0.0.1", 8000, False),
        ("http://localhost:8000", "127.0.0.1", 8001, True),
        ("http://127.0.0.1", "127.0.0.1", 8000, True),  # no port: 80
        ("http://localhost", "127.0.0.1", 80, False),
        ("https://news.example.com", "0.0.0.0", 8000, False),  # a proxy in front
        ("http://10.1.2.3:8000", "10.1.2.3", 9000, True),  # the interface we listen on
    ],
)
def test_links_elsewhere(public_url: str, host: str, port: int, warns: bool) -> None:
    assert (links_elsewhere(public_url, host, port) is not None) is warns


def web_stderr(env: dict[str, str], public_url: str, port: int) -> str:
    """What ``newsletter web`` says on stderr until it serves (then it is stopped)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "web", "--port", str(port)],
        env={**env, "NEWSLETTER_PUBLIC_URL": public_url},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    try:
        assert server.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Uvicorn running" in line:
                break
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return "".join(lines)


def test_web_on_a_port_the_public_url_does_not_name_warns(rt: Runtime, env: dict[str, str]) -> None:
    port = free_port()
    shown = web_stderr(env, "http://localhost:8000", port)
    assert "Uvicorn running" in shown
    assert (
        f"warning: NEWSLETTER_PUBLIC_URL is http://localhost:8000, but the web listens on port"
        f" {port}: links in mail (confirm, unsubscribe, preferences) will point elsewhere"
    ) in " ".join(shown.split())
    quiet = web_stderr(env, f"http://localhost:{port}", port)
    assert "Uvicorn running" in quiet and "warning" not in quiet
