"""The worker's backend choice and the spec -> backend arguments, on a CUDA host too, without CUDA.

`cuda=True` below is a stand-in for a visible GPU (the one thing this machine lacks): the arguments are checked as data
here, and bench/gpu_proof.sh runs them for real on a GPU machine. Where the objects can be built on CPU
(TrainingArguments, LoraConfig, BitsAndBytesConfig, SFTConfig's field filter) they are built for real.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig, TrainingArguments

from engines.training.backend_hf import compute_dtype, training_arguments
from engines.training.backends import (
    BackendError,
    compute_dtype_name,
    hf_model_kwargs,
    lora_kwargs,
    select_backend,
    sft_config_kwargs,
    trainer_kwargs,
    unsloth_model_kwargs,
    unsloth_peft_kwargs,
)
from engines.training.spec import validate_spec
from engines.training.worker import choose_backend

BASE = {"base_model": "SmolLM2-135M-Instruct", "dataset": "assets/datasets/studio-helper-en.jsonl", "output_name": "a"}


@pytest.mark.parametrize(
    ("requested", "cuda", "unsloth", "chosen"),
    [("auto", True, True, "unsloth"), ("auto", True, False, "transformers"), ("auto", False, True, "transformers"),
     ("auto", False, False, "transformers"), ("transformers", True, True, "transformers"),
     ("transformers", False, False, "transformers"), ("unsloth", True, True, "unsloth")],
)
def test_backend_choice(requested, cuda, unsloth, chosen) -> None:
    assert select_backend(requested, cuda=cuda, unsloth_installed=unsloth) == chosen


def test_unsloth_refused_without_a_gpu_or_without_the_package() -> None:
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        select_backend("unsloth", cuda=False, unsloth_installed=True)
    with pytest.raises(BackendError, match="not installed"):
        select_backend("unsloth", cuda=True, unsloth_installed=False)
    with pytest.raises(BackendError, match="Unknown training backend"):
        select_backend("deepspeed", cuda=True, unsloth_installed=True)


def test_the_worker_on_this_machine_picks_transformers() -> None:
    assert not torch.cuda.is_available()
    assert choose_backend("auto") == "transformers"
    with pytest.raises(BackendError):
        choose_backend("unsloth")


def test_dtype_per_device() -> None:
    assert compute_dtype_name(cuda=True, bf16_supported=True) == "bfloat16"  # H100/H200, A100
    assert compute_dtype_name(cuda=True, bf16_supported=False) == "float16"  # T4, V100
    assert compute_dtype_name(cuda=False, bf16_supported=False) == "float32"
    assert compute_dtype() == torch.float32


def test_qlora_on_cuda_is_4bit_nf4_on_gpu_0_with_paged_8bit_adamw(tmp_path) -> None:
    spec = validate_spec(BASE | {"method": "qlora"})
    model = hf_model_kwargs(spec, cuda=True, dtype="bfloat16")
    assert model["device_map"] == {"": 0} and model["dtype"] == "bfloat16"
    quant = BitsAndBytesConfig(**model["quantization"] | {"bnb_4bit_compute_dtype": torch.bfloat16})
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    args = trainer_kwargs(spec, tmp_path, False, cuda=True, dtype="bfloat16")
    assert args["optim"] == "paged_adamw_8bit" and args["bf16"] is True and args["fp16"] is False
    assert args["use_cpu"] is False


def test_lora_16bit_on_cuda_and_on_cpu(tmp_path) -> None:
    spec = validate_spec(BASE | {"method": "lora", "lora_r": 32, "lora_alpha": 64, "max_steps": 7})
    cuda = hf_model_kwargs(spec, cuda=True, dtype="bfloat16")
    assert cuda["quantization"] is None and cuda["device_map"] == {"": 0}
    fp16 = trainer_kwargs(spec, tmp_path, False, cuda=True, dtype="float16")
    assert fp16["fp16"] is True and fp16["bf16"] is False and fp16["optim"] == "adamw_torch"
    cpu = trainer_kwargs(spec, tmp_path, False, cuda=False, dtype="float32")
    assert cpu["use_cpu"] is True and not cpu["bf16"] and not cpu["fp16"] and cpu["max_steps"] == 7
    assert hf_model_kwargs(spec, cuda=False, dtype="float32")["device_map"] is None
    lora = LoraConfig(**lora_kwargs(spec))
    assert lora.r == 32 and lora.lora_alpha == 64 and set(lora.target_modules) == set(spec.target_modules)
    # The CPU arguments are the ones this machine really builds (the CUDA ones need a GPU to construct).
    built = training_arguments(spec, tmp_path, False)
    assert isinstance(built, TrainingArguments) and built.use_cpu and built.max_steps == 7
    assert TrainingArguments(**cpu).optim == built.optim


def test_unsloth_arguments(tmp_path) -> None:
    spec = validate_spec(BASE | {"method": "qlora", "gradient_checkpointing": True, "max_seq_len": 2048, "seed": 7})
    model = unsloth_model_kwargs(spec, "/models/llama-3-8b")
    assert model == {"model_name": "/models/llama-3-8b", "max_seq_length": 2048, "load_in_4bit": True, "dtype": None}
    peft = unsloth_peft_kwargs(spec)
    assert peft["use_gradient_checkpointing"] == "unsloth" and peft["random_state"] == 7 and peft["r"] == spec.lora_r
    assert unsloth_peft_kwargs(validate_spec(BASE))["use_gradient_checkpointing"] is False
    assert unsloth_model_kwargs(validate_spec(BASE), "m")["load_in_4bit"] is False
    base = training_arguments(spec, tmp_path, False).to_dict()
    fields = set(TrainingArguments.__dataclass_fields__)  # SFTConfig subclasses TrainingArguments (TRL: GPU image only)
    sft = sft_config_kwargs(spec, base, fields)
    assert "gradient_checkpointing" not in sft  # Unsloth's own checkpointing is on the model
    assert sft["max_length"] == 2048 and sft["packing"] is False and sft["dataset_kwargs"] == {"skip_prepare_dataset": True}
    assert sft["learning_rate"] == spec.learning_rate
