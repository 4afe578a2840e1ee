"""The HTTP app: reader pages, operator API, provider webhooks, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from worker.config import Settings
from worker.errors import Conflict, InputError, InvalidToken, NewsletterError, NotFound
from worker.runtime import Runtime, open_runtime


def create_app(settings: Settings, rt: Runtime | None = None) -> FastAPI:
    """The ASGI app; ``rt`` may be given (tests), else it is opened at startup."""
    from worker.web import (
        archive,
        console,
        operator,
        problems,
        reader_errors,
        readers,
        unsubscribe,
        webhooks,
    )
    from worker.web.deps import metrics_reader
    from worker.web.metrics import render_metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = rt or open_runtime(settings)
        app.state.rt = runtime
        yield
        if rt is None:
            runtime.close()

    app = FastAPI(title="Weekly AI Tool Verdicts — newsletter", version="0.1.0", lifespan=lifespan)
    app.include_router(readers.router)
    app.include_router(unsubscribe.router)
    app.include_router(operator.router)
    app.include_router(webhooks.router)
    app.include_router(console.router)
    app.include_router(archive.router)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> JSONResponse:
        """Database and Redis reachability."""
        runtime: Runtime = request.app.state.rt
        checks: dict[str, str] = {}
        try:
            with runtime.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure is the answer here, not an error
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            runtime.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", **checks},
            status_code=200 if healthy else 503,
        )

    @app.get("/metrics", tags=["health"])
    def metrics(runtime: Runtime = Depends(metrics_reader)) -> Response:
        """Prometheus text exposition (bearer: the metrics token if set, else the operator one)."""
        body, content_type = render_metrics(runtime)
        return Response(body, media_type=content_type)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(InvalidToken)
    async def bad_token(_request: Request, exc: InvalidToken) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(NewsletterError)
    async def other(_request: Request, exc: NewsletterError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # Problem details under /api, then HTML pages for reader paths; each hands any other path
    # to the handler that was in place before it.
    problems.install(app)
    reader_errors.install(app)
    return app
