"""The trainer callback that turns Trainer state into studio events and MLflow metrics (worker side)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, TrainerCallback

from engines.events import EventWriter
from engines.training.data import data_message


class StopFlag:
    """Set by SIGTERM: the trainer saves a checkpoint and stops at the next step boundary."""

    requested = False


class TokenCounter:
    """Wraps a collator to count the real (unpadded) tokens trained on, for tokens/s."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.tokens = 0

    def __call__(self, features: list[dict]) -> Any:
        # SFT rows hold input_ids; TRL's preference rows prompt_ids, chosen_ids and rejected_ids
        self.tokens += sum(len(v) for f in features for k, v in f.items() if k.endswith("_ids") and isinstance(v, list))
        return self.collator(features)


class StudioCallback(TrainerCallback):
    def __init__(self, events: EventWriter, tracker: Any, counter: TokenCounter, stop: type[StopFlag], *,
                 store_checkpoints: bool = False) -> None:
        self.events, self.tracker, self.counter, self.stop = events, tracker, counter, stop
        self.store_checkpoints = store_checkpoints  # a remote job: each checkpoint goes to the MLflow artifact store
        self.t0 = time.monotonic()
        self.first_step: int | None = None
        self.last_progress = 0.0

    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
        self.first_step = state.global_step
        self.t0 = time.monotonic()
        self.events.emit("progress", step=state.global_step, total_steps=state.max_steps, epoch=state.epoch or 0.0)

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        now = time.monotonic()
        done = state.global_step - (self.first_step or 0)
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (state.max_steps - state.global_step) / rate if rate > 0 else None
        self.events.emit(
            "progress", step=state.global_step, total_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
            elapsed_s=round(elapsed, 2), eta_s=round(eta, 1) if eta is not None else None,
            steps_per_s=round(rate, 4), tokens_per_s=round(self.counter.tokens / elapsed, 1) if elapsed > 0 else None,
        )
        if self.stop.requested:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        keep = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float) and k not in ("epoch", "step")}
        if not keep:
            return
        self.events.emit("metric", step=state.global_step, epoch=round(state.epoch or 0.0, 4), **keep)
        self.tracker.log_metrics(keep, step=state.global_step)

    def on_save(self, args, state, control, **kw):  # noqa: ANN001
        name = f"checkpoint-{state.global_step}"
        stored = self.store_checkpoints and self.tracker.store_checkpoint(Path(args.output_dir) / name)
        self.events.emit("checkpoint", step=state.global_step, path=name, **({"stored": "mlflow"} if stored else {}))


def announce(ctx: Any, model: Any, counts: dict, **extra: Any) -> int:
    """Log what is about to be trained (rows, tokens, template, trainable share); returns the trainable count."""
    trainable, total = model.get_nb_trainable_parameters()
    note = "; base weights in 4-bit nf4" if extra.get("load_in_4bit") else ""
    ctx.events.emit("log", level="info", message=data_message(counts, trainable, total) + note,
                    trainable_params=trainable, total_params=total, **extra, **counts)
    return trainable


def studio_callbacks(ctx: Any, tokenizer: Any, has_eval: bool) -> tuple[TokenCounter, list[TrainerCallback]]:
    """The padding collator (wrapped to count tokens) and the callbacks every backend trains with."""
    counter = TokenCounter(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    callbacks: list[TrainerCallback] = [StudioCallback(ctx.events, ctx.tracker, counter, StopFlag,
                                                       store_checkpoints=bool(getattr(ctx.job, "remote", False)))]
    if has_eval and ctx.spec.early_stop_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=ctx.spec.early_stop_patience))
    return counter, callbacks


def count_trainer_tokens(trainer: Any) -> TokenCounter:
    """Count tokens through the collator the trainer built itself (TRL's preference collator: DPO, ORPO) and point the
    studio callback at that counter, for tokens/s; what every preference backend does once its trainer exists."""
    counter = TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, StudioCallback):
            cb.counter = counter
    return counter


def train_and_save(ctx: Any, trainer: Any, model: Any, counter: TokenCounter, resume_from: Path | None, *,
                   trainable: int, template: str, has_eval: bool, adapters: list[str] | None = None) -> dict[str, Any]:
    """Train (resuming if asked), save the adapter unless cancelled, and summarise the run for the `done` event.
    `adapters`: which of the model's adapters to save (DPO from an SFT adapter adds a frozen "ref" copy: not saved)."""
    studio = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StudioCallback))
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.monotonic() - t0
    step = trainer.state.global_step
    summary: dict[str, Any] = {"step": step, "total_steps": trainer.state.max_steps, "train_seconds": round(seconds, 2)}
    if StopFlag.requested:
        return summary
    model.save_pretrained(str(ctx.adapter_dir), **({"selected_adapters": adapters} if adapters else {}))
    done_here = step - (studio.first_step or 0)  # a resumed run counts only the steps this process trained
    summary.update(
        train_loss=round(float(result.training_loss), 6), steps_per_s=round(done_here / seconds, 4) if seconds else 0.0,
        tokens_per_s=round(counter.tokens / seconds, 1) if seconds else 0.0, trainable_params=trainable, template=template,
    )
    if has_eval:
        summary["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 6)
    return summary | peak_memory()


def peak_memory() -> dict[str, float]:
    """Peak GPU memory of this process (allocated by tensors and reserved by the allocator, GiB) on CUDA, and peak RSS."""
    import resource

    import torch

    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)}  # ru_maxrss is KiB
    if torch.cuda.is_available():
        out["peak_gpu_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        out["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 1024**3, 3)
    return out
