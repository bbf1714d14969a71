"""Unsloth FastLanguageModel + TRL SFTTrainer: the CUDA path (4-bit for qlora, Unsloth gradient checkpointing).

Untested on CPU machines (Unsloth needs a GPU); the worker picks it automatically on CUDA when
`unsloth` is installed (requirements-gpu.txt), else falls back to backend_hf.
"""

# ruff: noqa: I001  # unsloth must be imported before transformers/trl/datasets: it patches them

from __future__ import annotations

from unsloth import FastLanguageModel

from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from engines.training.backend_hf import training_arguments
from engines.training.callbacks import announce, studio_callbacks, train_and_save
from engines.training.data import build_examples


def train(ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    spec = ctx.spec
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=ctx.job.model_path, max_seq_length=spec.max_seq_len, load_in_4bit=spec.method == "qlora", dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model, r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
        target_modules=spec.target_modules, bias="none", random_state=spec.seed,
        use_gradient_checkpointing="unsloth" if spec.gradient_checkpointing else False,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Our marked template gives labels = -100 outside the assistant replies: responses-only training.
    train_set, eval_set, fmt, counts = build_examples(spec, tokenizer, Path(ctx.job.dataset_path))
    trainable = announce(ctx, model, counts, load_in_4bit=spec.method == "qlora", device="cuda")
    base = training_arguments(spec, ctx.checkpoints, bool(eval_set)).to_dict()
    base.pop("gradient_checkpointing", None)  # Unsloth's own checkpointing is already on the model
    args = SFTConfig(**{k: v for k, v in base.items() if k in SFTConfig.__dataclass_fields__},
                     max_length=spec.max_seq_len, packing=False, dataset_kwargs={"skip_prepare_dataset": True})
    counter, callbacks = studio_callbacks(ctx, tokenizer, bool(eval_set))
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, data_collator=counter, callbacks=callbacks,
        train_dataset=Dataset.from_list(train_set), eval_dataset=Dataset.from_list(eval_set) if eval_set else None,
    )
    return train_and_save(ctx, trainer, model, counter, resume_from, trainable=trainable, template=fmt.family,
                          has_eval=bool(eval_set))
