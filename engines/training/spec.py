"""TrainSpec: everything one fine-tuning job needs, validated before anything starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MODULE_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
# A base model is a registered name, a hub id (org/name) or a folder path; no shell syntax, ever.
MODEL_RE = re.compile(r"^[A-Za-z0-9_./~ -][A-Za-z0-9_./ +-]{0,299}$")
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class SpecError(ValueError):
    """Invalid spec: `fields` maps each field name to a message a person can act on."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


class TrainSpec(BaseModel):
    """One fine-tune. Field bounds are the studio's: wide enough for real runs, narrow enough to catch typos."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(min_length=1, max_length=300)
    dataset: str = Field(min_length=1, max_length=500)
    output_name: str
    method: Literal["qlora", "lora"] = "lora"
    lora_r: int = Field(default=16, ge=1, le=512)
    lora_alpha: int = Field(default=32, ge=1, le=2048)
    lora_dropout: float = Field(default=0.05, ge=0.0, le=0.5)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_LINEAR), min_length=1, max_length=32)
    learning_rate: float = Field(default=2e-4, gt=0.0, le=1e-2)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0.0, le=0.5)
    epochs: float = Field(default=1.0, gt=0.0, le=100.0)
    max_steps: int = Field(default=0, ge=0, le=1_000_000)  # 0: run `epochs` epochs
    batch_size: int = Field(default=4, ge=1, le=512)
    grad_accum: int = Field(default=1, ge=1, le=512)
    max_seq_len: int = Field(default=1024, ge=32, le=131072)
    packing: bool = False
    train_on_responses_only: bool = True
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    eval_split: float = Field(default=0.0, ge=0.0, le=0.5)
    save_steps: int = Field(default=50, ge=1, le=1_000_000)
    eval_steps: int = Field(default=50, ge=1, le=1_000_000)
    early_stop_patience: int = Field(default=0, ge=0, le=100)  # 0: off
    gradient_checkpointing: bool = False
    chat_template: Literal["auto", "chatml", "llama3", "gemma"] = "auto"
    # What is learned: sft (chat rows), or from preference pairs (prompt, chosen, rejected): dpo, orpo.
    # `method` above is the weights' precision (lora | qlora); this is the objective.
    objective: Literal["sft", "dpo", "orpo"] = "sft"
    beta: float = Field(default=0.1, gt=0.0, le=10.0)  # DPO's β: how far the policy may move from the reference
    dpo_loss: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)  # robust DPO: the share of flipped labels assumed
    orpo_lambda: float = Field(default=0.1, gt=0.0, le=10.0)  # ORPO's λ: weight of the odds-ratio term beside the NLL
    # A second stage: continue from this completed run's adapter (its output name); DPO's reference is that model.
    sft_adapter: str | None = Field(default=None, max_length=64)

    @field_validator("output_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("base_model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not MODEL_RE.match(v) or ".." in Path(v).parts:
            raise ValueError("a model name, hub id (org/name) or folder path without special characters")
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if not re.match(r"^[^\x00-\x1f$`;|&<>]+$", v) or not v.endswith((".jsonl", ".json")):
            raise ValueError("a .jsonl dataset file chosen from the list")
        return v

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not MODULE_RE.match(m)]
        if bad:
            raise ValueError(f"not a module name: {', '.join(bad[:3])}")
        return list(dict.fromkeys(v))

    @field_validator("sft_adapter")
    @classmethod
    def _adapter(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not NAME_RE.match(v):
            raise ValueError("the output name of a completed fine-tune run")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if self.early_stop_patience and self.eval_split <= 0:
            raise ValueError("early stopping needs an eval split above 0")
        return self

    # ---- derived --------------------------------------------------------------------
    def mlflow_params(self) -> dict[str, str]:
        """Flat params for MLflow (lists joined)."""
        out = {}
        for k, v in self.model_dump().items():
            out[k] = ",".join(v) if isinstance(v, list) else str(v)
        return out


def objective_problems(spec: TrainSpec) -> dict[str, str]:
    """Fields that do not fit the spec's objective, one message each (pydantic checks each field alone)."""
    out: dict[str, str] = {}
    preference = spec.objective in ("dpo", "orpo")
    if preference and spec.packing:
        out["packing"] = "packing joins chat rows for SFT; DPO and ORPO train on whole preference pairs"
    if not preference and spec.sft_adapter:
        out["sft_adapter"] = "only a DPO or ORPO run continues from an SFT adapter"
    if spec.objective != "dpo" and (spec.dpo_loss != "sigmoid" or spec.label_smoothing):
        out["dpo_loss" if spec.dpo_loss != "sigmoid" else "label_smoothing"] = "a DPO setting; the objective is " + spec.objective
    if spec.label_smoothing and spec.dpo_loss != "robust":
        out["label_smoothing"] = "label smoothing is used by the robust DPO loss only"
    if spec.sft_adapter and spec.sft_adapter == spec.output_name:
        out["sft_adapter"] = "a run cannot continue from its own adapter"
    return out


def validate_spec(data: dict[str, Any], *, max_lora_rank: int | None = None) -> TrainSpec:
    """Build a spec or raise SpecError with one message per bad field."""
    try:
        spec = TrainSpec(**data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "spec"
            fields.setdefault(loc.split(".")[0], err.get("msg", "invalid").removeprefix("Value error, "))
        raise SpecError(fields) from None
    if problems := objective_problems(spec):
        raise SpecError(problems)
    if max_lora_rank is not None and spec.lora_r > max_lora_rank:
        raise SpecError({"lora_r": f"at most {max_lora_rank}: the model server's VLLM_MAX_LORA_RANK"})
    return spec


def spec_to_yaml(spec: TrainSpec) -> str:
    return yaml.safe_dump(spec.model_dump(), sort_keys=False, allow_unicode=True)


def spec_from_yaml(text: str, *, max_lora_rank: int | None = None) -> TrainSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError({"yaml": f"not valid YAML ({exc.__class__.__name__})"}) from None
    if not isinstance(data, dict):
        raise SpecError({"yaml": "expected a mapping of field: value"})
    return validate_spec(data, max_lora_rank=max_lora_rank)
