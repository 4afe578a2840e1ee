"""Message building: well-formed MIME, pre-encoded bodies equal to encoding every time."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from worker.message import Identity, QpTemplate, Recipient, _qp, build_message, prepare
from worker.render import Renderer, Spliced
from worker.store import ComparisonView, ReviewView, ToolView

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
IDENTITY = Identity(
    "Weekly AI Tool Verdicts <verdicts@news.example.com>",
    "Weekly AI Tool Verdicts <verdicts.news.example.com>",
)


def _view(i: int, title: str) -> ComparisonView:
    def tool(name: str) -> ToolView:
        return ToolView(
            name=name,
            version="1.0",
            category="Writing",
            tagline=f"{name} tagline",
            summary="s",
            pricing="Free",
            community_votes=None,
            ship_percent=75,
            reviews=(ReviewView("The Builder", "ship", "Short  quote. " * 5),),
        )

    return ComparisonView(
        id=i,
        slug=f"c{i}",
        title=title,
        category="Writing",
        url=f"https://verdicts.example.com/compare/c{i}",
        published_at=NOW,
        tool_a=tool(f"A{i}"),
        tool_b=tool(f"B{i}"),
    )


@pytest.mark.parametrize("name", ["", "Zoë Ångström", "O'Brien <b>&", "x" * 200, "trailing  "])
def test_pre_encoded_bodies_are_byte_for_byte_what_encoding_each_time_gives(name: str) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "Café — naïve"), _view(2, "A & B")])
    values = {
        "name": name,
        "greeting_name": name or "there",
        "unsubscribe_url": "https://news.example.com/unsubscribe/" + "t" * 90,
        "preferences_url": "https://news.example.com/preferences/x",
    }
    for spliced, escape in ((mail.html, True), (mail.text, False)):
        assert QpTemplate.of(spliced).fill(values, escape) == _qp(spliced.fill(values, escape))


def test_a_slot_at_the_very_end_or_start_is_kept() -> None:
    spliced = Spliced(parts=("", "\nmiddle\n", ""), slots=("name", "name"))
    assert QpTemplate.of(spliced).fill({"name": "Zoë"}, False) == _qp("Zoë\nmiddle\nZoë")


def test_the_message_parses_as_multipart_alternative_with_both_bodies() -> None:
    mail = prepare(Renderer().render_digest("2026-W48", [_view(1, "Café — naïve")]))
    data = build_message(
        mail,
        Recipient("zoe@example.com", "Zoë", "https://n/u", "https://n/p"),
        IDENTITY,
        "<d1.2026-W48@news.example.com>",
        NOW,
        extra_headers={"X-Newsletter-Delivery": "d1.abc"},
    )
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["To"].addresses[0].display_name == "Zoë"
    assert msg["Subject"] == "AI Tool Verdicts: Café — naïve"
    assert "Hi Zoë," in msg.get_body(("plain",)).get_content()
    assert "Hi Zoë," in msg.get_body(("html",)).get_content()
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))


@pytest.mark.parametrize("field", ["name", "email"])
def test_line_breaks_in_a_recipient_are_refused_not_cleaned(field: str) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    values = {"email": "a@example.com", "name": "A"}
    values[field] += "\r\nBcc: victim@example.com"
    with pytest.raises(ValueError, match="line break"):
        build_message(
            mail, Recipient(values["email"], values["name"], "u", "p"), IDENTITY, "<x@y>", NOW
        )
