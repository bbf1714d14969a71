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
from engines.training.backends import sft_config_kwargs, unsloth_model_kwargs, unsloth_peft_kwargs
from engines.training.callbacks import announce, studio_callbacks, train_and_save
from engines.training.data import build_examples


def train(ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    spec = ctx.spec
    model, tokenizer = FastLanguageModel.from_pretrained(**unsloth_model_kwargs(spec, ctx.job.model_path))
    model = FastLanguageModel.get_peft_model(model, **unsloth_peft_kwargs(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Our marked template gives labels = -100 outside the assistant replies: responses-only training.
    train_set, eval_set, fmt, counts = build_examples(spec, tokenizer, Path(ctx.job.dataset_path))
    trainable = announce(ctx, model, counts, load_in_4bit=spec.method == "qlora", device="cuda")
    base = training_arguments(spec, ctx.checkpoints, bool(eval_set)).to_dict()
    args = SFTConfig(**sft_config_kwargs(spec, base, set(SFTConfig.__dataclass_fields__)))
    counter, callbacks = studio_callbacks(ctx, tokenizer, bool(eval_set))
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, data_collator=counter, callbacks=callbacks,
        train_dataset=Dataset.from_list(train_set), eval_dataset=Dataset.from_list(eval_set) if eval_set else None,
    )
    return train_and_save(ctx, trainer, model, counter, resume_from, trainable=trainable, template=fmt.family,
                          has_eval=bool(eval_set))


def train_preference(ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    """DPO / ORPO on Unsloth's patched TRL trainers (PatchDPOTrainer), same data, config and callbacks as the
    transformers path (backend_preference). Untested here: it needs a CUDA GPU with Unsloth installed."""
    from unsloth import PatchDPOTrainer

    from engines.training.backend_preference import count_tokens, trainer_classes, use_template
    from engines.training.backends import preference_config_kwargs
    from engines.training.callbacks import count_trainer_tokens
    from engines.training.data import build_preference_sets

    PatchDPOTrainer()
    spec = ctx.spec
    model, tokenizer = FastLanguageModel.from_pretrained(**unsloth_model_kwargs(spec, ctx.job.sft_adapter_path or ctx.job.model_path))
    if not ctx.job.sft_adapter_path:  # a saved adapter folder loads with its LoRA already attached
        model = FastLanguageModel.get_peft_model(model, **unsloth_peft_kwargs(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    family = use_template(tokenizer, spec.chat_template)
    train_rows, eval_rows, counts = build_preference_sets(spec, Path(ctx.job.dataset_path))
    counts.update(template=family, train_tokens=count_tokens(tokenizer, train_rows))
    trainable = announce(ctx, model, counts, load_in_4bit=spec.method == "qlora", device="cuda", objective=spec.objective)
    config_cls, trainer_cls = trainer_classes(spec.objective)
    base = training_arguments(spec, ctx.checkpoints, bool(eval_rows)).to_dict()
    base.pop("gradient_checkpointing", None)  # Unsloth's is on the model
    args = config_cls(**preference_config_kwargs(spec, base, set(config_cls.__dataclass_fields__)))
    _, callbacks = studio_callbacks(ctx, tokenizer, bool(eval_rows))
    trainer = trainer_cls(model=model, args=args, processing_class=tokenizer, callbacks=callbacks,
                          train_dataset=Dataset.from_list(train_rows),
                          eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None)
    counter = count_trainer_tokens(trainer)
    return train_and_save(ctx, trainer, model, counter, resume_from, trainable=trainable, template=family,
                          has_eval=bool(eval_rows), adapters=["default"])
