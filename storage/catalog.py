"""The model catalogue (`models` table): bases, adapters with their run, external endpoints."""

from __future__ import annotations

from storage.models import ModelEntry


def upsert_model(name: str, kind: str, *, path: str | None = None, url: str | None = None,
                 parent: str | None = None, run_id: int | None = None) -> ModelEntry:
    entry = ModelEntry.get_or_none(ModelEntry.name == name)
    if entry is None:
        return ModelEntry.create(name=name, kind=kind, path=path, url=url, parent=parent, run_id=run_id)
    entry.kind, entry.path, entry.url, entry.parent = kind, path, url, parent
    entry.run_id = run_id if run_id is not None else entry.run_id
    entry.save()
    return entry


def get_model(name: str) -> ModelEntry | None:
    return ModelEntry.get_or_none(ModelEntry.name == name)


def list_models(kind: str | None = None) -> list[ModelEntry]:
    q = ModelEntry.select().order_by(ModelEntry.name)
    return list(q.where(ModelEntry.kind == kind) if kind else q)


def adapters_of(base: str) -> list[ModelEntry]:
    return list(ModelEntry.select().where((ModelEntry.kind == "adapter") & (ModelEntry.parent == base)).order_by(ModelEntry.id))


def set_parent(name: str, parent: str | None) -> None:
    """Point an adapter at its base model's (served) name."""
    ModelEntry.update(parent=parent).where(ModelEntry.name == name).execute()


def delete_model(name: str) -> None:
    ModelEntry.delete().where(ModelEntry.name == name).execute()
