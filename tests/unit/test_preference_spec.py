"""DPO / ORPO in the TrainSpec: the objective and its fields validated one message per field, and the TRL config
each objective gets (checked against TRL's real DPOConfig / ORPOConfig fields)."""

from __future__ import annotations

import pytest

from engines.training import SpecError, validate_spec
from engines.training.backends import preference_config_kwargs, trainer_kwargs

BASE = {"base_model": "SmolLM2-135M-Instruct", "dataset": "assets/datasets/studio-helper-en.jsonl", "output_name": "pref"}


def test_defaults_are_sft_and_a_dpo_spec_validates():
    assert validate_spec(BASE).objective == "sft"
    spec = validate_spec({**BASE, "objective": "dpo", "beta": 0.3, "dpo_loss": "robust", "label_smoothing": 0.1,
                          "sft_adapter": "my-sft"})
    assert (spec.objective, spec.beta, spec.dpo_loss, spec.label_smoothing, spec.sft_adapter) == ("dpo", 0.3, "robust", 0.1, "my-sft")
    assert validate_spec({**BASE, "objective": "orpo", "orpo_lambda": 0.5}).orpo_lambda == 0.5
    assert spec.mlflow_params()["objective"] == "dpo" and spec.mlflow_params()["beta"] == "0.3"


@pytest.mark.parametrize(("field", "value"), [
    ("objective", "ppo"), ("beta", 0), ("beta", 11), ("dpo_loss", "kto"), ("label_smoothing", 0.5),
    ("orpo_lambda", -1), ("sft_adapter", "../etc"),
])
def test_bad_preference_values_name_their_field(field, value):
    with pytest.raises(SpecError) as err:
        validate_spec({**BASE, "objective": "dpo", field: value})
    assert list(err.value.fields) == [field] and err.value.fields[field]


@pytest.mark.parametrize(("over", "field"), [
    ({"objective": "dpo", "packing": True}, "packing"),
    ({"objective": "orpo", "packing": True}, "packing"),
    ({"sft_adapter": "my-sft"}, "sft_adapter"),  # SFT does not continue from an adapter
    ({"objective": "orpo", "dpo_loss": "ipo"}, "dpo_loss"),
    ({"objective": "dpo", "label_smoothing": 0.1}, "label_smoothing"),  # only the robust loss smooths labels
    ({"objective": "dpo", "sft_adapter": "pref"}, "sft_adapter"),  # its own output
])
def test_fields_that_do_not_fit_the_objective(over, field):
    with pytest.raises(SpecError) as err:
        validate_spec({**BASE, **over})
    assert field in err.value.fields


def test_trl_configs_get_beta_loss_and_lambda(tmp_path):
    from trl import DPOConfig
    from trl.experimental.orpo import ORPOConfig

    dpo = validate_spec({**BASE, "objective": "dpo", "beta": 0.25, "dpo_loss": "ipo", "max_seq_len": 512})
    base = trainer_kwargs(dpo, tmp_path, False, cuda=False, dtype="float32")
    kw = preference_config_kwargs(dpo, base, set(DPOConfig.__dataclass_fields__))
    assert (kw["beta"], kw["loss_type"], kw["max_length"], kw["bf16"]) == (0.25, ["ipo"], 512, False)
    args = DPOConfig(**kw)  # every key is one DPOConfig takes
    assert args.beta == 0.25 and args.loss_type == ["ipo"] and args.use_cpu is True
    orpo = validate_spec({**BASE, "objective": "orpo", "orpo_lambda": 0.7})
    kw = preference_config_kwargs(orpo, trainer_kwargs(orpo, tmp_path, True, cuda=False, dtype="float32"),
                                  set(ORPOConfig.__dataclass_fields__))
    assert kw["beta"] == 0.7 and "loss_type" not in kw and ORPOConfig(**kw).beta == 0.7
    with pytest.raises(ValueError, match="not a preference objective"):
        preference_config_kwargs(validate_spec(BASE), base, set(DPOConfig.__dataclass_fields__))


def test_the_worker_reads_preference_versions_and_keeps_their_split(tmp_path):
    import json

    from engines.training.data import DataError, build_preference_sets

    def row(i, split=None):
        r = {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": "good"}],
             "rejected": [{"role": "assistant", "content": "bad"}], "source": {"kind": "battle"}}
        return r | ({"split": split} if split else {})

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(row(i, "eval" if i == 3 else "train")) + "\n" for i in range(5)))
    spec = validate_spec({**BASE, "objective": "dpo", "eval_split": 0.2})
    train, held, counts = build_preference_sets(spec, path)
    assert [r["prompt"][0]["content"] for r in held] == ["q3"] and len(train) == 4
    assert set(train[0]) == {"prompt", "chosen", "rejected"}  # provenance stays out of TRL's columns
    assert counts["rows"] == 5 and counts["eval_rows"] == 1
    train, held, _ = build_preference_sets(validate_spec({**BASE, "objective": "dpo"}), path)
    assert len(train) == 5 and held == []
    path.write_text(json.dumps(row(0)) + "\n" + json.dumps({"messages": []}) + "\n")
    with pytest.raises(DataError, match="Line 2"):
        build_preference_sets(spec, path)


def test_the_estimate_counts_a_preference_pairs_prompt_with_each_answer(tmp_path):
    """The Fine-tune form's estimate reads real tokens: a pair is its prompt fed twice, once with each answer."""
    import json

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from engines.training.planning import _dataset_tokens


    words = "Name a colour , please . Blue I would rather not say".split()
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tokenizer = tmp_path / "tokenizer.json"
    tok.save(str(tokenizer))
    prompt, chosen, rejected = "Name a colour, please.", "Blue.", "I would rather not say."
    pref, chat = tmp_path / "pref.jsonl", tmp_path / "chat.jsonl"
    pref.write_text(json.dumps({"prompt": [{"role": "user", "content": prompt}], "chosen": chosen, "rejected": rejected}) + "\n")
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": a}]}) + "\n"
                            for a in (chosen, rejected)))
    rows, per_pair = _dataset_tokens(str(pref), 0.0, str(tokenizer))
    _, per_chat = _dataset_tokens(str(chat), 0.0, str(tokenizer))
    assert rows == 1 and per_pair == pytest.approx(2 * per_chat)  # the two chats hold exactly what the pair feeds
