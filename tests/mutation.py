"""Mutation testing of the rule and protocol modules, one shard per module: `make mutation`.

Each module is mutated by mutmut against its own fast unit tests only (never the slow ones),
in a working copy of its own under ``build/mutation/<module>/``, and the script prints a score
table (module, mutants, killed, survived, %). A module with many mutants can be sampled
(``--sample N``: every k-th mutant, the same ones each run). The surviving mutants and why they
survive are listed in docs/mutation.md.

    python -m tests.mutation                       # every module
    python -m tests.mutation sending/retry         # one module
    python -m tests.mutation --sample 120 bounces/dsn
    python -m tests.mutation --survivors           # also print each survivor's diff
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
COPY = ("worker", "tests", "templates", "samples", "scheduler.py", "pyproject.toml")

# Module (under worker/) -> its fast unit tests (pytest arguments: files, and deselections of
# tests that time the code, which mutmut's tracing slows past their limit).
MODULES: dict[str, tuple[str, ...]] = {
    "sending/planning": ("tests/test_planning.py",),
    "sending/fanout": ("tests/test_fanout.py",),
    "subscribers/rules": ("tests/test_subscriber_rules.py",),
    "sending/states": ("tests/test_states.py",),
    "sending/tokens": ("tests/test_tokens.py",),
    "sending/retry": ("tests/test_retry.py",),
    "sending/throttle": ("tests/test_throttle.py",),
    "sending/message": ("tests/test_message.py",),
    "sending/transport": (
        "tests/test_transport.py",
        "tests/test_transport_tls.py",
        "tests/test_transport_replies.py",
    ),
    "bounces/classify": ("tests/test_bounces_classify.py",),
    "bounces/reasons": ("tests/test_bounces_classify.py",),
    "bounces/dsn": (
        "tests/test_bounces_dsn.py",
        "tests/test_bounces_corpus.py",  # the labelled corpus: real bounces, table-tested
        "--deselect=tests/test_bounces_dsn.py::test_ten_megabytes_of_junk_is_refused_without_hanging",
    ),
    "bounces/policy": ("tests/test_bounce_policy.py",),
    "bounces/sns": ("tests/test_sns.py", "tests/test_bounces_webhooks.py"),
    "bounces/ses": ("tests/test_ses.py", "tests/test_bounces_webhooks.py"),
    "bounces/sendgrid": ("tests/test_sendgrid.py", "tests/test_bounces_webhooks.py"),
    "sending/weekly": ("tests/test_weekly.py",),
}


@dataclass
class Score:
    module: str
    mutants: int
    killed: int
    survived: list[str]
    other: dict[str, int]
    sampled: int | None

    @property
    def percent(self) -> float:
        checked = self.killed + len(self.survived)
        return 100.0 * self.killed / checked if checked else 100.0


def _workdir(module: str, tests: tuple[str, ...]) -> Path:
    work = WORK / module.replace("/", "-")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, work / name)
    config = (work / "pyproject.toml").read_text()
    config = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", config)
    args = ", ".join(f'"{t}"' for t in tests)
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["worker"]\n'
        'also_copy = ["templates", "samples", "scheduler.py"]\n'
        f'only_mutate = ["worker/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = [{args}]\n"
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider"]\n'
        "use_git_change_detection = false\n"
    )
    tomllib.loads(config)  # still valid TOML
    (work / "pyproject.toml").write_text(config)
    return work


def _mutmut(work: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"mutmut {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _statuses(work: Path) -> dict[str, str]:
    out = _mutmut(work, "results", "--all", "true")
    found = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def run_module(module: str, sample: int | None, show: bool) -> Score:
    tests = MODULES[module]
    work = _workdir(module, tests)
    names: list[str] = []
    sampled = None
    if sample:
        _mutmut(work, "run", "__no_such_mutant__")  # generates the mutants, runs none
        every = sorted(_statuses(work))
        if len(every) > sample:
            step = len(every) / sample
            names = [every[int(i * step)] for i in range(sample)]
            sampled = len(every)
    _mutmut(work, "run", "--max-children", "2", *names)
    statuses = _statuses(work)
    if names:
        statuses = {n: statuses[n] for n in names}
    if statuses and all(s == "not checked" for s in statuses.values()):
        raise RuntimeError(f"{module}: mutmut checked no mutant (see {work}: mutmut run)")
    killed = sum(1 for s in statuses.values() if s in ("killed", "timeout"))
    # A mutant no test reaches survives as surely as one the tests miss.
    survived = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    other: dict[str, int] = {}
    for s in statuses.values():
        if s not in ("killed", "timeout", "survived", "no tests"):
            other[s] = other.get(s, 0) + 1
    if show:
        for name in survived:
            print(_mutmut(work, "show", name))
    return Score(module, len(statuses), killed, survived, other, sampled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules under worker/ (default: all)")
    parser.add_argument("--sample", type=int, default=None, help="mutants per module at most")
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument("--target", type=float, default=85.0, help="least %% killed")
    options = parser.parse_args()
    modules = options.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
    scores = []
    for module in modules:
        score = run_module(module, options.sample, options.survivors)
        scores.append(score)
        print(f"{module}: {score.killed}/{score.mutants} killed", file=sys.stderr, flush=True)
    print("\n| module | mutants | killed | survived | % |\n|---|---:|---:|---:|---:|")
    for s in scores:
        note = f" (sample of {s.sampled})" if s.sampled else ""
        extra = "".join(f", {n} {k}" for k, n in sorted(s.other.items()))
        print(
            f"| {s.module}{note} | {s.mutants}{extra} | {s.killed} | {len(s.survived)} "
            f"| {s.percent:.0f} |"
        )
    for s in scores:
        for name in s.survived:
            print(f"survived: {name}")
    return 0 if all(s.percent >= options.target for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
