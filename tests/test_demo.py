"""`newsletter demo` and `newsletter up` on the embedded defaults, as a newcomer runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from tests.conftest import SmtpHandler, free_port


def _embedded_pid(data_dir: Path) -> int | None:
    registry = data_dir / "redis.db.settings"
    if not registry.exists():
        return None
    pidfile = Path(json.loads(registry.read_text())["pidfile"])
    return int(pidfile.read_text()) if pidfile.exists() else None


def _servers_of(data_dir: Path) -> list[int]:
    """Embedded Redis servers for ``data_dir``: the registry that ``data_dir`` must hold names
    their socket, and they run in ``data_dir``."""
    import psutil

    registry = data_dir / "redis.db.settings"
    assert registry.exists(), "the embedded Redis registry is missing"
    socket_path = json.loads(registry.read_text())["unixsocket"]
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        cwd = process.info["cwd"]
        if socket_path in cmdline or (cwd and Path(cwd).resolve() == data_dir.resolve()):
            found.append(int(process.info["pid"]))
    return [pid for pid in found if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _clean_env(data_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return {**keep, "NEWSLETTER_DATA_DIR": str(data_dir)}


def _newsletter(cwd: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``newsletter ARGS`` as a newcomer would: embedded defaults, only a data dir set."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=cwd,
        env=_clean_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_delivers_this_weeks_digest_into_the_outbox_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    result = _newsletter(tmp_path, data_dir, "demo")
    assert result.returncode == 0, result.stderr
    assert "subscribers: 25 added" in result.stderr
    assert f"outbox: {data_dir.resolve() / 'outbox'}" in result.stderr
    mails = sorted((data_dir / "outbox").glob("*.eml"))
    assert len(mails) == 25
    first = message_from_bytes(mails[0].read_bytes(), policy=policy.default)
    assert first["Return-Path"].startswith("<bounces+d")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Axolotl" in result.stderr or any(b"Axolotl" in m.read_bytes() for m in mails)
    assert _servers_of(data_dir) == []  # the embedded Redis it started is stopped

    again = _newsletter(tmp_path, data_dir, "demo")
    assert again.returncode == 0, again.stderr
    assert "already sent, nothing to do" in again.stderr
    assert "sent/s" not in again.stderr and "Edition " not in again.stderr  # no rate, no table
    assert len(list((data_dir / "outbox").glob("*.eml"))) == 25


def test_demo_through_an_smtp_server_uses_a_sample_postal_address(
    tmp_path: Path, smtp: SmtpHandler, smtp_url: str
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--subscribers", "3"],
        cwd=tmp_path,
        env={**_clean_env(data_dir), "NEWSLETTER_SMTP_URL": smtp_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "postal address (a sample, for the demo)" in result.stderr
    assert len(smtp.received) == 3
    text = smtp.received[0].message.get_body(("plain",))
    assert text is not None and "1 Example Street" in str(text.get_content())


def test_any_command_works_on_a_fresh_data_dir(tmp_path: Path) -> None:
    result = _newsletter(tmp_path, tmp_path / "data", "status", "--week", "2026-W48")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no edition for 2026-W48"


@pytest.mark.slow
def test_up_serves_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "up", "--port", str(port)],
        cwd=tmp_path,
        env=_clean_env(data_dir),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "web did not come up"
                assert up.poll() is None, "newsletter up exited early"
                time.sleep(0.3)
        assert answer.json() == {"status": "ok", "database": "ok", "redis": "ok"}
        token = (data_dir / "operator_token").read_text().strip()
        api = httpx.get(
            f"http://127.0.0.1:{port}/api/subscribers", headers={"Authorization": f"Bearer {token}"}
        )
        assert api.status_code == 200
        redis_pid = _embedded_pid(data_dir)
        assert redis_pid and _alive(redis_pid)
    finally:
        up.send_signal(signal.SIGINT)
        _out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert "operator token:" in err
    assert not _alive(redis_pid)
