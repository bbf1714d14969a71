"""Presets that adapt to the hardware found: quick test, balanced, quality."""

from __future__ import annotations

from typing import Any

from engines.training.hardware import Hardware

PRESETS = ("quick", "balanced", "quality")


def preset(name: str, hw: Hardware) -> dict[str, Any]:
    """Spec fields for a preset on this hardware (GPU: QLoRA, bigger batches; CPU: 16-bit LoRA, short runs)."""
    gpu = hw.has_gpu
    big_gpu = hw.gpu_memory_gb >= 40
    common: dict[str, Any] = {"method": "qlora" if gpu else "lora", "train_on_responses_only": True, "seed": 42}
    if name == "quick":
        return common | {
            "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 5e-4, "lr_scheduler": "constant",
            "warmup_ratio": 0.0, "epochs": 1.0, "max_steps": 60 if gpu else 20, "batch_size": 4 if gpu else 2,
            "grad_accum": 1, "max_seq_len": 1024 if gpu else 512, "packing": False, "eval_split": 0.0,
            "save_steps": 20 if gpu else 10, "eval_steps": 20, "early_stop_patience": 0, "gradient_checkpointing": gpu,
        }
    if name == "balanced":
        return common | {
            "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "learning_rate": 2e-4, "lr_scheduler": "cosine",
            "warmup_ratio": 0.05, "epochs": 2.0 if gpu else 1.0, "max_steps": 0, "batch_size": 8 if big_gpu else 4,
            "grad_accum": 2 if gpu else 1, "max_seq_len": 2048 if gpu else 1024, "packing": False, "eval_split": 0.1,
            "save_steps": 50, "eval_steps": 25, "early_stop_patience": 0, "gradient_checkpointing": gpu,
        }
    if name == "quality":
        return common | {
            "lora_r": 64 if big_gpu else 32, "lora_alpha": 128 if big_gpu else 64, "lora_dropout": 0.05,
            "learning_rate": 1e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "epochs": 3.0, "max_steps": 0,
            "batch_size": 8 if big_gpu else 4, "grad_accum": 4 if gpu else 2, "max_seq_len": 4096 if big_gpu else 2048,
            "packing": gpu, "eval_split": 0.1, "save_steps": 100, "eval_steps": 50, "early_stop_patience": 3,
            "gradient_checkpointing": gpu,
        }
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
