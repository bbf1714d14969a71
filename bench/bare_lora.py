"""The baseline for train_overhead.py: one process, transformers Trainer + PEFT, nothing else.

    python bench/bare_lora.py MODEL_DIR DATASET_JSONL OUT_DIR   (OUT_DIR holds spec.json; writes result.json)

It builds the same token ids/labels, LoRA config and TrainingArguments as the studio's worker (so the
two sides do identical arithmetic), but has no events file, heartbeat, trainer callback or MLflow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer

from engines.training.backend_hf import load_model, training_arguments
from engines.training.data import build_examples
from engines.training.spec import TrainSpec


def main(model_dir: str, dataset: str, out: str) -> None:
    out_dir = Path(out)
    spec = TrainSpec(**json.loads((out_dir / "spec.json").read_text()))
    model, tokenizer = load_model(spec, model_dir)
    train_set, _, _, _ = build_examples(spec, tokenizer, Path(dataset))
    trainer = Trainer(
        model=model, args=training_arguments(spec, out_dir / "checkpoints", False), train_dataset=train_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    t0 = time.monotonic()
    result = trainer.train()
    seconds = time.monotonic() - t0
    model.save_pretrained(str(out_dir / "adapter"))
    steps = trainer.state.global_step
    (out_dir / "result.json").write_text(json.dumps(
        {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "train_loss": float(result.training_loss)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
