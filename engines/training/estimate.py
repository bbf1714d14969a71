"""Rough memory and time for a spec on the hardware found, before anything starts (no torch)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from engines.training.hardware import Hardware
from engines.training.spec import TrainSpec

GIB = 1024**3
# Effective training FLOP/s. CPU: measured here (bundled model, fp32 LoRA, ~89 GFLOP/s on 2 cores, bench/train_overhead.py);
# GPU: a fraction of dense bf16 peak.
CPU_FLOPS_PER_CORE = 40e9
GPU_PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40": 181, "L4": 121, "A10": 125, "4090": 165, "3090": 71, "T4": 65}
GPU_MFU = 0.25


@dataclass(frozen=True)
class ModelShape:
    params: int
    hidden: int
    layers: int
    vocab: int
    intermediate: int
    heads: int
    kv_heads: int

    @property
    def head_dim(self) -> int:
        return self.hidden // max(self.heads, 1)


STARTUP_S = 15.0  # loading the model and the data before the first step, when no earlier run says better


@dataclass(frozen=True)
class Estimate:
    params: int
    trainable: int
    memory_gb: float
    memory_parts: dict[str, float]
    budget_gb: float
    fits: bool
    steps: int
    seconds: float
    tokens_per_step: int
    device: str
    step_seconds: float = 0.0  # the FLOP model's time per optimizer step, before calibration
    overhead_s: float = STARTUP_S  # time outside the training loop: loading, tokenising, saving
    calibrated_runs: int = 0  # earlier runs on this machine the time was corrected by (0: the FLOP model alone)

    def summary(self) -> str:
        return (
            f"{self.params / 1e6:,.0f}M params, {self.trainable / 1e6:,.2f}M trainable · "
            f"~{self.memory_gb:.1f} GiB of {self.budget_gb:.0f} GiB on {self.device} · "
            f"{self.steps} steps, ~{format_duration(self.seconds)}"
        )


def duration_parts(seconds: float) -> tuple[float, str]:
    """(amount, unit) for a duration as people say it: unit "s" under 90 s, "min" under 90 min, else "h" (one decimal)."""
    seconds = max(0, int(seconds))
    if seconds < 90:
        return seconds, "s"
    if seconds < 5400:
        return round(seconds / 60), "min"
    return round(seconds / 3600, 1), "h"


def format_duration(seconds: float) -> str:
    amount, unit = duration_parts(seconds)
    return f"{amount}s" if unit == "s" else f"{amount} {unit}"


def _safetensors_params(folder: Path) -> int:
    """Sum tensor sizes from safetensors headers (8-byte length + JSON), without loading weights."""
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                total += math.prod(meta.get("shape", [])) if meta.get("shape") else 1
    return total


def model_shape(folder: Path) -> ModelShape:
    cfg = json.loads((folder / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    hidden = int(cfg.get("hidden_size", 0))
    layers = int(cfg.get("num_hidden_layers", 0))
    vocab = int(cfg.get("vocab_size", 0))
    inter = int(cfg.get("intermediate_size", 4 * hidden))
    heads = int(cfg.get("num_attention_heads", 1))
    kv = int(cfg.get("num_key_value_heads", heads))
    params = _safetensors_params(folder)
    if not params:  # no weights here (e.g. config only): the usual decoder formula
        hd = hidden // max(heads, 1)
        per_layer = hidden * (heads * hd) * 2 + hidden * (kv * hd) * 2 + 3 * hidden * inter
        params = layers * per_layer + vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return ModelShape(params, hidden, layers, vocab, inter, heads, kv)


def lora_params(shape: ModelShape, spec: TrainSpec) -> int:
    h, i, hd = shape.hidden, shape.intermediate, shape.head_dim
    dims = {
        "q_proj": (h, shape.heads * hd), "k_proj": (h, shape.kv_heads * hd), "v_proj": (h, shape.kv_heads * hd),
        "o_proj": (shape.heads * hd, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
    }
    per_layer = sum(spec.lora_r * (a + b) for m, (a, b) in dims.items() if m in spec.target_modules)
    return per_layer * shape.layers


def _gpu_tflops(name: str) -> float:
    for key, peak in GPU_PEAK_TFLOPS.items():
        if key in name:
            return peak
    return 100.0


def estimate(
    spec: TrainSpec, shape: ModelShape, hw: Hardware, *, rows: int, avg_tokens: float, fp32_cpu: bool = True
) -> Estimate:
    """Memory (weights, LoRA + optimizer, activations, logits) and time (~4·N FLOPs per trained token)."""
    gpu = hw.has_gpu
    b, s = spec.batch_size, spec.max_seq_len
    seq = s if spec.packing else min(s, max(8, int(avg_tokens * 1.3)))  # batches pad to their longest row
    act_bytes = 2 if gpu else (4 if fp32_cpu else 2)
    if spec.method == "qlora":
        weights = shape.params * 0.56 + shape.vocab * shape.hidden * 2  # nf4 + scales; embeddings stay 16-bit
    else:
        weights = shape.params * act_bytes
    trainable = lora_params(shape, spec)
    optimizer = trainable * 16  # fp32 weight + grad + two Adam moments
    per_layer = (2 if spec.gradient_checkpointing else 17) * b * seq * shape.hidden * act_bytes
    activations = per_layer * shape.layers
    logits = 3 * b * seq * shape.vocab * 4  # fp32 logits, softmax and their gradient
    overhead = 1.0 * GIB if gpu else 0.8 * GIB
    parts = {"weights": weights, "lora+optimizer": optimizer, "activations": activations, "logits": logits, "runtime": overhead}
    total = sum(parts.values())
    budget = hw.gpu_memory_gb if gpu else hw.ram_available_gb
    tokens_per_step = b * spec.grad_accum * seq
    steps_per_epoch = max(1, math.ceil(rows * (1 - spec.eval_split) / (b * spec.grad_accum)))
    if spec.packing:
        steps_per_epoch = max(1, math.ceil(rows * avg_tokens * (1 - spec.eval_split) / tokens_per_step))
    steps = spec.max_steps or max(1, math.ceil(steps_per_epoch * spec.epochs))
    flops = (6 if spec.gradient_checkpointing else 4) * shape.params * tokens_per_step
    if gpu:
        rate = _gpu_tflops(hw.gpus[0].name) * 1e12 * GPU_MFU * (0.7 if spec.method == "qlora" else 1.0)
    else:
        rate = CPU_FLOPS_PER_CORE * hw.cpus * (0.5 if spec.method == "qlora" else 1.0)
    device = hw.gpus[0].name if gpu else "CPU RAM"
    return Estimate(
        params=shape.params, trainable=trainable, memory_gb=total / GIB,
        memory_parts={k: v / GIB for k, v in parts.items()}, budget_gb=budget, fits=total / GIB <= budget * 0.95,
        steps=steps, seconds=steps * flops / rate + STARTUP_S, tokens_per_step=tokens_per_step, device=device,
        step_seconds=flops / rate,
    )
