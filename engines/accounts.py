"""People: accounts with argon2 passwords and roles, per-user API keys, and the rules of who may do what.

Every engine call that reads or writes a person's rows takes an `Actor`. The rules live here:
  * conversations, their feedback and battles are private to their owner;
  * datasets, fine-tune runs and evaluations are visible to the team, changed only by their owner or an admin;
  * servers, downloads, exports, archives and users are admin-only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from storage import users as store

log = structlog.get_logger(__name__)

Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")
LOCAL_OWNER = "owner"  # the passwordless admin a studio without accounts acts as
KEY_PREFIX = "cs-"

_hasher = PasswordHasher()
# Verified when a name is unknown, so a wrong name costs as long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A bad name, password, role or key, said in one sentence."""


class PermissionDenied(PermissionError):
    """The acting user may not do this; the message says why."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: every engine call that touches a person's rows is given one."""

    id: int
    name: str
    role: Role = "member"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# ---- passwords and users -------------------------------------------------------------

def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AccountError("A password needs at least 8 characters.")
    return _hasher.hash(password)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError("A user name is 1-64 letters, digits, '.', '_', '-' or '@'.")
    return name


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"The role must be one of: {', '.join(ROLES)}.")
    return role  # type: ignore[return-value]


def _actor(user) -> Actor:
    return Actor(id=user.id, name=user.name, role=user.role)


def add_user(name: str, password: str, *, role: str = "member", by: Actor | None = None) -> Actor:
    """Create an account (`by` must be an admin, or None from the command line)."""
    if by is not None:
        require_admin(by, "add users")
        me = store.get_user(by.id)
        if me is not None and not me.password_hash:
            # The laptop owner has no password: the first account switches logins on, and they would be locked out.
            raise AccountError(f"First set a password for yourself (user {by.name}): adding someone turns logins on, "
                               "and you will need it to log in.")
    name, role = _check_name(name), _check_role(role)
    if store.get_user_by_name(name):
        raise AccountError(f"There is already a user named {name}.")
    user = store.create_user(name, hash_password(password), role)
    log.info("users.added", name=name, role=role, by=by.name if by else "cli")
    if role == "admin":
        store.adopt_unowned_rows(store.first_admin().id)
    return _actor(user)


def list_users(by: Actor | None = None) -> list[dict]:
    """Every account (no hashes): name, role, disabled, created."""
    if by is not None:
        require_admin(by, "manage users")
    return [{"id": u.id, "name": u.name, "role": u.role, "disabled": bool(u.disabled), "can_log_in": bool(u.password_hash),
             "created_at": u.created_at} for u in store.list_users()]


def _user_or_error(name: str):
    user = store.get_user_by_name((name or "").strip())
    if user is None:
        raise AccountError(f"There is no user named {name}.")
    return user


def set_disabled(name: str, disabled: bool = True, *, by: Actor | None = None) -> None:
    if by is not None:
        require_admin(by, "manage users")
    user = _user_or_error(name)
    if disabled and user.role == "admin" and not user.disabled:
        others = [u for u in store.list_users() if u.role == "admin" and not u.disabled and u.id != user.id and u.password_hash]
        if not others:
            raise AccountError("This is the last admin who can log in; add another admin first.")
    store.update_user(user.id, disabled=disabled)
    log.info("users.disabled" if disabled else "users.enabled", name=user.name, by=by.name if by else "cli")


def set_password(name: str, password: str, *, by: Actor | None = None) -> None:
    """A new password (an admin for anyone, a person for themself)."""
    user = _user_or_error(name)
    if by is not None and not by.is_admin and by.id != user.id:
        raise PermissionDenied("Only an admin can change another person's password.")
    store.update_user(user.id, password_hash=hash_password(password))
    _failures.pop(user.name, None)
    log.info("users.password_changed", name=user.name, by=by.name if by else "cli")


def set_role(name: str, role: str, *, by: Actor | None = None) -> None:
    if by is not None:
        require_admin(by, "manage users")
    user, role = _user_or_error(name), _check_role(role)
    if user.role == "admin" and role != "admin":
        others = [u for u in store.list_users() if u.role == "admin" and not u.disabled and u.id != user.id and u.password_hash]
        if not others:
            raise AccountError("This is the last admin who can log in; add another admin first.")
    store.update_user(user.id, role=role)
    log.info("users.role_changed", name=user.name, role=role, by=by.name if by else "cli")


# ---- logging in ----------------------------------------------------------------------

_failures: dict[str, int] = {}
_failures_lock = threading.Lock()
MAX_DELAY_S = 8.0


def login_delay(failures: int, max_failures: int) -> float:
    """Seconds a try waits after `failures` failures in a row: none up to the limit, then doubling to 8 s."""
    over = failures - max_failures
    return 0.0 if over < 0 else min(0.5 * 2**over, MAX_DELAY_S)


def reserve_login_attempt(name: str, *, max_failures: int = 5) -> tuple[str, int, float]:
    """Count a login try for `name` before it is checked, so tries sent at the same time each count (and each wait
    longer); returns (name, failures before this try, seconds this try must wait). A success resets the count."""
    name = (name or "").strip()
    with _failures_lock:
        failures = _failures.get(name, 0)
        _failures[name] = failures + 1  # pessimistic: undone by a success
    return name, failures, login_delay(failures, max_failures)


def verify_login(name: str, password: str, *, failures: int = 0, delay: float = 0.0) -> bool:
    """The password check of a reserved try (argon2: the same time for an unknown name); logged, never the password."""
    user = store.get_user_by_name(name) if name else None
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    ok = ok and user is not None and bool(user.password_hash) and not user.disabled
    if ok:
        with _failures_lock:
            _failures.pop(name, None)
        if _hasher.check_needs_rehash(stored):
            store.update_user(user.id, password_hash=_hasher.hash(password))
        log.info("login.ok", name=name)
    else:
        reason = "disabled" if user is not None and user.disabled else "bad_credentials"
        log.warning("login.failed", name=name[:64], reason=reason, failures=failures + 1, delayed_s=delay)
    return ok


def check_login(name: str, password: str, *, max_failures: int = 5) -> bool:
    """Gradio's `auth=` check, synchronous: True for an enabled user with this password; repeated failures for a
    name wait longer and longer (the app's async front sleeps without holding a thread: launch.py)."""
    name, failures, delay = reserve_login_attempt(name, max_failures=max_failures)
    if delay:
        time.sleep(delay)
    return verify_login(name, password, failures=failures, delay=delay)


def credentials_version(name: str) -> str | None:
    """A fingerprint that changes with the user's password (None: unknown or disabled); a session that logged in
    with an older one is ended by the login gate."""
    user = store.get_user_by_name((name or "").strip())
    if user is None or user.disabled:
        return None
    return hashlib.sha256((user.password_hash or "").encode("utf-8")).hexdigest()[:16]


def login_required() -> bool:
    """True when some enabled user has a password: then every page and request needs a login."""
    return store.any_login()


def bootstrap(auth_pair: tuple[str, str] | None) -> Actor:
    """At start: make AUTH=user:pass an admin who can log in, and give rows without an owner to the first admin.

    Without AUTH and accounts, a passwordless local owner (admin) is created: a laptop studio needs no login."""
    if auth_pair:
        name, password = _check_name(auth_pair[0]), auth_pair[1]
        user = store.get_user_by_name(name)
        if user is None:
            local = store.get_user_by_name(LOCAL_OWNER)
            if local is not None and not local.password_hash and store.count_users() == 1:
                store.update_user(local.id, name=name)  # the laptop owner's chats become AUTH's first admin's
                user = store.get_user(local.id)
        if user is None:
            user = store.create_user(name, _hasher.hash(password), "admin")
        else:
            try:
                current = bool(user.password_hash) and _hasher.verify(user.password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                current = False
            fields: dict = {"role": "admin", "disabled": False}
            if not current:
                fields["password_hash"] = _hasher.hash(password)
            store.update_user(user.id, **fields)
    owner = store.first_admin()
    if owner is None:
        owner = store.get_user_by_name(LOCAL_OWNER) or store.create_user(LOCAL_OWNER, None, "admin")
        if owner.disabled or owner.role != "admin":
            store.update_user(owner.id, disabled=False, role="admin")
            owner = store.get_user(owner.id)
    adopted = store.adopt_unowned_rows(owner.id)
    if adopted:
        log.info("users.adopted_rows", owner=owner.name, rows=adopted)
    return _actor(owner)


def local_owner() -> Actor | None:
    """The local owner (first admin) while the studio asks for no logins; None once it does (or before bootstrap)."""
    owner = store.owner_if_no_logins()
    return _actor(owner) if owner is not None else None


def actor_for(name: str | None) -> Actor:
    """The Actor for a logged-in name; with no login (a local studio) the first admin. Unknown or disabled: refused."""
    if not name:
        if login_required():
            raise PermissionDenied("Log in first.")
        owner = store.first_admin()
        if owner is None:
            return bootstrap(None)
        return _actor(owner)
    user = store.get_user_by_name(name)
    if user is None or user.disabled:
        raise PermissionDenied("This account does not exist or is disabled.")
    return _actor(user)


# ---- API keys --------------------------------------------------------------------------

def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(actor: Actor, name: str = "default") -> tuple[int, str]:
    """A new key for `actor`: returns (id, the key). The key is shown once; only its hash is stored."""
    name = " ".join((name or "default").split())[:100] or "default"
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = store.add_api_key(actor.id, name, key[:10], _key_hash(key))
    log.info("api_keys.created", user=actor.name, key_id=row.id, prefix=row.prefix)
    return row.id, key


def list_api_keys(actor: Actor, *, everyone: bool = False) -> list[dict]:
    """The actor's keys (an admin may ask for everyone's): id, name, prefix, owner, created, last used, revoked."""
    if everyone:
        require_admin(actor, "see everyone's API keys")
    rows = store.list_api_keys(None if everyone else actor.id)
    return [{"id": k.id, "name": k.name, "prefix": k.prefix, "user": k.user.name, "created_at": k.created_at,
             "last_used_at": k.last_used_at, "revoked": k.revoked_at is not None} for k in rows]


def revoke_api_key(actor: Actor, key_id: int) -> None:
    key = store.get_api_key(int(key_id))
    if key is None or (key.user_id != actor.id and not actor.is_admin):
        raise AccountError(f"There is no API key {key_id} of yours.")
    store.revoke_api_key(key.id)
    log.info("api_keys.revoked", user=actor.name, key_id=key.id)


def actor_for_api_key(key: str | None) -> Actor | None:
    """The enabled user a live key belongs to, else None (the API answers 401)."""
    if not key or not key.startswith(KEY_PREFIX):
        return None
    digest = _key_hash(key)
    row = store.live_api_key(digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.user.disabled:
        return None
    store.mark_api_key_used(row.id)
    return _actor(row.user)


# ---- rules -------------------------------------------------------------------------------

def require_admin(actor: Actor, action: str) -> None:
    """Admins alone start/stop servers, download and export models, move archives and manage users."""
    if not actor.is_admin:
        raise PermissionDenied(f"Only an admin can {action}.")


def may_change(actor: Actor, owner_id: int | None) -> bool:
    """Team rows (datasets, runs, evaluations) are changed by their owner or an admin."""
    return actor.is_admin or (owner_id is not None and owner_id == actor.id)


def require_owner(actor: Actor, owner_id: int | None, what: str) -> None:
    if not may_change(actor, owner_id):
        raise PermissionDenied(f"Only its owner or an admin can change this {what}.")
