"""The operator console at ``/admin``: server-rendered pages (templates/admin) for editions,
preview and test send, subscribers, bounces, health and the audit log, behind a sign-in with
the operator token. Usable without JavaScript; ``console.js`` only refreshes live numbers."""

from __future__ import annotations

from fastapi import APIRouter

from worker.web.console import editions, readers, system

router = APIRouter(include_in_schema=False)
for part in (system, editions, readers):
    router.include_router(part.router, prefix="/admin", include_in_schema=False)
