"""The comparison import format: validation errors name the record and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from worker.catalog import queries as catalog
from worker.catalog.records import validate_all, validate_record
from worker.catalog.service import import_comparisons
from worker.errors import InputError, RecordError
from worker.models import Comparison
from worker.runtime import Runtime

DATA = Path(__file__).parent / "data"
SAMPLES = Path(__file__).parent.parent / "samples" / "comparisons.json"


def test_every_bad_record_is_reported_with_its_index_and_field() -> None:
    records = json.loads((DATA / "comparisons_bad.json").read_text())
    expected = json.loads((DATA / "comparisons_bad.expected.json").read_text())
    good, bad = validate_all(records)
    assert [(e.where, e.field) for e in bad] == [
        (f"record {x['index']}", x["field"]) for x in expected
    ]
    assert len(good) == len(records) - len(expected)


def test_the_seed_comparison_has_the_pages_ship_percentages() -> None:
    raw = next(r for r in json.loads(SAMPLES.read_text()) if r["slug"].startswith("axolotl"))
    seed = validate_record(0, raw)
    assert seed.title == "Axolotl v0.16 vs Mistral 3 Small (24B)"
    assert seed.ship_percent("Axolotl") == 75
    assert seed.ship_percent("Mistral 3 Small") == 100
    assert [t.pricing for t in seed.tools] == ["Paid", "Free"]
    assert [t.community_votes for t in seed.tools] == [None, None]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"tools": []}, "tools", "exactly two tools"),
        ({"published_at": "yesterday"}, "published_at", "datetime"),
        ({"url": "javascript:alert(1)"}, "url", "URL"),
        ({"slug": "Has Spaces"}, "slug", "pattern"),
    ],
)
def test_a_bad_field_gets_a_clear_message(
    change: dict[str, object], field: str, message: str
) -> None:
    record = next(r for r in json.loads(SAMPLES.read_text()) if r["slug"].startswith("axolotl"))
    with pytest.raises(RecordError) as info:
        validate_record(7, {**record, **change})
    assert info.value.where == "record 7"
    assert info.value.field == field
    assert message.lower() in str(info.value).lower()


def test_valid_records_load_beside_invalid_ones_and_strict_loads_nothing(rt: Runtime) -> None:
    text = (DATA / "comparisons_bad.json").read_text()
    with pytest.raises(InputError, match="nothing loaded"):
        import_comparisons(rt.engine, text, strict=True)
    with rt.session() as session:
        assert session.execute(select(Comparison)).first() is None

    report = import_comparisons(rt.engine, text)
    assert report.created == 3
    assert len(report.errors) == 11
    assert report.errors[0] == "record 1: tools: exactly two tools are needed, got 3"


def test_reimporting_a_slug_updates_it(rt: Runtime) -> None:
    records = json.loads(SAMPLES.read_text())
    import_comparisons(rt.engine, json.dumps(records))
    records[0]["title"] = "A new title"
    records[0]["reviews"] = records[0]["reviews"][:1]
    report = import_comparisons(rt.engine, json.dumps(records[:1]))
    assert (report.created, report.updated) == (0, 1)
    with rt.session() as session:
        rows = session.execute(select(Comparison)).scalars().all()
        assert len(rows) == len(records)
        first = next(r for r in rows if r.slug == records[0]["slug"])
        view = catalog.get_comparison_views(session, [first.id])[0]
    assert view.title == "A new title"
    assert len(view.tool_a.reviews) + len(view.tool_b.reviews) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{not json",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1",
        ),
        ('"a string"', "expected a JSON array"),
    ],
)
def test_a_file_that_is_not_an_array_of_records_is_refused(
    rt: Runtime, text: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        import_comparisons(rt.engine, text)
