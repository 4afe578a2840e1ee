"""The edition state machine: which operator action moves an edition from which status."""

from __future__ import annotations

import pytest

from worker.models import EditionStatus
from worker.sending.states import ACTIONS, actions_for, allows, from_statuses

STATUSES = [s.value for s in EditionStatus]
ALLOWED = {
    "send": {"draft"},
    "pause": {"draft", "sending"},
    "resume": {"paused", "draft", "sent"},
    "cancel": {"draft", "sending", "paused"},
    "retry": {"sending", "sent"},
    "finish": {"sending"},
}
LEADS_TO = {
    "send": "sending",
    "pause": "paused",
    "resume": "sending",
    "cancel": "cancelled",
    "retry": "sending",
    "finish": "sent",
}


@pytest.mark.parametrize("action", sorted(ALLOWED))
@pytest.mark.parametrize("status", STATUSES)
def test_each_action_is_allowed_from_its_statuses_only(action: str, status: str) -> None:
    assert allows(action, status) == (status in ALLOWED[action])


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_each_action_leads_where_it_says(action: str) -> None:
    assert ACTIONS[action].to.value == LEADS_TO[action]


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_from_statuses_lists_the_allowed_ones_in_the_enum_order(action: str) -> None:
    assert from_statuses(action) == tuple(s for s in STATUSES if s in ALLOWED[action])


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        ("draft", ["send", "pause", "resume", "cancel"]),
        ("sending", ["pause", "cancel", "retry"]),
        ("sent", ["resume", "retry"]),
        ("paused", ["resume", "cancel"]),
        ("cancelled", []),
    ],
)
def test_the_console_offers_what_the_table_allows(status: str, buttons: list[str]) -> None:
    assert actions_for(status) == buttons


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        allows("send", "lost")
