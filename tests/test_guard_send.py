"""The guard rail on a real send: a worker mails an aiosmtpd server that refuses one reader in
ten with a 550, and the edition pauses itself, saying why, before the list is used up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.conftest import ROOT, SmtpHandler
from tests.factories import send
from tests.test_resilience import (
    UNKNOWN_USER,
    publish_this_week,
    readers,
    settled,
    subscribe_all,
    this_week,
    wait_for_edition,
)
from worker.config import Settings
from worker.runtime import Runtime, open_runtime
from worker.sending import control
from worker.supervisor import running_worker

READERS = 400


@pytest.fixture
def rt(make_settings: Callable[..., Settings], redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(send_rate=60), redis_client=redis_client)
    yield runtime
    runtime.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_edition_refused_for_one_reader_in_ten_pauses_itself_with_the_reason(
    rt: Runtime, env: dict[str, str], smtp: SmtpHandler
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(READERS)
    subscribe_all(rt, everyone)
    for address in everyone[::10]:
        smtp.replies[address] = UNKNOWN_USER.format(address)

    with running_worker(rt, threads=4, sweep=True):
        send(rt, week, now)
        wait_for_edition(rt, week, "paused", timeout_s=60)
        view = settled(rt, week)

    assert view.status == "paused"
    assert view.pause_reason is not None
    assert view.pause_reason.startswith("auto-paused: ") and "hard bounces" in view.pause_reason
    assert "NEWSLETTER_AUTOPAUSE_BOUNCE_RATE" in view.pause_reason
    assert view.bounced > 0 and view.sent + view.bounced < READERS  # stopped before the end

    as_json = cli(env, "status", "--week", week, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert '"pause_reason": "auto-paused: ' in as_json.stdout
    table = cli(env, "status", "--week", week)
    assert "paused: auto-paused: " in table.stderr

    # `send` does not resume it behind the operator's back: one line naming `newsletter resume`.
    again = cli(env, "send", "--week", week)
    assert again.returncode != 0
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "newsletter resume" in lines[0], again.stderr
    assert control.status(rt, week).status == "paused"
