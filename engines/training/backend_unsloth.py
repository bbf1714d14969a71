"""Unsloth FastLanguageModel + TRL SFTTrainer: the CUDA path (4-bit for qlora, Unsloth gradient checkpointing).

Untested on CPU machines (Unsloth needs a GPU); the worker picks it automatically on CUDA when
`unsloth` is installed (requirements-gpu.txt), else falls back to backend_hf.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback
from trl import SFTConfig, SFTTrainer
from unsloth import FastLanguageModel  # noqa: I001  # must be imported before transformers/trl to patch them

from engines.training.backend_hf import training_arguments
from engines.training.callbacks import StopFlag, StudioCallback, TokenCounter
from engines.training.data import build_examples, data_message


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
    trainable, total = model.get_nb_trainable_parameters()
    ctx.events.emit("log", level="info", message=data_message(counts, trainable, total),
                    trainable_params=trainable, total_params=total, **counts)
    base = training_arguments(spec, ctx.checkpoints, bool(eval_set)).to_dict()
    base.pop("gradient_checkpointing", None)  # Unsloth's own checkpointing is already on the model
    args = SFTConfig(**{k: v for k, v in base.items() if k in SFTConfig.__dataclass_fields__},
                     max_length=spec.max_seq_len, packing=False, dataset_kwargs={"skip_prepare_dataset": True})
    counter = TokenCounter(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    callbacks = [StudioCallback(ctx.events, ctx.tracker, counter, StopFlag)]
    if eval_set and spec.early_stop_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stop_patience))
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, data_collator=counter, callbacks=callbacks,
        train_dataset=Dataset.from_list(train_set), eval_dataset=Dataset.from_list(eval_set) if eval_set else None,
    )
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.monotonic() - t0
    step = trainer.state.global_step
    summary: dict[str, Any] = {"step": step, "total_steps": trainer.state.max_steps, "train_seconds": round(seconds, 2)}
    if StopFlag.requested:
        return summary
    model.save_pretrained(str(ctx.adapter_dir))
    summary.update(
        train_loss=round(float(result.training_loss), 6), steps_per_s=round(step / seconds, 4) if seconds else 0.0,
        tokens_per_s=round(counter.tokens / seconds, 1) if seconds else 0.0, trainable_params=trainable, template=fmt.family,
    )
    if eval_set:
        summary["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 6)
    return summary
