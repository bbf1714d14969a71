"""The marked chat templates: the trained tokens are exactly the assistant replies plus their end token."""

from __future__ import annotations

import pytest

from engines.chat_templates import END_TOKENS, TEMPLATES, TemplateError, detect_family
from engines.events import EventWriter, read_events
from engines.training.data import IGNORE, DataError, chat_format, check_mask, encode_row, load_rows, masked_text, pack, split

CONVERSATION = [
    {"role": "system", "content": "You are Studio Helper."},
    {"role": "user", "content": "What is LoRA?"},
    {"role": "assistant", "content": "A low-rank adapter.\nTip: start with r=16."},
    {"role": "user", "content": "한국어로 설명해 주세요."},
    {"role": "assistant", "content": "저랭크 어댑터입니다.\n팁: r=16부터 시작하세요."},
]
# Header and end markers are single special tokens in each family's own tokenizer; register them the same way.
FAMILY_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>"]


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.source)
    tok.add_special_tokens({"additional_special_tokens": FAMILY_TOKENS})
    return tok


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_mask_covers_exactly_the_assistant_replies_and_end_token(tokenizer, family):
    fmt = chat_format(tokenizer, family)
    enc = encode_row(tokenizer, fmt, CONVERSATION, 10_000, responses_only=True)
    want = "".join(m["content"] + END_TOKENS[family] for m in CONVERSATION if m["role"] == "assistant")
    assert masked_text(tokenizer, enc["input_ids"], enc["mask"]) == want
    # labels follow the mask; everything else (system, user turns, headers) is ignored by the loss
    trained = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE]
    assert tokenizer.decode(trained) == want
    assert sum(1 for lab in enc["labels"] if lab == IGNORE) > 10
    check_mask(tokenizer, fmt, CONVERSATION)


def test_training_on_everything_keeps_all_labels(tokenizer):
    fmt = chat_format(tokenizer, "chatml")
    enc = encode_row(tokenizer, fmt, CONVERSATION, 10_000, responses_only=False)
    assert IGNORE not in enc["labels"]


def test_chatml_reproduces_the_bundled_models_own_template_including_its_default_system(bundled_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.source)
    fmt = chat_format(tok)  # auto: detects ChatML and checks the rendering matches the stock template
    assert fmt.family == "chatml" and "SmolLM" in fmt.kwargs["default_system"]
    no_system = CONVERSATION[1:]
    ours = tok.apply_chat_template(no_system, chat_template=fmt.template, tokenize=False, **fmt.kwargs)
    assert ours == tok.apply_chat_template(no_system, tokenize=False)


def test_unknown_chat_format_is_a_clear_error():
    assert detect_family("{{ '<|start_header_id|>' }}") == "llama3"
    with pytest.raises(TemplateError, match="supported"):
        detect_family("{{ '[INST]' + m + '[/INST]' }}")


def test_bad_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    with pytest.raises(DataError) as err:
        load_rows(path)
    assert "line 1" in str(err.value) and "line 2" in str(err.value) and "line 3" not in str(err.value)


def test_split_is_seeded_and_packing_respects_the_length():
    rows = list(range(20))
    assert split(rows, 0.1, 1) == split(rows, 0.1, 1)
    train, held = split(rows, 0.1, 1)
    assert len(held) == 2 and sorted(train + held) == rows
    packed = pack([{"input_ids": [1] * 30, "labels": [1] * 30} for _ in range(5)], 64)
    assert [len(p["input_ids"]) for p in packed] == [60, 60, 30]


def test_events_are_read_by_offset_and_a_half_written_line_waits(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.emit("progress", step=1)
    events, off = read_events(path)
    assert [e["step"] for e in events] == [1]
    with open(path, "a") as fh:
        fh.write('{"type": "progress", "st')
    assert read_events(path, off) == ([], off)
    with open(path, "a") as fh:
        fh.write('ep": 2}\n')
    w.emit("done", step=2)
    events, off2 = read_events(path, off)
    assert [e["type"] for e in events] == ["progress", "done"] and off2 == path.stat().st_size


def test_a_saved_train_eval_split_is_used_when_evaluating(tokenizer, tmp_path):
    import json

    from engines.training.data import build_examples
    from engines.training.spec import TrainSpec

    rows = [{"messages": CONVERSATION[1:3], "split": "eval" if i in (2, 5) else "train"} for i in range(8)]
    for i, r in enumerate(rows):
        r["messages"] = [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"A{i}"}]
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = TrainSpec(base_model="m", dataset="v.jsonl", output_name="x", eval_split=0.1, chat_template="chatml")
    train, evals, _, counts = build_examples(spec, tokenizer, path)
    assert counts["eval_rows"] == 2 and counts["train_rows"] == 6
    assert {tokenizer.decode(e["input_ids"]).count("A2") + tokenizer.decode(e["input_ids"]).count("A5") for e in evals} == {1}
    no_eval = spec.model_copy(update={"eval_split": 0.0})
    assert build_examples(no_eval, tokenizer, path)[3]["eval_rows"] == 0
