"""Accounts on a real SQLite file: users, roles, the first admin, API keys (argon2 / SHA-256, never plain text)."""

from __future__ import annotations

import pytest

from engines import accounts
from engines.accounts import AccountError, PermissionDenied
from storage import chats
from storage.models import ApiKey, User


def test_users_are_stored_with_an_argon2_hash_and_a_role(db):
    alice = accounts.add_user("alice", "correct horse", role="admin")
    bob = accounts.add_user("bob", "battery staple")
    assert (alice.role, bob.role) == ("admin", "member")
    row = User.get(User.name == "bob")
    assert row.password_hash.startswith("$argon2") and "battery" not in row.password_hash
    assert accounts.check_login("bob", "battery staple") and not accounts.check_login("bob", "battery stapler")
    assert [u["name"] for u in accounts.list_users()] == ["alice", "bob"]


@pytest.mark.parametrize("name,password,role,message", [
    ("", "long enough", "member", "user name"),
    ("bad name!", "long enough", "member", "user name"),
    ("carol", "short", "member", "8 characters"),
    ("carol", "long enough", "owner", "role must be"),
])
def test_bad_accounts_are_refused_with_one_sentence(db, name, password, role, message):
    with pytest.raises(AccountError, match=message):
        accounts.add_user(name, password, role=role)
    assert User.select().count() == 0


def test_only_admins_manage_users_and_the_last_admin_stays(db):
    admin = accounts.add_user("admin1", "password-1", role="admin")
    member = accounts.add_user("member1", "password-2")
    with pytest.raises(PermissionDenied, match="Only an admin"):
        accounts.add_user("eve", "password-3", by=member)
    with pytest.raises(PermissionDenied):
        accounts.set_disabled("admin1", True, by=member)
    with pytest.raises(PermissionDenied):
        accounts.set_password("admin1", "new-password", by=member)
    accounts.set_password("member1", "changed-pass", by=member)  # your own password is yours to change
    assert accounts.check_login("member1", "changed-pass")
    with pytest.raises(AccountError, match="last admin"):
        accounts.set_disabled("admin1", True, by=admin)
    with pytest.raises(AccountError, match="last admin"):
        accounts.set_role("admin1", "member", by=admin)
    accounts.set_disabled("member1", True, by=admin)
    assert not accounts.check_login("member1", "changed-pass")  # disabled: the right password is not enough
    with pytest.raises(PermissionDenied):
        accounts.actor_for("member1")


def test_auth_setting_becomes_the_first_admin_and_owns_earlier_rows(db):
    local = accounts.bootstrap(None)  # a laptop studio: a passwordless owner, no login needed
    assert local.is_admin and not accounts.login_required()
    conv = chats.create_conversation(owner_id=local.id)
    orphan = chats.create_conversation()  # e.g. made before accounts existed
    admin = accounts.bootstrap(("boss", "s3cret-pass"))
    assert admin.name == "boss" and admin.id == local.id and accounts.login_required()
    assert accounts.check_login("boss", "s3cret-pass")
    assert chats.get_conversation(conv.id).owner_id == admin.id and chats.get_conversation(orphan.id).owner_id == admin.id
    accounts.bootstrap(("boss", "another-pass"))  # AUTH changed: the new password wins, still one user
    assert accounts.check_login("boss", "another-pass") and not accounts.check_login("boss", "s3cret-pass")
    assert User.select().count() == 1
    with pytest.raises(PermissionDenied, match="Log in"):
        accounts.actor_for(None)  # with logins on, an anonymous request acts as nobody


def test_api_keys_are_shown_once_stored_hashed_and_revocable(db):
    alice = accounts.add_user("alice", "password-a", role="admin")
    bob = accounts.add_user("bob", "password-b")
    key_id, key = accounts.create_api_key(bob, "laptop")
    assert key.startswith("cs-") and len(key) > 40
    stored = ApiKey.get_by_id(key_id)
    assert key not in (stored.key_hash, stored.prefix) and stored.prefix == key[:10]
    assert accounts.actor_for_api_key(key) == bob
    assert accounts.actor_for_api_key(key + "x") is None and accounts.actor_for_api_key("") is None
    assert [k["name"] for k in accounts.list_api_keys(bob)] == ["laptop"]
    assert accounts.list_api_keys(alice) == []
    with pytest.raises(PermissionDenied):
        accounts.list_api_keys(bob, everyone=True)
    other_id, _ = accounts.create_api_key(alice)
    with pytest.raises(AccountError, match="no API key"):
        accounts.revoke_api_key(bob, other_id)  # not bob's
    accounts.set_disabled("bob", True, by=alice)
    assert accounts.actor_for_api_key(key) is None  # a disabled person's keys stop working
    accounts.set_disabled("bob", False, by=alice)
    accounts.revoke_api_key(bob, key_id)
    assert accounts.actor_for_api_key(key) is None
    assert accounts.list_api_keys(bob)[0]["revoked"] is True


def test_login_slows_down_after_repeated_failures():
    assert [accounts.login_delay(n, 5) for n in (0, 4)] == [0.0, 0.0]
    assert 0 < accounts.login_delay(5, 5) < accounts.login_delay(6, 5) < accounts.login_delay(7, 5)
    assert accounts.login_delay(100, 5) == accounts.MAX_DELAY_S


def test_the_passwordless_local_owner_sets_a_password_before_adding_people(db):
    owner = accounts.bootstrap(None)
    with pytest.raises(AccountError, match="set a password for yourself"):
        accounts.add_user("bob", "password-b", by=owner)
    assert not accounts.login_required()  # nothing changed: still a laptop studio without logins
    accounts.set_password(owner.name, "owner-password", by=owner)
    accounts.add_user("bob", "password-b", by=owner)
    assert accounts.login_required() and accounts.check_login(owner.name, "owner-password")


def test_tries_sent_together_each_count_and_wait_longer(db):
    """A burst of parallel tries cannot share one count: each is counted before it is checked (an attacker's finding)."""
    from concurrent.futures import ThreadPoolExecutor

    accounts._failures.pop("eve", None)
    with ThreadPoolExecutor(8) as pool:
        reserved = list(pool.map(lambda _: accounts.reserve_login_attempt("eve", max_failures=5), range(24)))
    assert sorted(f for _, f, _ in reserved) == list(range(24))
    assert max(d for _, _, d in reserved) == accounts.MAX_DELAY_S and sum(d == 0 for _, _, d in reserved) == 5
    accounts.add_user("eve", "eve-password-1")
    name, failures, delay = accounts.reserve_login_attempt("eve", max_failures=5)
    assert delay == accounts.MAX_DELAY_S and accounts.verify_login(name, "eve-password-1", failures=failures)
    assert accounts.reserve_login_attempt("eve", max_failures=5)[2] == 0.0  # a success resets the count


def test_the_local_owner_acts_for_keyless_calls_only_while_nobody_logs_in(db):
    """`local_owner` (one query, the API's keyless path) answers as `actor_for(None)` does, and None once logins exist."""
    owner = accounts.bootstrap(None)
    assert accounts.local_owner() == owner == accounts.actor_for(None)
    accounts.set_password(owner.name, "a long passphrase 1", by=owner)  # the owner's password turns logins on
    assert accounts.local_owner() is None
    with pytest.raises(accounts.PermissionDenied):
        accounts.actor_for(None)
