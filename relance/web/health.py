"""``GET /healthz``: the service is up and its store answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import text

from relance.store import Store
from relance.web.app import store_of

router = APIRouter()


@router.get("/healthz")
def health(store: Annotated[Store, Depends(store_of)]) -> dict[str, str]:
    with store.reading() as connection:
        connection.execute(text("SELECT 1"))
    return {"status": "ok"}
