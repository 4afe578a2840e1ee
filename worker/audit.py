"""The audit log of operator actions (the ``audit_event`` table): who (a console session's
public id, ``api`` or ``cli``) did what to which target, from where, when. Only written and
read here."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from worker.models import AuditEvent, utcnow


def create_audit_event(
    session: Session, actor: str, ip: str | None, action: str, target: str = "", detail: str = ""
) -> None:
    """Record one operator action (committed with the caller's transaction)."""
    session.add(
        AuditEvent(
            at=utcnow(),
            actor=actor[:100],
            ip=(ip or None) and ip[:64],
            action=action[:50],
            target=target[:320],
            detail=detail[:1000],
        )
    )


def list_audit_events(
    session: Session, limit: int = 100, offset: int = 0, target: str | None = None
) -> list[AuditEvent]:
    """Audit events, newest first, optionally about one target."""
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if target is not None:
        query = query.where(AuditEvent.target == target)
    return list(session.execute(query.offset(offset).limit(limit)).scalars())
