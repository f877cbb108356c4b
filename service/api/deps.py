"""Request dependencies: a session per request, the settings, the queue client, the store.

The getters are ``async``: they only read ``app.state``, and FastAPI runs a sync dependency in
the thread pool (a hop per dependency per request, costly on a busy machine). ``get_db`` stays
sync: closing the session returns its connection to the pool, which may talk to the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.artifacts import LocalStore
from service.settings import Settings


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


async def get_store(request: Request) -> LocalStore:
    return request.app.state.store


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
StoreDep = Annotated[LocalStore, Depends(get_store)]
