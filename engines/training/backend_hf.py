"""transformers Trainer + PEFT LoRA (+ bitsandbytes 4-bit for qlora): CPU, and CUDA without Unsloth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    Trainer,
    TrainingArguments,
)

from engines.training.callbacks import announce, studio_callbacks, train_and_save
from engines.training.data import build_examples


def compute_dtype() -> torch.dtype:
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPUs without bf16 instructions run bf16 several times slower


def training_arguments(spec: Any, out: Path, has_eval: bool) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    dtype = compute_dtype()
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=spec.warmup_ratio,  # a float below 1 is a ratio of the total steps
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        logging_steps=1,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=spec.eval_steps,
        load_best_model_at_end=bool(has_eval and spec.early_stop_patience),
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        seed=spec.seed,
        data_seed=spec.seed,
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        use_cpu=not cuda,
        gradient_checkpointing=spec.gradient_checkpointing,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=True,
        optim="paged_adamw_8bit" if (cuda and spec.method == "qlora") else "adamw_torch",
    )


def load_model(spec: Any, model_path: str) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cuda = torch.cuda.is_available()
    quant = None
    if spec.method == "qlora":
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(),
        )
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=compute_dtype(), quantization_config=quant, device_map={"": 0} if cuda else None,
    )
    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    elif spec.gradient_checkpointing:
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
        target_modules=spec.target_modules, task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, lora), tokenizer


def train(ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    spec = ctx.spec
    model, tokenizer = load_model(spec, ctx.job.model_path)
    train_set, eval_set, fmt, counts = build_examples(spec, tokenizer, Path(ctx.job.dataset_path))
    trainable = announce(ctx, model, counts, load_in_4bit=bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False)),
                         device="cuda" if torch.cuda.is_available() else "cpu")
    counter, callbacks = studio_callbacks(ctx, tokenizer, bool(eval_set))
    trainer = Trainer(
        model=model, args=training_arguments(spec, ctx.checkpoints, bool(eval_set)),
        train_dataset=train_set, eval_dataset=eval_set or None, data_collator=counter, callbacks=callbacks,
    )
    return train_and_save(ctx, trainer, model, counter, resume_from, trainable=trainable, template=fmt.family,
                          has_eval=bool(eval_set))
