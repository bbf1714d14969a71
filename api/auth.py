"""Who is calling: a studio API key as `Authorization: Bearer cs-…`; without a key, the local owner, but only on a
studio without logins and only from this machine (loopback)."""

from __future__ import annotations

import ipaddress

import anyio
from fastapi import Request

from engines import accounts
from engines.accounts import Actor


class NotAuthenticated(Exception):
    """401: no key where one is needed, or a key that is unknown, revoked or of a disabled account."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def bearer_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer KEY` (or `X-API-Key: KEY`), else None."""
    header = request.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return (request.headers.get("x-api-key") or "").strip() or None


def from_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_actor(request: Request) -> Actor:
    """The acting user of an API request, or NotAuthenticated (one sentence, never says which part was wrong)."""
    key = bearer_key(request)
    if key is not None:
        actor = accounts.actor_for_api_key(key)
        if actor is None:
            raise NotAuthenticated("Invalid API key: it is unknown, revoked, or its account is disabled.")
        return actor
    if from_loopback(request):  # a laptop studio without accounts: the local owner, from this machine only
        owner = accounts.local_owner()
        if owner is not None:
            return owner
        try:  # no owner yet (a fresh database): actor_for makes one, unless the studio asks for logins
            return accounts.actor_for(None)
        except accounts.PermissionDenied:  # the studio has logins: a key is needed
            pass
    raise NotAuthenticated("An API key is required: send it as 'Authorization: Bearer cs-…' "
                           "(create one in the Team tab or with: python launch.py keys create NAME).")


async def acting_user(request: Request) -> Actor:
    """FastAPI dependency: the acting user (the key lookup is a database read, done off the event loop)."""
    actor = getattr(request.state, "actor", None)
    if actor is None:
        actor = await anyio.to_thread.run_sync(resolve_actor, request)
        request.state.actor = actor
    return actor
