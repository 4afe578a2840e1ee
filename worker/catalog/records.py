"""The comparison import format (SPEC §2): validation of one record, pure.

A record that fails is reported with its index and the field at fault, e.g.
``record 3: tools[1].pricing: must be one of Free, Paid, Freemium, Open source``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.errors import InputError, RecordError

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
Pricing = Literal["Free", "Paid", "Freemium", "Open source"]
Verdict = Literal["ship", "skip"]


class ToolRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Text
    version: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    tagline: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    summary: LongText = ""
    pricing: Pricing
    community_votes: Annotated[int, Field(ge=0)] | None = None


class ReviewRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reviewer: Text
    tool: Text
    verdict: Verdict
    quote: LongText = ""

    @field_validator("verdict", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class ComparisonRecord(BaseModel):
    """One validated comparison, ready for the store."""

    model_config = ConfigDict(extra="ignore")

    slug: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9-]*$"
        ),
    ]
    title: Text
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    url: AnyHttpUrl
    published_at: datetime
    tools: list[ToolRecord]
    reviews: list[ReviewRecord] = []

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # A time without an offset is taken as UTC rather than as the server's local time.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("tools")
    @classmethod
    def _two_tools(cls, value: list[ToolRecord]) -> list[ToolRecord]:
        if len(value) != 2:
            raise ValueError(f"exactly two tools are needed, got {len(value)}")
        if value[0].name == value[1].name and value[0].version == value[1].version:
            raise ValueError("the two tools are the same")
        return value

    @model_validator(mode="after")
    def _reviews_name_a_tool(self) -> ComparisonRecord:
        names = {tool.name for tool in self.tools}
        for index, review in enumerate(self.reviews):
            if review.tool not in names:
                raise RecordError(
                    "", f"reviews[{index}].tool", f"{review.tool!r} is not one of {sorted(names)}"
                )
        return self

    def ship_percent(self, tool_name: str) -> int | None:
        """Share of this tool's reviews whose verdict is ship, in whole percent."""
        verdicts = [r.verdict for r in self.reviews if r.tool == tool_name]
        return round(100 * verdicts.count("ship") / len(verdicts)) if verdicts else None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "record"


def validate_record(index: int, raw: Any) -> ComparisonRecord:
    """Validate one import record, raising RecordError naming its index and field."""
    where = f"record {index}"
    if not isinstance(raw, dict):
        raise RecordError(where, "record", f"must be a JSON object, got {type(raw).__name__}")
    try:
        return ComparisonRecord.model_validate(raw)
    except RecordError as exc:
        raise RecordError(where, exc.field, exc.problem) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RecordError):
            raise RecordError(where, cause.field, cause.problem) from None
        message = str(error["msg"]).removeprefix("Value error, ")
        raise RecordError(where, _field_path(tuple(error["loc"])), message) from None


def read_records(text: str) -> list[Any]:
    """Parse an import file's text into its list of raw records."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError("expected a JSON array of comparison records")
    return data


def validate_all(raw_records: list[Any]) -> tuple[list[ComparisonRecord], list[RecordError]]:
    """Validate every record; return the good ones and the errors, in file order."""
    good: list[ComparisonRecord] = []
    bad: list[RecordError] = []
    for index, raw in enumerate(raw_records):
        try:
            good.append(validate_record(index, raw))
        except RecordError as exc:
            bad.append(exc)
    return good, bad
