"""Provider webhooks: ``POST /webhooks/ses|sendgrid|postmark|mailgun``.

Each request is verified on its raw body (``worker.bounces.webhooks``) before anything is
parsed; a bad signature is 401 and records nothing, a malformed body 400. Events are
deduplicated by provider event id when recorded.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from worker.bounces import ses
from worker.bounces.intake import record_provider_event
from worker.bounces.policy import Policy
from worker.bounces.webhooks import DEFAULT_REPLAY_WINDOW_S, WebhookSecrets, handle
from worker.errors import NotFound, WebhookAuthError, WebhookPayloadError
from worker.runtime import Runtime
from worker.web.deps import runtime

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_BODY_BYTES = 5 * 1024 * 1024


def secrets_of(rt: Runtime) -> WebhookSecrets:
    """The providers' verification secrets from settings."""
    s = rt.settings
    return WebhookSecrets(
        ses_topic_arns=tuple(a.strip() for a in s.ses_topic_arns.split(",") if a.strip()),
        sendgrid_public_key=s.sendgrid_public_key,
        postmark_username=s.postmark_username,
        postmark_password=s.postmark_password,
        mailgun_signing_key=s.mailgun_signing_key,
    )


@router.post("/{provider}")
async def webhook(provider: str, request: Request, rt: Runtime = Depends(runtime)) -> JSONResponse:
    """Verify, parse and record one provider webhook."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"detail": "body too large"}, status_code=413)

    return await run_in_threadpool(_process, rt, provider, dict(request.headers), body)


def _process(rt: Runtime, provider: str, headers: dict[str, str], body: bytes) -> JSONResponse:
    """The blocking part: verification may fetch a certificate; recording writes the database."""

    def seen_token(token: str) -> bool:
        # Shared by every web process: a Mailgun token is good once within the replay window.
        fresh = rt.redis.set(
            f"newsletter:webhook-token:{token}", "1", nx=True, ex=int(2 * DEFAULT_REPLAY_WINDOW_S)
        )
        return not fresh

    try:
        result = handle(provider, headers, body, secrets_of(rt), time.time(), seen_token=seen_token)
        if result.confirmation is not None:
            ses.confirm_subscription(result.confirmation)
            return JSONResponse({"confirmed": result.confirmation.topic_arn})
    except NotFound as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    except WebhookAuthError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401)
    except WebhookPayloadError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    policy = Policy(rt.settings.soft_bounce_limit, rt.settings.soft_bounce_window_days)
    recorded = 0
    with rt.session() as session, session.begin():
        for event in result.events:
            recorded += int(record_provider_event(session, event, policy))
    return JSONResponse({"received": len(result.events), "recorded": recorded})
