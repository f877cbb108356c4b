"""API keys: bearer tokens of which only the SHA-256 is stored. Callers own the transaction.

A token is 32 random bytes (``secrets.token_urlsafe``), so a plain SHA-256 is enough: there is
nothing to brute-force that a slow hash would protect, and a lookup by hash stays one index probe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.models import ApiKey, utcnow

PREFIX = "rlk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(session: Session, owner: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key for ``owner``; returns the row and the token, which is never stored."""
    if not owner or len(owner) > 64:
        raise ValueError("owner must be 1 to 64 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(owner=owner, name=name, key_hash=hash_token(token), created_at=utcnow())
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> ApiKey | None:
    """The live key whose token this is, or None (unknown, malformed or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    # The index found the row by hash; compare again in constant time all the same.
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return row


def revoke(session: Session, key_id: str) -> ApiKey | None:
    """Revoke a key (idempotent); None when there is no such key."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return session.get(ApiKey, key_id, populate_existing=True)


def list_keys(session: Session, owner: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if owner is not None:
        stmt = stmt.where(ApiKey.owner == owner)
    return list(session.scalars(stmt))
