"""Who is acting in a Gradio event: the logged-in name from `gr.Request`, turned into an engines Actor."""

from __future__ import annotations

from typing import Any

import gradio as gr

from engines.accounts import Actor, PermissionDenied, actor_for


def actor_of(request: gr.Request | None) -> Actor:
    """The acting user of this event (the local owner on a studio without accounts); refuses a stale session."""
    name = getattr(request, "username", None) if request is not None else None
    try:
        return actor_for(name)
    except PermissionDenied as exc:
        raise gr.Error(str(exc)) from None


def ownership_hint(request: gr.Request | None, row: object, lang: str) -> tuple[str, bool]:
    """For a team row (dataset, run, evaluation): a line naming its owner when it is not yours, and whether you may
    change it. Only a hint for the buttons: the engines refuse anyway."""
    from engines.accounts import may_change
    from studio.i18n import t

    actor = actor_of(request)
    owner_id = getattr(row, "owner_id", None)
    may = may_change(actor, owner_id)
    owner = getattr(row, "owner_name", None) or "—"
    line = "" if owner_id == actor.id else t(lang, "own.owner_line" if may else "own.read_only", owner=owner)
    return line, may


def admin_controls(is_admin: bool, controls: int, *, enabled: bool = True) -> list[dict[str, Any]]:
    """Updates for an admin-only block: its reason line (shown to a member) and `controls` inputs and buttons
    (interactive only for an admin, and only when `enabled`, e.g. not offline). The engines refuse a member anyway."""
    return [gr.update(visible=not is_admin), *([gr.update(interactive=is_admin and enabled)] * controls)]
