"""What an import did: the rows it wrote and the problems it skipped (comparisons and
subscribers alike)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImportReport:
    """What an import did, and the problems it skipped."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    unchecked_categories: set[str] = field(default_factory=set)
    """Categories taken without a check: no comparison was loaded yet to know them by."""

    @property
    def loaded(self) -> int:
        """Records written (new or changed)."""
        return self.created + self.updated
