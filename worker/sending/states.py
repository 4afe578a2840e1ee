"""The edition state machine (SPEC §2): which operator action may move an edition from which
status, and to what. One table, asked by the operator controls, the API and the console (whose
buttons show only what it allows); the pipeline alone marks an edition sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.models import EditionStatus

_E = EditionStatus


@dataclass(frozen=True)
class Move:
    """An action's allowed starting statuses and where it leads."""

    allowed_from: frozenset[EditionStatus]
    to: EditionStatus


ACTIONS: dict[str, Move] = {
    # A paused edition is resumed, never sent again by accident.
    "send": Move(frozenset({_E.draft}), _E.sending),
    "pause": Move(frozenset({_E.draft, _E.sending}), _E.paused),
    # Also re-opens a sent edition whose rows say something is still owed (after a Redis loss).
    "resume": Move(frozenset({_E.paused, _E.draft, _E.sent}), _E.sending),
    "cancel": Move(frozenset({_E.draft, _E.sending, _E.paused}), _E.cancelled),
    "retry": Move(frozenset({_E.sending, _E.sent}), _E.sending),
    # The pipeline's own move, once nothing is owed.
    "finish": Move(frozenset({_E.sending}), _E.sent),
}


def allows(action: str, status: str) -> bool:
    """True when ``action`` may be taken on an edition in ``status``."""
    return EditionStatus(status) in ACTIONS[action].allowed_from


def from_statuses(action: str) -> tuple[str, ...]:
    """The statuses ``action`` may start from (for a conditional update), in a stable order."""
    return tuple(s.value for s in EditionStatus if s in ACTIONS[action].allowed_from)


def actions_for(status: str) -> list[str]:
    """The operator actions an edition in ``status`` offers (the console's buttons)."""
    return [a for a in ("send", "pause", "resume", "cancel", "retry") if allows(a, status)]
