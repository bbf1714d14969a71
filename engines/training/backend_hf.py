"""transformers Trainer + PEFT LoRA (+ bitsandbytes 4-bit for qlora): CPU, and CUDA without Unsloth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    Trainer,
    TrainingArguments,
)

from engines.training.backends import DtypeName, compute_dtype_name, hf_model_kwargs, lora_kwargs, trainer_kwargs
from engines.training.callbacks import announce, studio_callbacks, train_and_save
from engines.training.data import build_examples


def dtype_name() -> DtypeName:
    cuda = torch.cuda.is_available()
    return compute_dtype_name(cuda=cuda, bf16_supported=cuda and torch.cuda.is_bf16_supported())


def compute_dtype() -> torch.dtype:
    return getattr(torch, dtype_name())


def training_arguments(spec: Any, out: Path, has_eval: bool) -> TrainingArguments:
    return TrainingArguments(**trainer_kwargs(spec, out, has_eval, cuda=torch.cuda.is_available(), dtype=dtype_name()))


def load_model(spec: Any, model_path: str, adapter: str | None = None) -> tuple[Any, Any]:
    """The base model with a new LoRA adapter, or with `adapter` (a saved one) loaded trainable to train on."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = compute_dtype()
    kw = hf_model_kwargs(spec, cuda=torch.cuda.is_available(), dtype=dtype_name())
    quant = kw.pop("quantization")
    if quant is not None:
        quant = BitsAndBytesConfig(**quant | {"bnb_4bit_compute_dtype": dtype})
    model = AutoModelForCausalLM.from_pretrained(model_path, **kw | {"dtype": dtype, "quantization_config": quant})
    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    elif spec.gradient_checkpointing:
        model.enable_input_require_grads()
    if adapter:
        return PeftModel.from_pretrained(model, adapter, is_trainable=True), tokenizer
    return get_peft_model(model, LoraConfig(**lora_kwargs(spec))), tokenizer


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
