"""The baseline for dpo_speed.py: one process, TRL's DPOTrainer + PEFT LoRA as TRL's own docs write it, nothing else.

    python bench/bare_dpo.py MODEL_DIR PREFERENCES_JSONL OUT_DIR   (OUT_DIR holds settings.json; writes result.json)

No studio code: the model, LoRA config and DPOConfig are built here from the same settings the studio job gets
(rank, alpha, batch, learning rate, β, max length, steps, seed, fp32 on CPU). No events file, heartbeat, callback
or MLflow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer


def main(model_dir: str, dataset: str, out: str) -> None:
    out_dir = Path(out)
    s = json.loads((out_dir / "settings.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    rows = [json.loads(line) for line in Path(dataset).read_text().splitlines() if line.strip()]
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=s["batch_size"], learning_rate=s["learning_rate"],
        lr_scheduler_type="constant", warmup_steps=0, max_steps=s["max_steps"], logging_steps=1, save_steps=100_000,
        seed=s["seed"], data_seed=s["seed"], beta=s["beta"], max_length=s["max_seq_len"], use_cpu=True, bf16=False,
        gradient_checkpointing=False, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
    )
    peft = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"], target_modules=s["target_modules"],
                      task_type="CAUSAL_LM", bias="none")
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft)
    t0 = time.monotonic()
    result = trainer.train()
    seconds = time.monotonic() - t0
    trainer.model.save_pretrained(str(out_dir / "adapter"))
    steps = trainer.state.global_step
    margins = [e["rewards/margins"] for e in trainer.state.log_history if "rewards/margins" in e]
    (out_dir / "result.json").write_text(json.dumps(
        {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "train_loss": float(result.training_loss),
         "last_margin": margins[-1] if margins else None}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
