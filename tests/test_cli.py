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
