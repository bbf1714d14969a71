"""DPO and ORPO with TRL + PEFT LoRA (transformers; CPU, and CUDA without Unsloth).

The policy is the base model with a new LoRA adapter, or — a second stage — a saved SFT adapter loaded trainable.
DPO's reference is the policy as it starts: with a new adapter TRL disables the adapter (the base model); with an
SFT adapter TRL keeps a frozen "ref" copy of it, so the reference is the SFT model. ORPO needs no reference.
TRL logs its preference metrics (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, and ORPO's
log_odds_ratio / log_odds_chosen / nll_loss) with the loss; the studio callback sends them to events and MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from engines.chat_templates import TEMPLATES
from engines.training.backend_hf import load_model, training_arguments
from engines.training.backends import preference_config_kwargs
from engines.training.callbacks import announce, count_trainer_tokens, studio_callbacks, train_and_save
from engines.training.data import build_preference_sets, chat_format


def trainer_classes(objective: str) -> tuple[type, type]:
    """(config class, trainer class) of TRL for the objective; ORPO lives in trl.experimental since TRL 1.x."""
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer


def use_template(tokenizer: Any, choice: str) -> str:
    """TRL renders the messages with the tokenizer's chat template: keep the model's own (checked against ours, the
    one the SFT stage and the server use), or set ours when the spec names one or the model has none."""
    if choice == "auto" and getattr(tokenizer, "chat_template", None):
        return chat_format(tokenizer, "auto").family
    family = "chatml" if choice == "auto" else choice
    tokenizer.chat_template = TEMPLATES[family]
    return family


def count_tokens(tokenizer: Any, rows: list[dict]) -> int:
    """Tokens of the prompt with each answer (what one epoch feeds the model, padding aside)."""
    return sum(len(tokenizer.apply_chat_template(r["prompt"] + r[side], tokenize=True)) for r in rows
               for side in ("chosen", "rejected"))


def train(ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    spec = ctx.spec
    model, tokenizer = load_model(spec, ctx.job.model_path, adapter=ctx.job.sft_adapter_path)
    family = use_template(tokenizer, spec.chat_template)
    train_rows, eval_rows, counts = build_preference_sets(spec, Path(ctx.job.dataset_path))
    counts.update(template=family, train_tokens=count_tokens(tokenizer, train_rows))
    trainable = announce(ctx, model, counts, load_in_4bit=bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False)),
                         device="cuda" if torch.cuda.is_available() else "cpu", objective=spec.objective,
                         sft_adapter=spec.sft_adapter)
    config_cls, trainer_cls = trainer_classes(spec.objective)
    base = training_arguments(spec, ctx.checkpoints, bool(eval_rows)).to_dict()
    args = config_cls(**preference_config_kwargs(spec, base, set(config_cls.__dataclass_fields__)))
    _, callbacks = studio_callbacks(ctx, tokenizer, bool(eval_rows))
    trainer = trainer_cls(
        model=model, args=args, processing_class=tokenizer, callbacks=callbacks,
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
    )
    counter = count_trainer_tokens(trainer)  # TRL's own preference collator, counted for tokens/s
    return train_and_save(ctx, trainer, model, counter, resume_from, trainable=trainable, template=family,
                          has_eval=bool(eval_rows), adapters=["default"])
