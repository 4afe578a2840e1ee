"""Print how often our bounce classifier agrees with the corpus labels (``make bounce-report``).

Agreement is on reason and kind together, per MTA, per labelled reason and overall; "suppress
now?" is agreement on whether the address is suppressed at once (kind hard or complaint).
"""

from __future__ import annotations

import sys
from collections import defaultdict

from tests.bounce_corpus import Outcome, load_rows, outcomes


def _table(title: str, groups: dict[str, list[Outcome]]) -> list[str]:
    lines = [f"{title:<24} {'rows':>5} {'agree':>7} {'suppress':>9}"]
    for name in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        got = groups[name]
        agree = sum(o.agrees for o in got) / len(got)
        suppress = sum(o.suppress_agrees for o in got) / len(got)
        lines.append(f"{name:<24} {len(got):>5} {agree:>7.1%} {suppress:>9.1%}")
    return lines


def report() -> str:
    """The agreement tables and the rows that disagree, as text."""
    results = list(outcomes(load_rows()))
    by_mta: dict[str, list[Outcome]] = defaultdict(list)
    by_reason: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in results:
        by_mta[outcome.row.mta or "?"].append(outcome)
        by_reason[outcome.row.reason].append(outcome)
    total = len(results)
    agree = sum(o.agrees for o in results)
    suppress = sum(o.suppress_agrees for o in results)
    lines = [
        f"overall: {agree}/{total} rows agree on reason and kind ({agree / total:.1%}); "
        f"suppress now? {suppress}/{total} ({suppress / total:.1%})",
        "",
        *_table("per MTA", by_mta),
        "",
        *_table("per reason (labelled)", by_reason),
        "",
        "disagreements (file, recipient: labelled -> ours):",
    ]
    for o in results:
        if not o.agrees:
            lines.append(
                f"  {o.row.file} {o.row.recipient or '-'}: {o.row.reason}/{o.row.kind} -> {o.ours}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(report() + "\n")
