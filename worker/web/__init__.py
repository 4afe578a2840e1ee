"""The HTTP app: reader pages, operator API, provider webhooks, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from worker.config import Settings
from worker.errors import InputError, InvalidToken, NewsletterError, NotFound
from worker.runtime import Runtime, open_runtime


def create_app(settings: Settings, rt: Runtime | None = None) -> FastAPI:
    """The ASGI app; ``rt`` may be given (tests), else it is opened at startup."""
    from worker.web import archive, operator, reader_errors, readers, unsubscribe, webhooks
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
    def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        body, content_type = render_metrics(request.app.state.rt)
        return Response(body, media_type=content_type)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(InvalidToken)
    async def bad_token(_request: Request, exc: InvalidToken) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(NewsletterError)
    async def other(_request: Request, exc: NewsletterError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    reader_errors.install(app)  # last: wraps the handlers above for reader paths only
    return app
