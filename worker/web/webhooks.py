"""Provider webhooks: ``POST /webhooks/ses|sendgrid|postmark|mailgun``.

Each request is verified on its raw body (``worker.bounces.webhooks``) before anything is
parsed; a bad signature is 401 and records nothing, a malformed body 400. Events are
deduplicated by provider event id when recorded.

The clock, the SNS certificate store and the visit that confirms an SNS subscription are
dependencies, so a test can replay a provider's published vector at the time it was signed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from worker.bounces import ses
from worker.bounces.intake import record_provider_event
from worker.bounces.record import policy_of
from worker.bounces.webhooks import (
    DEFAULT_REPLAY_WINDOW_S,
    WebhookSecrets,
    default_certificates,
    handle,
)
from worker.errors import NotFound, WebhookAuthError, WebhookPayloadError
from worker.runtime import Runtime
from worker.web.deps import runtime

ConfirmSubscription = Callable[[ses.SubscriptionConfirmation], None]

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


def received_at_s() -> float:
    """When the request arrived, in Unix seconds: the "now" of every replay window."""
    return time.time()


@functools.lru_cache(maxsize=4)
def _trusted_certificates(path: Path) -> ses.CertificateStore:
    return ses.CertificateStore.from_pem(path.read_bytes())


def sns_certificates(rt: Runtime = Depends(runtime)) -> ses.CertificateStore:
    """The deployment's own SNS certificates when it names a file, else fetched ones."""
    path = rt.settings.sns_certificate_file
    return default_certificates() if path is None else _trusted_certificates(path)


def sns_confirmation() -> ConfirmSubscription:
    """How an SNS subscription is confirmed: a GET of its SubscribeURL."""
    return ses.confirm_subscription


@router.post("/{provider}")
async def webhook(
    provider: str,
    request: Request,
    rt: Runtime = Depends(runtime),
    now_s: float = Depends(received_at_s),
    certificates: ses.CertificateStore = Depends(sns_certificates),
    confirm: ConfirmSubscription = Depends(sns_confirmation),
) -> JSONResponse:
    """Verify, parse and record one provider webhook."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"detail": "body too large"}, status_code=413)

    return await run_in_threadpool(
        _process, rt, provider, dict(request.headers), body, now_s, certificates, confirm
    )


def _process(
    rt: Runtime,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    now_s: float,
    certificates: ses.CertificateStore,
    confirm: ConfirmSubscription,
) -> JSONResponse:
    """The blocking part: verification may fetch a certificate; recording writes the database."""

    def seen_token(token: str) -> bool:
        # Shared by every web process: a Mailgun token is good once within the replay window.
        fresh = rt.redis.set(
            f"newsletter:webhook-token:{token}", "1", nx=True, ex=int(2 * DEFAULT_REPLAY_WINDOW_S)
        )
        return not fresh

    try:
        result = handle(
            provider,
            headers,
            body,
            secrets_of(rt),
            now_s,
            certificates=certificates,
            seen_token=seen_token,
        )
        if result.confirmation is not None:
            confirm(result.confirmation)
            return JSONResponse({"confirmed": result.confirmation.topic_arn})
    except NotFound as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    except WebhookAuthError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401)
    except WebhookPayloadError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    policy = policy_of(rt.settings)
    recorded = 0
    with rt.session() as session, session.begin():
        for event in result.events:
            recorded += int(record_provider_event(session, event, policy))
    return JSONResponse({"received": len(result.events), "recorded": recorded})
