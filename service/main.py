"""The FastAPI application: ``create_app()`` with a lifespan that makes the engine per process.

Nothing connects at import; ``reglab serve`` migrates the database before starting uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from regcore.spec import ExperimentSpec
from service import observability, ui
from service.api import errors, unavailable
from service.api.auth import OPEN_PATHS, AuthMiddleware
from service.api.openapi import document_errors, install_docs, operation_id
from service.api.routes import catalog, compare, datasets, experiments, health, sweeps
from service.api.routes import logs as run_logs
from service.artifacts import open_store
from service.db.session import make_engine, make_sessionmaker
from service.queue import make_celery
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conf = settings or Settings()
        engine = make_engine(conf.database_url)
        app.state.settings = conf
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.celery = make_celery(conf)
        app.state.store = open_store(conf.artifacts)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="RegLab",
        version="1",
        description="Deep-learning regularization experiments as a service.",
        lifespan=lifespan,
        # A redirect to "<path>/" would echo attacker paths ("//host/x") in Location headers.
        redirect_slashes=False,
        # /docs from vendored assets (service/api/openapi.py), never a CDN
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    errors.install(app)
    unavailable.install(app)
    app.add_middleware(AuthMiddleware)
    observability.install(app)  # outermost: request ids, per-route metrics
    install_docs(app)
    ui.install(app)  # the dashboard at / and /ui/ (static; its data from the API)
    app.include_router(experiments.router)
    app.include_router(run_logs.router)
    app.include_router(catalog.router)
    app.include_router(datasets.router)
    app.include_router(health.router)
    app.include_router(sweeps.router)
    app.include_router(compare.router)
    _document_spec_body(app)
    return app


def _document_spec_body(app: FastAPI) -> None:
    """Submit reads its body by hand (size, content type, strict JSON); publish its schema."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            spec = ExperimentSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec.pop("$defs", {}))
            components["ExperimentSpec"] = spec
            app.openapi_schema = document_errors(schema, OPEN_PATHS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
