"""The Team tab: who you are, your API keys, and (admins) the accounts of the team."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines import accounts
from engines.accounts import AccountError, PermissionDenied
from studio.choices import model_choices
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of
from studio.services import Services


@dataclass
class AccountTab:
    refresh: dict  # fn/inputs/outputs that show the acting user's state (wired to page load and the tab's select)


def whoami_html(lang: str, request: gr.Request | None) -> str:
    """The header's badge: who is logged in, their role, and a logout link (a local studio says it has no accounts)."""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        return f"<div class='whoami' id='whoami'><span class='whoami-local'>{html.escape(t(lang, 'acct.local'))}</span></div>"
    actor = actor_of(request)
    role = t(lang, f"acct.role.{actor.role}")
    return (f"<div class='whoami' id='whoami'><b id='whoami-name'>{html.escape(actor.name)}</b>"
            f" <span class='whoami-role' id='whoami-role'>{html.escape(role)}</span>"
            f" · <a href='/logout' id='logout-link'>{html.escape(t(lang, 'acct.logout'))}</a></div>")


def studio_base_url(request: gr.Request | None) -> str:
    """The address this page was reached at (behind a proxy: the forwarded one), for the usage examples."""
    headers = getattr(request, "headers", None) or {}
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1:7860"
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}"


def key_usage_markdown(lang: str, base: str, key: str, model: str = "MODEL") -> str:
    """How to use a new key: the OpenAI-compatible base URL with curl, the openai SDK and LangChain."""
    return t(lang, "acct.key_usage", base=base) + f"""

```bash
curl {base}/v1/chat/completions -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
  -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'
```

```python
from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="{key}")
client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello"}}])

from langchain_openai import ChatOpenAI
ChatOpenAI(base_url="{base}/v1", api_key="{key}", model="{model}").invoke("Hello")
```"""


KEY_COLUMNS = ("acct.col.id", "acct.col.label", "acct.col.prefix", "acct.col.user", "acct.col.created", "acct.col.last_used",
               "acct.col.state")
USER_COLUMNS = ("acct.col.name", "acct.col.role", "acct.col.state", "acct.col.created")
ROLE_CHOICES = [(f"acct.role.{r}", r) for r in accounts.ROLES[::-1]]


def _keys_frame(lang: str, rows: list[dict]) -> pd.DataFrame:
    cols = [t(lang, c) for c in KEY_COLUMNS]
    data = [[k["id"], k["name"], k["prefix"] + "…", k["user"], f"{k['created_at']:%Y-%m-%d %H:%M}",
             f"{k['last_used_at']:%Y-%m-%d %H:%M}" if k["last_used_at"] else "–",
             t(lang, "acct.revoked") if k["revoked"] else t(lang, "acct.active")] for k in rows]
    return pd.DataFrame(data, columns=cols)


def _users_frame(lang: str, rows: list[dict]) -> pd.DataFrame:
    cols = [t(lang, c) for c in USER_COLUMNS]
    data = [[u["name"], t(lang, f"acct.role.{u['role']}"),
             t(lang, "acct.disabled") if u["disabled"] else (t(lang, "acct.active") if u["can_log_in"] else t(lang, "acct.no_password")),
             f"{u['created_at']:%Y-%m-%d %H:%M}"] for u in rows]
    return pd.DataFrame(data, columns=cols)


# Opening the tab reads the keys and the team while a click made right after it (Create key) may already be writing:
# without an order, the opening's read (no new key yet) could land last and hide the key just made. One queue for
# the tab's events, one at a time and in the order they came (each is a few milliseconds of database work).
IN_ORDER = {"concurrency_id": "team-tab", "concurrency_limit": 1}


def build_account_tab(services: Services, tr: Translatable, lang_state: Any) -> AccountTab:
    lang0 = services.settings.ui_language
    me = gr.Markdown("", elem_id="acct-me")
    with tr.add(gr.Accordion(t(lang0, "acct.keys"), open=True, elem_id="acct-keys"), label="acct.keys"):
        tr.add(gr.Markdown(t(lang0, "acct.keys_help"), elem_id="acct-keys-help"), value="acct.keys_help")
        with gr.Row(equal_height=False):
            key_label = tr.add(gr.Textbox(label=t(lang0, "acct.key_label"), value="default", scale=3, elem_id="acct-key-label"),
                               label="acct.key_label")
            key_create = tr.add(gr.Button(t(lang0, "acct.key_create"), variant="primary", scale=1, elem_id="acct-key-create"),
                                value="acct.key_create")
        new_key = tr.add(gr.Textbox(label=t(lang0, "acct.key_once"), visible=False, interactive=False, buttons=["copy"],
                                    elem_id="acct-new-key"), label="acct.key_once")
        key_usage = gr.Markdown("", visible=False, elem_id="acct-key-usage")
        keys_table = tr.add(gr.Dataframe(_keys_frame(lang0, []), interactive=False, elem_id="acct-keys-table", max_height=260),
                            headers=KEY_COLUMNS, cells={6: ("acct.revoked", "acct.active")})
        with gr.Row(equal_height=True):
            revoke_id = tr.add(gr.Number(value=None, label=t(lang0, "acct.key_id"), precision=0, scale=1, elem_id="acct-revoke-id"),
                               label="acct.key_id")
            revoke_btn = tr.add(gr.Button(t(lang0, "acct.key_revoke"), variant="stop", scale=1, elem_id="acct-key-revoke"),
                                value="acct.key_revoke")
    with tr.add(gr.Accordion(t(lang0, "acct.users"), open=True, elem_id="acct-users"), label="acct.users"):
        users_note = gr.Markdown("", elem_id="acct-users-note")
        users_table = tr.add(gr.Dataframe(_users_frame(lang0, []), interactive=False, elem_id="acct-users-table", max_height=300),
                             headers=USER_COLUMNS, cells={1: tuple(k for k, _ in ROLE_CHOICES),
                                                          2: ("acct.disabled", "acct.active", "acct.no_password")})
        with gr.Row(equal_height=True):
            u_name = tr.add(gr.Textbox(label=t(lang0, "acct.user_name"), elem_id="acct-user-name"), label="acct.user_name")
            u_pass = tr.add(gr.Textbox(label=t(lang0, "acct.password"), type="password", elem_id="acct-user-password"),
                            label="acct.password")
            u_role = tr.add(gr.Radio(choices_for(lang0, ROLE_CHOICES), value="member", label=t(lang0, "acct.role"),
                                     elem_id="acct-user-role"), label="acct.role", choices=ROLE_CHOICES)
        with gr.Row():
            add_btn = tr.add(gr.Button(t(lang0, "acct.add"), variant="primary", elem_id="acct-add"), value="acct.add")
            passwd_btn = tr.add(gr.Button(t(lang0, "acct.passwd"), elem_id="acct-passwd"), value="acct.passwd")
            role_btn = tr.add(gr.Button(t(lang0, "acct.set_role"), elem_id="acct-set-role"), value="acct.set_role")
            disable_btn = tr.add(gr.Button(t(lang0, "acct.disable"), variant="stop", elem_id="acct-disable"), value="acct.disable")
            enable_btn = tr.add(gr.Button(t(lang0, "acct.enable"), elem_id="acct-enable"), value="acct.enable")
        users_msg = gr.Markdown("", elem_id="acct-users-msg")
    admin_controls = [u_name, u_pass, u_role, add_btn, passwd_btn, role_btn, disable_btn, enable_btn]

    def show(lang: str, request: gr.Request):
        """Who you are, your keys and (admins) the team's accounts; members see the user controls disabled, with why."""
        lang = lang or lang0
        actor = actor_of(request)
        if getattr(request, "username", None):
            who = t(lang, "acct.me", name=actor.name, role=t(lang, f"acct.role.{actor.role}"))
        else:  # the passwordless local owner: said in the page's language, not by its stored name
            who = t(lang, "acct.me_local") + "  \n" + t(lang, "acct.local_help")
        keys = _keys_frame(lang, accounts.list_api_keys(actor, everyone=actor.is_admin))
        if actor.is_admin:
            users, note = _users_frame(lang, accounts.list_users(actor)), ""
        else:
            users, note = _users_frame(lang, []), f"**{t(lang, 'acct.admin_only')}**"
        roles = gr.update(choices=choices_for(lang, ROLE_CHOICES), interactive=actor.is_admin)
        return [who, keys, users, note, *[roles if c is u_role else gr.update(interactive=actor.is_admin) for c in admin_controls]]

    show_outputs = [me, keys_table, users_table, users_note, *admin_controls]

    def create_key(label: str, lang: str, request: gr.Request):
        actor = actor_of(request)
        _, key = accounts.create_api_key(actor, label)
        gr.Info(t(lang or lang0, "acct.key_created"))
        served = model_choices(services)
        usage = key_usage_markdown(lang or lang0, studio_base_url(request), key, served[0][1] if served else "MODEL")
        return (gr.update(value=key, visible=True), gr.update(value=usage, visible=True),
                _keys_frame(lang or lang0, accounts.list_api_keys(actor, everyone=actor.is_admin)))

    def revoke_key(key_id: float | None, lang: str, request: gr.Request):
        actor = actor_of(request)
        if key_id is None:
            raise gr.Error(t(lang or lang0, "acct.key_pick"))
        try:
            accounts.revoke_api_key(actor, int(key_id))
        except AccountError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang or lang0, "acct.key_revoked", id=int(key_id)))
        return _keys_frame(lang or lang0, accounts.list_api_keys(actor, everyone=actor.is_admin))

    def _user_action(action, done_key: str):
        def handler(name: str, password: str, role: str, lang: str, request: gr.Request):
            lang = lang or lang0
            actor = actor_of(request)
            try:
                action(actor, (name or "").strip(), password or "", role)
            except (AccountError, PermissionDenied) as exc:
                return gr.skip(), f"⚠ {html.escape(str(exc))}", gr.skip()
            # A member may change their own password: say it worked, without listing the team (admins only).
            table = _users_frame(lang, accounts.list_users(actor)) if actor.is_admin else gr.skip()
            return table, t(lang, done_key, name=html.escape(name.strip())), ""
        return handler

    user_in = [u_name, u_pass, u_role, lang_state]
    user_out = [users_table, users_msg, u_pass]
    add_btn.click(_user_action(lambda a, n, p, r: accounts.add_user(n, p, role=r, by=a), "acct.added"), user_in, user_out,
                  api_name="add_user", **IN_ORDER)
    passwd_btn.click(_user_action(lambda a, n, p, r: accounts.set_password(n, p, by=a), "acct.passwd_done"), user_in, user_out,
                     api_name="set_user_password", **IN_ORDER)
    role_btn.click(_user_action(lambda a, n, p, r: accounts.set_role(n, r, by=a), "acct.role_done"), user_in, user_out,
                   api_name="set_user_role", **IN_ORDER)
    disable_btn.click(_user_action(lambda a, n, p, r: accounts.set_disabled(n, True, by=a), "acct.disabled_done"), user_in,
                      user_out, api_name="disable_user", **IN_ORDER)
    enable_btn.click(_user_action(lambda a, n, p, r: accounts.set_disabled(n, False, by=a), "acct.enabled_done"), user_in,
                     user_out, api_name="enable_user", **IN_ORDER)
    key_create.click(create_key, [key_label, lang_state], [new_key, key_usage, keys_table], api_name="create_api_key",
                     **IN_ORDER)
    revoke_btn.click(revoke_key, [revoke_id, lang_state], [keys_table], api_name="revoke_api_key", **IN_ORDER)
    return AccountTab(refresh={"fn": show, "inputs": [lang_state], "outputs": show_outputs, **IN_ORDER})
