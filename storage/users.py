"""Users and their API keys: every read and write of the `users` and `api_keys` tables."""

from __future__ import annotations

from peewee import fn

from storage.db import database
from storage.models import ApiKey, Battle, Conversation, Dataset, EvalRun, TrainingRun, User, utcnow

OWNED = (Conversation, Battle, Dataset, TrainingRun, EvalRun)


def get_user(user_id: int) -> User | None:
    return User.get_or_none(User.id == user_id)


def get_user_by_name(name: str) -> User | None:
    return User.get_or_none(User.name == name)


def list_users() -> list[User]:
    return list(User.select().order_by(User.id))


def count_users() -> int:
    return User.select().count()


def first_admin() -> User | None:
    """The oldest enabled admin: the owner of rows that existed before accounts."""
    return (User.select().where((User.role == "admin") & (User.disabled == False))  # noqa: E712
            .order_by(User.id).first())


def owner_if_no_logins() -> User | None:
    """`first_admin()`, but only while `any_login()` is false, in one query (the API's hot path for keyless calls)."""
    logins = User.select(User.id).where((User.password_hash.is_null(False)) & (User.disabled == False))  # noqa: E712
    return (User.select().where((User.role == "admin") & (User.disabled == False) & ~fn.EXISTS(logins))  # noqa: E712
            .order_by(User.id).first())


def any_login() -> bool:
    """True when some enabled user has a password, i.e. the studio must ask people to log in."""
    return User.select().where((User.password_hash.is_null(False)) & (User.disabled == False)).exists()  # noqa: E712


def create_user(name: str, password_hash: str | None, role: str) -> User:
    return User.create(name=name, password_hash=password_hash, role=role)


def update_user(user_id: int, **fields: object) -> None:
    User.update(**fields).where(User.id == user_id).execute()


def adopt_unowned_rows(owner_id: int) -> int:
    """Give rows without an owner (made before accounts existed) to `owner_id`; returns how many changed."""
    with database.atomic():
        return sum(m.update(owner_id=owner_id).where(m.owner_id.is_null(True)).execute() for m in OWNED)


def add_api_key(user_id: int, name: str, prefix: str, key_hash: str) -> ApiKey:
    return ApiKey.create(user=user_id, name=name, prefix=prefix, key_hash=key_hash)


def list_api_keys(user_id: int | None = None) -> list[ApiKey]:
    q = ApiKey.select(ApiKey, User).join(User).order_by(ApiKey.id)
    if user_id is not None:
        q = q.where(ApiKey.user == user_id)
    return list(q)


def get_api_key(key_id: int) -> ApiKey | None:
    return ApiKey.get_or_none(ApiKey.id == key_id)


def live_api_key(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash, with its user."""
    return (ApiKey.select(ApiKey, User).join(User)
            .where((ApiKey.key_hash == key_hash) & (ApiKey.revoked_at.is_null(True))).first())


def mark_api_key_used(key_id: int) -> None:
    ApiKey.update(last_used_at=utcnow()).where(ApiKey.id == key_id).execute()


def revoke_api_key(key_id: int) -> None:
    ApiKey.update(revoked_at=utcnow()).where((ApiKey.id == key_id) & (ApiKey.revoked_at.is_null(True))).execute()
