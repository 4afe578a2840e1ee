"""The `newsletter` command as an operator uses it: real processes, real output."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SmtpHandler
from tests.factories import comparison, load, subscribe
from worker.cli import app
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.planning import week_of
from worker.subscribers import queries as subscribers

COMMANDS = [
    [],
    ["init"],
    ["demo"],
    ["up"],
    ["web"],
    ["worker"],
    ["scheduler"],
    ["comparisons"],
    ["comparisons", "import"],
    ["subscribers"],
    ["subscribers", "add"],
    ["subscribers", "import"],
    ["subscribers", "export"],
    ["subscribers", "show"],
    ["subscribers", "export-data"],
    ["subscribers", "erase"],
    ["bounces", "ingest"],
    ["bounces", "serve"],
    ["bounces", "poll"],
    ["bounces", "list"],
    ["send"],
    ["preview"],
    ["test-send"],
    ["pause"],
    ["resume"],
    ["cancel"],
    ["retry"],
    ["status"],
    ["bounces"],
]


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "newsletter")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_status_of_a_week_without_edition_exits_1(rt: Runtime, env: dict[str, str]) -> None:
    result = run(env, "status", "--week", "2026-W48")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no edition for 2026-W48"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--week", "2026-48"], "error: bad week '2026-48': expected YYYY-Www"),
        (["comparisons", "import", "missing.json"], "error: missing.json: no such file"),
        (["subscribers", "add", "not-an-address"], "error: email: "),
        (["subscribers", "add", "x@example.com", "--cadence", "daily"], "error: cadence: "),
        (["subscribers", "add", "ann@example.test"], "special-use or reserved name"),
        (["pause", "--week", "2026-W01"], "error: no edition for 2026-W01"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    rt: Runtime, env: dict[str, str], args: list[str], message: str
) -> None:
    result = run(env, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_subscriber_csv_reports_bad_rows_by_line_and_merges_duplicates(
    rt: Runtime,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    source = tmp_path / "people.csv"
    source.write_text(
        "email,name,categories\n"
        "ada@example.com,Ada,Writing;Developer Tools\n"
        "not-an-address,Bob,\n"
        "ADA@example.com,Ada L.,Writing\n"
        'eve@example.com,"Eve\r\nBcc: x@example.com",\n'
        "zoe@example.org,Zoë,\n",
        encoding="utf-8",
    )
    result = run(env, "subscribers", "import", str(source), "--confirmed")
    assert result.returncode == 0, result.stderr
    assert "skipped line 3: email:" in result.stderr
    assert "skipped line 5: name: control characters" in result.stderr
    assert "2 added, 0 updated, 0 unchanged, 2 bad rows skipped" in result.stderr
    with rt.session() as session:
        ada = subscribers.get_subscriber_by_email(session, "ada@EXAMPLE.com")
        assert ada is not None
        assert (ada.name, ada.categories, ada.status) == ("Ada L.", "Writing", "active")


def test_strict_import_loads_nothing_when_a_row_is_bad(
    rt: Runtime, env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email,name\nok@example.com,Ok\nbroken,No\n")
    result = run(env, "subscribers", "import", str(source), "--strict")
    assert result.returncode == 2
    assert "line 3: email:" in result.stderr and "nothing loaded" in result.stderr
    with rt.session() as session:
        assert subscribers.count_subscribers(session) == {}


def test_export_then_import_round_trips(rt: Runtime, env: dict[str, str], tmp_path: Path) -> None:
    subscribe(
        rt,
        ("ada@example.com", "Ada, Countess", ("Writing", "Developer Tools")),
        ("bob@example.net", "", ()),
    )
    subscribe(rt, ("pending@example.org", "Pat", ()), confirmed=False)
    exported = run(env, "subscribers", "export")
    assert exported.returncode == 0
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert list(rows[0])[:5] == ["email", "name", "status", "categories", "cadence"]
    assert {r["email"]: r["status"] for r in rows} == {
        "ada@example.com": "active",
        "bob@example.net": "active",
        "pending@example.org": "pending",
    }

    target = tmp_path / "export.csv"
    target.write_text(exported.stdout)
    with rt.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM subscriber")
    again = run(env, "subscribers", "import", str(target))
    assert "3 added" in again.stderr, again.stderr
    assert (
        run(env, "subscribers", "export").stdout.splitlines()[1:]
        == exported.stdout.splitlines()[1:]
    )


def test_dry_run_shows_the_plan_and_changes_nothing(rt: Runtime, env: dict[str, str]) -> None:
    now = utcnow()
    week = week_of(now, UTC)
    load(
        rt,
        comparison(
            "dev-duel", "Developer Tools", now - timedelta(minutes=5), title="Dev Duel: A vs B"
        ),
    )
    result = run(env, "send", "--week", week, "--dry-run")
    assert result.returncode == 0
    assert "Dev Duel: A vs B" in result.stderr and "nothing was changed" in result.stderr
    with rt.session() as session:
        assert sending.get_edition(session, week) is None


def test_preview_writes_the_digest_html(rt: Runtime, env: dict[str, str], tmp_path: Path) -> None:
    now = utcnow()
    load(
        rt,
        comparison(
            "dev-duel", "Developer Tools", now - timedelta(minutes=5), title="Dev Duel: A vs B"
        ),
    )
    target = tmp_path / "preview.html"
    result = run(env, "preview", "--out", str(target))
    assert result.returncode == 0, result.stderr
    html = target.read_text()
    assert "Dev Duel: A vs B" in html and "<html" in html


def test_test_send_reaches_the_server_and_counts_nowhere(
    rt: Runtime,
    env: dict[str, str],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    result = run(env, "test-send", "editor@example.com")
    assert result.returncode == 0, result.stderr
    [received] = smtp.to("editor@example.com")
    assert received.message["Subject"].startswith("[TEST] ")
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    status = run(env, "status", "--json")
    assert json.loads(status.stdout)["total"] == 0


def test_an_operator_exports_and_erases_a_readers_data(rt: Runtime, env: dict[str, str]) -> None:
    subscribe(rt, ("gdpr@example.com", "Greta", ("Writing",)))
    exported = run(env, "subscribers", "export-data", "GDPR@example.com")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["subscriber"]["email"] == "gdpr@example.com"
    assert data["subscriber"]["name"] == "Greta"

    erased = run(env, "subscribers", "erase", "gdpr@example.com", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert (
        run(env, "subscribers", "export-data", "gdpr@example.com").stderr.strip()
        == "error: no subscriber gdpr@example.com"
    )
    assert run(env, "subscribers", "erase", "gdpr@example.com", "--yes").returncode == 1


def test_send_wait_delivers_by_itself_when_no_worker_runs(
    rt: Runtime, env: dict[str, str], smtp: SmtpHandler
) -> None:
    now = utcnow()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, *[(f"alone{i}@example.com", "", ()) for i in range(12)])
    result = run(env, "send", "--wait")
    assert result.returncode == 0, result.stderr
    assert "no worker is running: delivering from this process" in result.stderr
    assert len(smtp.received) == 12
    status = json.loads(run(env, "status", "--json").stdout)
    assert (status["status"], status["sent"], status["total"]) == ("sent", 12, 12)


def _edition_owing(rt: Runtime, count: int) -> tuple[str, int]:
    """This week's edition, fanned out to ``count`` readers: every delivery is owed, its job
    waits in the queue, and no worker runs."""
    from tests.factories import FanOutHere
    from worker.sending import control

    now = utcnow()
    week = week_of(now, UTC)
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(count)])
    outcome = control.start_send(rt, week, now, FanOutHere(rt))
    assert outcome.edition is not None and outcome.edition.id is not None
    return week, outcome.edition.id


def _edition_state(rt: Runtime, week: str) -> tuple[str, dict[str, int]]:
    with rt.session() as session:
        edition = sending.get_edition(session, week)
        assert edition is not None and edition.id is not None
        counts = sending.count_deliveries(session, edition.id)
        return edition.status, {status: n for status, n in counts.items() if n}


def test_pause_resume_and_cancel_move_the_edition_and_say_so(
    rt: Runtime, env: dict[str, str], smtp: SmtpHandler
) -> None:
    week, _edition_id = _edition_owing(rt, 3)
    assert _edition_state(rt, week) == ("sending", {"queued": 3})

    paused = run(env, "pause", "--week", week)
    assert paused.returncode == 0, paused.stderr
    assert paused.stderr.strip() == f"{week}: paused"
    assert _edition_state(rt, week) == ("paused", {"queued": 3})
    again = run(env, "pause", "--week", week)
    assert again.stderr.strip() == f"{week}: paused (unchanged)"

    resumed = run(env, "resume", "--week", week)
    assert resumed.returncode == 0, resumed.stderr
    # Their jobs still wait in the queue: resuming enqueues nothing twice.
    assert resumed.stderr.strip() == f"{week}: sending, 0 deliveries re-queued"
    assert _edition_state(rt, week)[0] == "sending"

    cancelled = run(env, "cancel", "--week", week)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stderr.strip() == f"{week}: cancelled, 3 deliveries skipped"
    assert _edition_state(rt, week) == ("cancelled", {"skipped": 3})
    assert run(env, "resume", "--week", week).returncode != 0
    assert smtp.received == []


def test_subscribers_add_stores_an_active_reader(rt: Runtime, env: dict[str, str]) -> None:
    result = run(
        env,
        "subscribers",
        "add",
        "Ada@Example.com",
        "--name",
        "Ada",
        "--categories",
        "Writing",
        "--confirmed",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "Ada@example.com: added (active)"
    with rt.session() as session:
        ada = subscribers.get_subscriber_by_email(session, "ada@example.com")
        assert ada is not None
        assert (ada.name, ada.categories, ada.status) == ("Ada", "Writing", "active")


def test_comparisons_import_loads_the_samples(rt: Runtime, env: dict[str, str]) -> None:
    samples = Path(__file__).parent.parent / "samples" / "comparisons.json"
    count = len(json.loads(samples.read_text()))
    result = run(env, "comparisons", "import", str(samples))
    assert result.returncode == 0, result.stderr
    assert f"{count} " in result.stderr + result.stdout
    again = run(env, "comparisons", "import", str(samples))
    assert again.returncode == 0, again.stderr
    with rt.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT COUNT(*) FROM comparison").scalar_one()
    assert stored == count  # importing twice updates, it does not duplicate
