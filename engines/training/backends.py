"""Which training backend a worker runs, and what each backend is given for a TrainSpec.

Plain data and no torch import: the choice on a CUDA host and the CUDA-side arguments (bf16/fp16, device map,
4-bit nf4, paged 8-bit AdamW, Unsloth's loader and LoRA options) are unit-tested on machines without a GPU.
The backends (backend_hf, backend_unsloth) turn these into transformers/PEFT/Unsloth objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Backend = Literal["unsloth", "transformers"]
BACKENDS: tuple[Backend, ...] = ("unsloth", "transformers")
DtypeName = Literal["bfloat16", "float16", "float32"]


class BackendError(RuntimeError):
    """The requested backend cannot run here; the message says why and what to change."""


def select_backend(requested: str, *, cuda: bool, unsloth_installed: bool) -> Backend:
    """auto: Unsloth on CUDA when installed, else transformers + PEFT (+ bitsandbytes for qlora)."""
    if requested == "auto":
        return "unsloth" if cuda and unsloth_installed else "transformers"
    if requested not in BACKENDS:
        raise BackendError(f"Unknown training backend {requested!r}: use auto, unsloth or transformers (TRAIN_BACKEND).")
    if requested == "unsloth" and not cuda:
        raise BackendError("The unsloth backend needs a CUDA GPU; none is visible.")
    if requested == "unsloth" and not unsloth_installed:
        raise BackendError("TRAIN_BACKEND=unsloth, but unsloth is not installed in the training environment "
                           "(SERVER_PYTHON); install requirements/gpu.lock.txt there or use TRAIN_BACKEND=auto.")
    return requested  # type: ignore[return-value]


def compute_dtype_name(*, cuda: bool, bf16_supported: bool) -> DtypeName:
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPUs (bf16 without CPU support runs several times slower)."""
    if cuda:
        return "bfloat16" if bf16_supported else "float16"
    return "float32"


def trainer_kwargs(spec: Any, out: Path, has_eval: bool, *, cuda: bool, dtype: DtypeName) -> dict[str, Any]:
    """transformers.TrainingArguments(**this) — also the base of Unsloth's SFTConfig."""
    return dict(
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
        bf16=cuda and dtype == "bfloat16",
        fp16=cuda and dtype == "float16",
        use_cpu=not cuda,
        gradient_checkpointing=spec.gradient_checkpointing,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=True,
        # QLoRA on a GPU pages the optimizer state through bitsandbytes; on CPU bitsandbytes has no paged optimizer.
        optim="paged_adamw_8bit" if (cuda and spec.method == "qlora") else "adamw_torch",
    )


def quantization_kwargs(spec: Any, *, dtype: DtypeName) -> dict[str, Any] | None:
    """transformers.BitsAndBytesConfig(**this) for qlora (4-bit nf4, double quantisation); None for 16-bit LoRA."""
    if spec.method != "qlora":
        return None
    return dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)


def hf_model_kwargs(spec: Any, *, cuda: bool, dtype: DtypeName) -> dict[str, Any]:
    """AutoModelForCausalLM.from_pretrained(path, **this) with dtype/quantisation as names (the backend makes objects)."""
    return {"dtype": dtype, "device_map": {"": 0} if cuda else None, "quantization": quantization_kwargs(spec, dtype=dtype)}


def lora_kwargs(spec: Any) -> dict[str, Any]:
    """peft.LoraConfig(**this)."""
    return dict(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                target_modules=list(spec.target_modules), task_type="CAUSAL_LM", bias="none")


def unsloth_model_kwargs(spec: Any, model_path: str) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained(**this): Unsloth picks the dtype (bf16 where supported)."""
    return dict(model_name=model_path, max_seq_length=spec.max_seq_len, load_in_4bit=spec.method == "qlora", dtype=None)


def unsloth_peft_kwargs(spec: Any) -> dict[str, Any]:
    """FastLanguageModel.get_peft_model(model, **this)."""
    return dict(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                target_modules=list(spec.target_modules), bias="none", random_state=spec.seed,
                use_gradient_checkpointing="unsloth" if spec.gradient_checkpointing else False)


def sft_config_kwargs(spec: Any, base: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """trl.SFTConfig(**this) from trainer_kwargs (`base`), keeping only the fields SFTConfig has."""
    kept = {k: v for k, v in base.items() if k in fields and k != "gradient_checkpointing"}  # Unsloth's is on the model
    return kept | dict(max_length=spec.max_seq_len, packing=False, dataset_kwargs={"skip_prepare_dataset": True})


def preference_config_kwargs(spec: Any, base: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """trl.DPOConfig(**this) or trl.experimental.orpo.ORPOConfig(**this) from trainer_kwargs (`base`), keeping only the
    fields the config has. DPO: β, the loss and its label smoothing; ORPO: λ (TRL calls it `beta` too)."""
    kept = {k: v for k, v in base.items() if k in fields}
    kept["max_length"] = spec.max_seq_len
    if spec.objective == "dpo":
        kept.update(beta=spec.beta, loss_type=[spec.dpo_loss], label_smoothing=spec.label_smoothing)
    elif spec.objective == "orpo":
        kept["beta"] = spec.orpo_lambda
    else:
        raise ValueError(f"not a preference objective: {spec.objective!r}")
    return kept
