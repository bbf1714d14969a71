"""Open or delete one History item (a chat, run, dataset version, battle or evaluation), files included."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from engines.accounts import Actor, require_owner
from engines.settings import Settings
from storage import chats, evals, runs
from storage.models import Battle, DatasetVersion, EvalRun, TrainingRun


class DeleteRefused(ValueError):
    """The item is in use (a running job, a version a run trained on); the message says what to do."""


def _inside(settings: Settings, path: str | Path | None, folder: Path | None = None) -> Path | None:
    """A path to remove only when it lies strictly inside `folder` (default: the data folder), never the folder
    itself or anything else on disk: a hand-edited row cannot make a delete remove a whole area of the studio."""
    if not path:
        return None
    root = (folder or settings.data_dir).resolve()
    p = Path(path).resolve()
    return p if p.is_relative_to(root) and p != root else None


def parse_key(key: str) -> tuple[str, int]:
    """'kind:id' (as History lists them) → (kind, id), or one clear sentence."""
    kind, _, raw = (key or "").partition(":")
    if kind not in ("chat", "run", "dataset", "battle", "eval") or not raw.strip().isdigit():
        raise ValueError(f"Not a History item: {str(key)[:60]!r} (expected kind:id, e.g. chat:12).")
    return kind, int(raw)


def describe(kind: str, item_id: int, actor: Actor) -> str | None:
    """A markdown summary of the item (None when it no longer exists or is another person's private item)."""
    if kind == "chat":
        conv = chats.get_conversation(item_id)
        if conv is None or conv.owner_id != actor.id:
            return None
        turns = [f"**{m.role}**{f' · {html.escape(m.model)}' if m.role == 'assistant' and m.model else ''}\n\n{_quote(m.content)}"
                 for m in chats.active_messages(item_id)]
        head = f"### {html.escape(conv.title)}\n{html.escape(conv.model or '')} · {conv.updated_at:%Y-%m-%d %H:%M}"
        return "\n\n".join([head, *turns[:40], *(["…"] if len(turns) > 40 else [])])
    if kind == "run":
        run = runs.get_run(item_id)
        if run is None:
            return None
        metrics = runs.run_metrics(run)
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(metrics.items())[:8])
        return (f"### {html.escape(run.name)}\n{run.status} · {html.escape(run.base_model)} · {run.method} · "
                f"step {run.step}/{run.total_steps or '?'}\n\n{html.escape(run.dataset)}\n\n{html.escape(shown)}"
                + (f"\n\n⚠ {html.escape(run.error[:500])}" if run.error else ""))
    if kind == "dataset":
        v = DatasetVersion.get_or_none(DatasetVersion.id == item_id)
        if v is None:
            return None
        used = [r.name for r in TrainingRun.select().where(TrainingRun.dataset_version_id == v.id)]
        return (f"### {html.escape(v.dataset.name)} v{v.version}\n{v.row_count} rows · {v.created_at:%Y-%m-%d %H:%M}"
                + (f"\n\n{html.escape(v.note)}" if v.note else "")
                + (f"\n\nTrained: {html.escape(', '.join(used))}" if used else ""))
    if kind == "battle":
        b = Battle.get_or_none(Battle.id == item_id)
        if b is None or b.owner_id != actor.id:
            return None
        return (f"### {html.escape(b.model_a)} vs {html.escape(b.model_b)} · {b.vote or 'no vote'}\n\n{_quote(b.prompt)}\n\n"
                f"**A · {html.escape(b.model_a)}**\n\n{_quote(b.answer_a or '')}\n\n**B · {html.escape(b.model_b)}**\n\n{_quote(b.answer_b or '')}")
    if kind == "eval":
        e = evals.get_eval(item_id)
        if e is None:
            return None
        summary = evals.loads(e.summary, {})
        lines = [f"- **{html.escape(m)}**: " + ", ".join(
            f"{k} {v:.3g}" for k, v in s.items() if k in ("rouge_l", "bleu", "win_rate", "lc_win_rate") and v is not None)
            for m, s in (summary.get("models") or {}).items()]
        return (f"### {html.escape(e.name)}\n{e.status} · {html.escape(e.source)} · judge {html.escape(e.judge or '–')}\n\n"
                + "\n".join(lines))
    return None


def in_progress(kind: str, item_id: int) -> bool:
    """Whether the item is still changing (a queued or running fine-tune or evaluation), so a view of it goes stale."""
    if kind == "run":
        run = runs.get_run(item_id)
        return run is not None and run.status in runs.ACTIVE
    if kind == "eval":
        e = evals.get_eval(item_id)
        return e is not None and e.status in evals.ACTIVE
    return False


def delete(settings: Settings, kind: str, item_id: int, actor: Actor) -> str:
    """Delete one item and its files inside the data folder; returns what was deleted (for the message).

    Chats and battles only by their owner; runs, dataset versions and evaluations by their owner or an admin."""
    if kind == "chat":
        conv = chats.get_conversation(item_id)
        if conv is None or conv.owner_id != actor.id:
            raise KeyError(item_id)
        chats.delete_conversation(item_id)
        return conv.title
    if kind == "run":
        run = runs.get_run(item_id)
        if run is None:
            raise KeyError(item_id)
        require_owner(actor, run.owner_id, "fine-tune run")
        if run.status in runs.ACTIVE:
            raise DeleteRefused(f"{run.name} is {run.status}: cancel it first.")
        from storage import catalog

        entry = catalog.get_model(run.name)
        if entry is not None and entry.kind == "adapter":
            catalog.delete_model(run.name)
        TrainingRun.delete().where(TrainingRun.id == item_id).execute()
        if folder := _inside(settings, run.run_dir, settings.runs_path):
            shutil.rmtree(folder, ignore_errors=True)
        return run.name
    if kind == "dataset":
        v = DatasetVersion.get_or_none(DatasetVersion.id == item_id)
        if v is None:
            raise KeyError(item_id)
        require_owner(actor, v.dataset.owner_id, "dataset")
        used = [r.name for r in TrainingRun.select().where((TrainingRun.dataset_version_id == v.id) | (TrainingRun.dataset == v.path))]
        if used:
            raise DeleteRefused(f"{v.dataset.name} v{v.version} trained {', '.join(used)}: delete those runs first (lineage).")
        label = f"{v.dataset.name} v{v.version}"
        DatasetVersion.update(parent=None).where(DatasetVersion.parent == v.id).execute()
        v.delete_instance()
        if file := _inside(settings, v.path, settings.datasets_path):
            file.unlink(missing_ok=True)
        return label
    if kind == "battle":
        if not Battle.delete().where((Battle.id == item_id) & (Battle.owner_id == actor.id)).execute():
            raise KeyError(item_id)
        return f"battle #{item_id}"
    if kind == "eval":
        e = evals.get_eval(item_id)
        if e is None:
            raise KeyError(item_id)
        require_owner(actor, e.owner_id, "evaluation")
        if e.status in evals.ACTIVE:
            raise DeleteRefused(f"{e.name} is {e.status}: stop it first.")
        EvalRun.delete().where(EvalRun.id == item_id).execute()
        if folder := _inside(settings, settings.data_dir / "evals" / str(item_id)):
            shutil.rmtree(folder, ignore_errors=True)
        return e.name
    raise ValueError(f"unknown kind {kind!r}")


def _quote(text: str) -> str:
    return "\n".join("> " + html.escape(line) for line in str(text).splitlines() or [""])

