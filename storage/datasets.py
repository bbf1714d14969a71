"""Datasets and their immutable versions (rows live in files; the tables hold names, hashes, lineage)."""

from __future__ import annotations

import json

from storage.models import Dataset, DatasetVersion, User, utcnow

KINDS = ("chat", "preference")


def _with_owner():
    """Datasets with `owner_name` (the owner's user name, None if unowned) for display: one indexed lookup per row."""
    return Dataset.select(Dataset, User.select(User.name).where(User.id == Dataset.owner_id).alias("owner_name"))


def create_dataset(name: str, source_format: str | None = None, note: str | None = None, *,
                   owner_id: int | None = None, kind: str = "chat") -> Dataset:
    if kind not in KINDS:
        raise ValueError(f"a dataset's kind is one of {', '.join(KINDS)}")
    return Dataset.create(name=name, source_format=source_format, note=note, owner_id=owner_id, kind=kind)


def get_dataset(dataset_id: int) -> Dataset | None:
    """The dataset (with `owner_name`), or None."""
    return _with_owner().where(Dataset.id == dataset_id).first()


def dataset_by_name(name: str) -> Dataset | None:
    return Dataset.get_or_none(Dataset.name == name)


def list_datasets() -> list[Dataset]:
    """Newest-changed first, each with `owner_name`."""
    return list(_with_owner().order_by(Dataset.updated_at.desc()))


def add_version(dataset: Dataset, *, path: str, content_hash: str, row_count: int, fmt: str = "openai",
                parent: DatasetVersion | None = None, note: str | None = None,
                source_conversations: list[int] | None = None) -> DatasetVersion:
    last = latest_version(dataset.id)
    v = DatasetVersion.create(dataset=dataset, version=(last.version + 1) if last else 1, path=path, content_hash=content_hash,
                              row_count=row_count, format=fmt, parent=parent, note=note,
                              source_conversations=json.dumps(source_conversations) if source_conversations else None)
    Dataset.update(updated_at=utcnow()).where(Dataset.id == dataset.id).execute()
    return v


def touch(dataset_id: int) -> None:
    """Mark the dataset's working copy as changed now (it then lists first, and reads as unsaved)."""
    Dataset.update(updated_at=utcnow()).where(Dataset.id == dataset_id).execute()


def latest_version(dataset_id: int) -> DatasetVersion | None:
    return (DatasetVersion.select().where(DatasetVersion.dataset == dataset_id)
            .order_by(DatasetVersion.version.desc()).first())


def get_version(version_id: int) -> DatasetVersion | None:
    return DatasetVersion.get_or_none(DatasetVersion.id == version_id)


def version_by_path(path: str) -> DatasetVersion | None:
    return DatasetVersion.get_or_none(DatasetVersion.path == path)


def list_versions(dataset_id: int | None = None) -> list[DatasetVersion]:
    q = DatasetVersion.select(DatasetVersion, Dataset).join(Dataset).order_by(Dataset.name, DatasetVersion.version.desc())
    return list(q.where(DatasetVersion.dataset == dataset_id) if dataset_id else q)
