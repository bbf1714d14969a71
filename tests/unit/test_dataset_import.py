"""Dataset import: every common layout and file type normalises and round-trips; broken files write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from engines.datasets.formats import FormatError
from engines.datasets.versions import (
    ImportRefused,
    NameTaken,
    create_empty,
    diff_versions,
    export_version,
    import_file,
    inspect_file,
    load_version,
    save_version,
)
from storage import datasets as store

KO_Q, KO_A = "LoRA가 뭐예요?", "저랭크 어댑터예요.\n팁: r=16부터 시작하세요."
EXPECTED = [
    [{"role": "user", "content": "What is LoRA?"}, {"role": "assistant", "content": "A low-rank adapter."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": KO_Q}, {"role": "assistant", "content": KO_A}],
]


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def sources(tmp: Path) -> dict[str, Path]:
    openai = [{"messages": m} for m in EXPECTED]
    sharegpt = [
        {"conversations": [{"from": "human", "value": "What is LoRA?"}, {"from": "gpt", "value": "A low-rank adapter."}]},
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": KO_Q}, {"from": "gpt", "value": KO_A}]},
    ]
    alpaca = [{"instruction": "What is LoRA?", "input": "", "output": "A low-rank adapter."},
              {"system": "Be brief.", "instruction": KO_Q, "input": "", "output": KO_A}]
    no_robots = [{"prompt": "What is LoRA?", "messages": EXPECTED[0], "category": "Open QA"},
                 {"prompt": KO_Q, "messages": EXPECTED[1], "category": "Open QA"}]
    pc = [{"prompt": "What is LoRA?", "completion": "A low-rank adapter.", "system": ""},
          {"prompt": KO_Q, "completion": KO_A, "system": "Be brief."}]
    out = {
        "openai.jsonl": write(tmp / "openai.jsonl", jsonl(openai)),
        "openai-bom.jsonl": write(tmp / "openai-bom.jsonl", jsonl(openai), bom=True),
        "sharegpt.json": write(tmp / "sharegpt.json", json.dumps(sharegpt, ensure_ascii=False)),
        "alpaca.jsonl": write(tmp / "alpaca.jsonl", jsonl(alpaca)),
        "no_robots.jsonl": write(tmp / "no_robots.jsonl", jsonl(no_robots)),
        "pc.csv": tmp / "pc.csv", "pc.tsv": tmp / "pc.tsv", "openai.parquet": tmp / "openai.parquet",
    }
    pd.DataFrame(pc).to_csv(out["pc.csv"], index=False)
    pd.DataFrame(pc).to_csv(out["pc.tsv"], index=False, sep="\t")
    pd.DataFrame({"messages": [m for m in EXPECTED]}).to_parquet(out["openai.parquet"])
    return out


@pytest.mark.parametrize("name", ["openai.jsonl", "openai-bom.jsonl", "sharegpt.json", "alpaca.jsonl", "no_robots.jsonl",
                                  "pc.csv", "pc.tsv", "openai.parquet"])
def test_every_format_normalises_and_round_trips(db, owner, settings, tmp_path, name):
    src = sources(tmp_path)[name]
    report = import_file(settings, src, f"ds {name}", actor=owner)
    assert [r.messages for r in report.rows] == EXPECTED, report.problems
    assert not report.errors
    version = report.version
    assert version.row_count == 2 and Path(version.path).is_file()
    for fmt in ("openai", "sharegpt", "parquet"):
        exported = export_version(settings, version, fmt)
        again = inspect_file(exported)
        assert [r.messages for r in again.rows] == EXPECTED, (fmt, again.problems)
    assert KO_Q in Path(version.path).read_text(encoding="utf-8")  # Korean stays literal UTF-8


def _nothing_written(settings, before: set[Path]) -> bool:
    after = set(settings.datasets_path.rglob("*")) if settings.datasets_path.exists() else set()
    return store.list_datasets() == [] and after == before


@pytest.mark.parametrize(
    ("content", "suffix", "expect"),
    [
        ('[{"messages": [{"role": "user", "content": "hi"}', ".json", "Not valid JSON"),
        ("", ".jsonl", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", ".jsonl", "binary"),
        ('{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}\n', ".jsonl", "line 1"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{"messages": [\n'
         '{"conversations": [{"from": "human", "value": "q"}]}\n', ".jsonl", "line 2"),
        ('{"messages": [{"role": "user", "content": "' + "x" * 2_000_000 + '"}, {"role": "assistant"', ".jsonl", "line 1"),
        ('{"text": "just text"}\n{"text": "more"}\n', ".jsonl", "fields found: text"),
    ],
    ids=["truncated-json", "empty", "binary", "wrong-type", "mixed-and-broken", "huge-line", "unknown-layout"],
)
def test_broken_files_give_line_numbered_errors_and_write_nothing(db, owner, settings, tmp_path, content, suffix, expect):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = set(settings.datasets_path.rglob("*")) if settings.datasets_path.exists() else set()
    with pytest.raises((FormatError, ImportRefused)) as err:
        import_file(settings, path, "broken", actor=owner)
    message = str(err.value)
    if isinstance(err.value, ImportRefused):
        message += " " + " ".join(f"line {p.row}: {p.message}" for p in err.value.report.problems)
    assert expect.lower() in message.lower()
    assert _nothing_written(settings, before)


def test_every_bad_line_is_reported_and_valid_rows_can_be_imported_alone(db, owner, settings, tmp_path):
    good = {"messages": EXPECTED[0]}
    lines = [json.dumps(good), "{oops", json.dumps({"messages": [{"role": "assistant", "content": "no question"}]}),
             json.dumps({"messages": [{"role": "user", "content": "only a question"}]}), json.dumps(good),
             json.dumps({"messages": EXPECTED[1]}), json.dumps({"messages": [{"role": "user", "content": ""},
                                                                             {"role": "assistant", "content": "x"}]})]
    path = write(tmp_path / "mixed.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(ImportRefused) as err:
        import_file(settings, path, "mixed", actor=owner)
    by_line = {p.row: p.kind for p in err.value.report.problems if p.severity == "error"}
    assert by_line == {2: "malformed", 3: "role_order", 4: "no_assistant", 7: "empty_content"}
    assert (5, "duplicate", "warning") in {(p.row, p.kind, p.severity) for p in err.value.report.problems}
    assert store.list_datasets() == []
    report = import_file(settings, path, "mixed", actor=owner, valid_only=True)
    assert report.version.row_count == 2 and report.skipped == [2, 3, 4, 7] and report.dropped == [5]
    skipped = [json.loads(x) for x in report.skipped_path.read_text().splitlines()]
    assert [s["row"] for s in skipped] == [2, 3, 4, 7]


def test_exact_duplicates_are_a_warning_dropped_by_default_or_kept(db, owner, settings, tmp_path):
    """Real datasets carry a few duplicates: the file imports, without them unless asked to keep them."""
    path = write(tmp_path / "dups.jsonl", jsonl([{"messages": EXPECTED[0]}, {"messages": EXPECTED[1]},
                                                 {"messages": EXPECTED[0]}, {"messages": EXPECTED[0]}]))
    report = import_file(settings, path, "dups", actor=owner)
    assert report.version.row_count == 2 and report.dropped == [3, 4] and report.skipped == []
    assert [(p.row, p.kind, p.severity) for p in report.problems] == [(3, "duplicate", "warning"), (4, "duplicate", "warning")]
    assert [r.messages for r in load_version(settings, report.version)] == EXPECTED
    kept = import_file(settings, path, "dups-kept", actor=owner, drop_duplicates=False)
    assert kept.version.row_count == 4 and kept.dropped == []


def test_a_file_appended_to_a_dataset_becomes_its_next_version(db, owner, settings, tmp_path):
    from engines.accounts import PermissionDenied, add_user
    from engines.datasets import draft
    from engines.datasets.versions import NothingToAppend, append_file

    v1 = import_file(settings, write(tmp_path / "a.jsonl", jsonl([{"messages": EXPECTED[0]}])), "grows", actor=owner).version
    new = [{"role": "user", "content": "새 질문?"}, {"role": "assistant", "content": "새 답."}]
    more = write(tmp_path / "more.jsonl", jsonl([{"messages": EXPECTED[0]}, {"messages": EXPECTED[1]}, {"messages": new},
                                                 {"messages": new}]))
    report = append_file(settings, more, v1.dataset_id, actor=owner)
    v2 = report.version
    assert v2.version == 2 and v2.parent_id == v1.id and v2.row_count == 3 and "more.jsonl (2 rows)" in v2.note
    assert report.dropped == [1, 4]  # one already in the dataset, one a repeat within the file
    assert {(p.row, p.message) for p in report.problems} >= {(1, "already in the dataset"), (4, "same as row 3")}
    assert [r.messages for r in load_version(settings, v2)] == [EXPECTED[0], EXPECTED[1], new]
    assert draft.count(v1.dataset_id) == 3  # the working copy is the new version

    with pytest.raises(NothingToAppend, match="already in") as err:  # nothing new: no version, nothing changed
        append_file(settings, more, v1.dataset_id, actor=owner)
    assert err.value.reason == "all_present"
    draft.undo(v1.dataset_id, actor=owner)  # the append undone in the working copy (v2 still holds it) ...
    with pytest.raises(NothingToAppend) as err:  # ... so the same rows make it v2 again: said, and rolled back
        append_file(settings, more, v1.dataset_id, actor=owner)
    assert err.value.reason == "same_as_saved" and draft.count(v1.dataset_id) == 1
    draft.fill(v1.dataset_id, [r for r in load_version(settings, v2)][1:], actor=owner, replace=False, action="redo")
    broken = write(tmp_path / "broken.jsonl", jsonl([{"messages": [{"role": "user", "content": "no answer"}]},
                                                     {"messages": [{"role": "user", "content": "q9"}, {"role": "assistant", "content": "a9"}]}]))
    with pytest.raises(ImportRefused):  # all or nothing, as an import
        append_file(settings, broken, v1.dataset_id, actor=owner)
    assert store.latest_version(v1.dataset_id).version == 2 and draft.count(v1.dataset_id) == 3
    from engines.datasets.formats import PreferenceRow
    from engines.datasets.preference_files import create_preference_dataset

    pairs = create_preference_dataset(settings, "pairs", [PreferenceRow([{"role": "user", "content": "q"}], "a", "b")],
                                      actor=owner)
    with pytest.raises(ValueError, match="holds preference pairs"):  # chat rows never land in a preference dataset
        append_file(settings, more, pairs.dataset_id, actor=owner)
    assert store.latest_version(pairs.dataset_id).version == 1 and draft.count(pairs.dataset_id) == 0
    alice = add_user("alice", "alice-password", role="member")
    with pytest.raises(PermissionDenied):  # someone else's dataset
        append_file(settings, more, v1.dataset_id, actor=alice)
    assert store.latest_version(v1.dataset_id).version == 2 and draft.count(v1.dataset_id) == 3


def test_near_duplicates_and_long_rows_are_flagged_with_the_real_token_count(db, owner, settings, tmp_path, bundled_model):
    from transformers import AutoTokenizer

    from engines.datasets.render import ModelFormat

    rows = [{"messages": EXPECTED[0]},
            {"messages": [{"role": "user", "content": "what is lora"}, {"role": "assistant", "content": "A LOW-RANK adapter"}]},
            {"messages": [{"role": "user", "content": "Tell me a story. " * 40}, {"role": "assistant", "content": "Once."}]}]
    path = write(tmp_path / "warn.jsonl", jsonl(rows))
    fmt = ModelFormat(Path(bundled_model.source))
    report = inspect_file(path, model_format=fmt, max_tokens=128)
    kinds = {(p.row, p.kind, p.severity) for p in report.problems}
    assert (2, "near_duplicate", "warning") in kinds and (3, "too_long", "warning") in kinds
    tok = AutoTokenizer.from_pretrained(bundled_model.source)
    real = len(tok.apply_chat_template(rows[2]["messages"], tokenize=True, return_dict=True)["input_ids"])
    assert report.rows[2].extra["tokens"] == real  # the model's own tokenizer, through the trainer's template
    # warnings do not block an all-or-nothing import
    assert import_file(settings, path, "warned", actor=owner).version.row_count == 3


def test_unknown_layout_imports_through_a_column_mapping(db, owner, settings, tmp_path):
    path = write(tmp_path / "qa.csv", "question,answer,topic\nWhat is LoRA?,A low-rank adapter.,ft\n")
    with pytest.raises(FormatError, match="question, answer, topic"):
        import_file(settings, path, "qa", actor=owner)
    report = import_file(settings, path, "qa", actor=owner, mapping={"user": "question", "assistant": "answer", "category": "topic"})
    assert [r.messages for r in report.rows] == [EXPECTED[0]] and report.rows[0].category == "ft"


def test_versions_are_immutable_and_diffed(db, owner, settings, tmp_path):
    path = write(tmp_path / "v.jsonl", jsonl([{"messages": m} for m in EXPECTED]))
    v1 = import_file(settings, path, "versioned", actor=owner).version
    rows = load_version(settings, v1)
    rows[0].messages[1]["content"] = "An adapter with low rank."
    rows.append(type(rows[0])([{"role": "user", "content": "New?"}, {"role": "assistant", "content": "Yes."}]))
    del rows[1]
    v2 = save_version(settings, v1.dataset_id, rows, actor=owner, note="edited")
    assert v2.version == 2 and v2.parent_id == v1.id and v2.content_hash != v1.content_hash
    assert [r.messages for r in load_version(settings, v1)] == EXPECTED  # v1's file is untouched
    d = diff_versions(settings, v1, v2)
    assert len(d.added) == 1 and len(d.removed) == 1 and len(d.changed) == 1
    assert d.changed[0][1].messages[1]["content"] == "An adapter with low rank."


def test_a_fine_tune_upload_is_checked_and_saved_normalised(settings, tmp_path):
    from engines.datasets.files import DatasetFileError, resolve_dataset, save_upload

    src = sources(tmp_path)["sharegpt.json"]
    saved = save_upload(settings, src)
    assert saved.parent == settings.datasets_path / "uploads" and saved.suffix == ".jsonl"
    assert [json.loads(x)["messages"] for x in saved.read_text(encoding="utf-8").splitlines()] == EXPECTED
    assert resolve_dataset(settings, str(saved)) == saved  # the trainer may read it
    bad = write(tmp_path / "bad.jsonl", jsonl([{"messages": EXPECTED[0]}]) + "{oops\n" + jsonl([{"messages": [EXPECTED[0][0]]}]))
    before = set((settings.datasets_path / "uploads").iterdir())
    with pytest.raises(DatasetFileError) as err:
        save_upload(settings, bad)
    assert "line 2" in str(err.value) and "line 3" in str(err.value)
    assert set((settings.datasets_path / "uploads").iterdir()) == before  # nothing half-saved


def test_a_taken_name_is_refused_with_the_name_before_anything_is_read(db, owner, settings, tmp_path):
    path = write(tmp_path / "a.jsonl", jsonl([{"messages": EXPECTED[0]}]))
    import_file(settings, path, "taken", actor=owner)
    with pytest.raises(NameTaken) as err:
        import_file(settings, write(tmp_path / "broken.jsonl", "{oops\n"), "taken", actor=owner)
    assert err.value.name == "taken" and "pick another name" in str(err.value)
    with pytest.raises(NameTaken):
        create_empty("taken", actor=owner)
    assert len(store.list_datasets()) == 1
