"""The trainer callback that turns Trainer state into studio events and MLflow metrics (worker side)."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from engines.training.events import EventWriter


class StopFlag:
    """Set by SIGTERM: the trainer saves a checkpoint and stops at the next step boundary."""

    requested = False


class TokenCounter:
    """Wraps a collator to count the real (unpadded) tokens trained on, for tokens/s."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.tokens = 0

    def __call__(self, features: list[dict]) -> Any:
        self.tokens += sum(len(f["input_ids"]) for f in features)
        return self.collator(features)


class StudioCallback(TrainerCallback):
    def __init__(self, events: EventWriter, tracker: Any, counter: TokenCounter, stop: type[StopFlag]) -> None:
        self.events, self.tracker, self.counter, self.stop = events, tracker, counter, stop
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
        self.events.emit("checkpoint", step=state.global_step, path=f"checkpoint-{state.global_step}")
