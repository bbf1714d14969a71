"""What the REST API and the tabs share for files sent in: staging under the data folder with a name of our own,
import with a mapping, stats, keyset paging of the working copy, and naming a fine-tune's dataset without paths."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engines.datasets import draft, uploads
from engines.datasets.files import DatasetFileError, training_file
from engines.datasets.versions import import_file
from storage import datasets as store


def rows(n: int) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                   for i in range(n)).encode()


def test_a_sent_file_is_staged_inside_the_data_folder_under_our_own_name_and_removed(settings) -> None:
    with uploads.staged_upload(settings, io.BytesIO(rows(2)), "../../../etc/evil name.jsonl") as path:
        assert path.is_file() and path.parent.parent == settings.datasets_path / "incoming"
        assert path.name == "evil-name.jsonl"
    assert not path.exists() and not path.parent.exists()
    for name in ("notes.txt", "", None, "noext"):
        with pytest.raises(DatasetFileError, match="jsonl"):
            with uploads.staged_upload(settings, io.BytesIO(b"x"), name):
                pass


def test_import_upload_maps_columns_and_stats_count_turns(db, owner, settings, tmp_path) -> None:
    src = tmp_path / "qa.csv"
    src.write_text("question,answer,topic\nWhat is LoRA?,An adapter.,ft\nWhat is vLLM?,A server.,serving\n")
    seen = uploads.inspect_upload(settings, src)
    assert seen.report is None and seen.guess == {"user": "question", "assistant": "answer", "system": None, "category": "topic"}
    with pytest.raises(ValueError, match="assistant"):
        uploads.import_upload(settings, src, "qa", actor=owner, mapping={"user": "question"})
    assert store.dataset_by_name("qa") is None
    report = uploads.import_upload(settings, src, "", actor=owner, mapping=seen.guess, source_name="../x/qa.csv")
    assert report.version.dataset.name == "qa" and report.version.row_count == 2
    s = uploads.dataset_stats(settings, report.version.dataset_id, "no-such-model")
    assert s.rows == 2 and s.turns == [2, 2] and s.counted_with == "≈ chars/4"
    assert dict(s.categories) == {"ft": 1, "serving": 1} and s.tokens == sum(map(sum, s.tokens_by_role.values()))


def test_rows_after_pages_by_id(db, owner, settings, tmp_path) -> None:
    src = tmp_path / "r.jsonl"
    src.write_bytes(rows(5))
    ds = import_file(settings, src, "paged", actor=owner).version.dataset_id
    first = draft.rows_after(ds, None, 2)
    second = draft.rows_after(ds, first[-1].id, 2)
    last = draft.rows_after(ds, second[-1].id, 2)
    assert [len(first), len(second), len(last)] == [2, 2, 1]
    assert [r.id for r in first + second + last] == sorted(r.id for r in draft.rows_after(ds, None, 10))
    assert [json.loads(r.messages)[0]["content"] for r in draft.rows_after(ds, None, 10, search="q3")] == ["q3"]


def test_a_fine_tunes_dataset_is_named_by_id_name_version_or_sample(db, owner, settings, tmp_path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_bytes(rows(3))
    v1 = import_file(settings, src, "trainable", actor=owner).version
    by_id, vid = training_file(settings, v1.dataset_id)
    assert (Path(by_id), vid) == (Path(v1.path).resolve(), v1.id) and Path(by_id).is_relative_to(settings.datasets_path)
    assert training_file(settings, "trainable") == (by_id, v1.id)
    assert training_file(settings, "", v1.id) == (by_id, v1.id)
    sample, none = training_file(settings, "assets/datasets/studio-helper-en.jsonl")
    assert sample.endswith("assets/datasets/studio-helper-en.jsonl") and none is None
    with pytest.raises(DatasetFileError, match="No dataset"):
        training_file(settings, "missing-name")
    other = import_file(settings, src, "other", actor=owner).version
    with pytest.raises(DatasetFileError, match="No version"):
        training_file(settings, "trainable", other.id)
    outside = tmp_path / "exists.jsonl"
    outside.write_bytes(rows(1))
    messages = set()
    for path in (outside, tmp_path / "missing.jsonl"):
        with pytest.raises(DatasetFileError) as err:
            training_file(settings, str(path))
        messages.add(str(err.value))
    assert len(messages) == 1  # the same sentence whether the outside file exists or not
    tampered = store.add_version(store.get_dataset(v1.dataset_id), path=str(outside), content_hash="x", row_count=1)
    with pytest.raises(DatasetFileError, match="not inside"):
        training_file(settings, "", tampered.id)


def test_a_trl_preference_file_is_told_apart_by_the_chat_inspection_itself(settings, tmp_path):
    """The chat inspection says "preference" (one read of the file); only then are the pairs read as pairs."""
    import json

    from engines.datasets import uploads

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "2 + 2?", "chosen": "4", "rejected": "5"}) + "\n", encoding="utf-8")
    found = uploads.inspect_upload(settings, path)
    assert found.report is None and found.preference and "preference pairs" in found.error
    pairs = uploads.inspect_preference_upload(path)
    assert pairs is not None and pairs.layout == "preference" and [r.chosen for r in pairs.rows] == ["4"]
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n",
                    encoding="utf-8")
    assert not uploads.inspect_upload(settings, chat).preference and uploads.inspect_preference_upload(chat) is None
