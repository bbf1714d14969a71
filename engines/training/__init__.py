"""Fine-tuning: specs, presets, estimates, the job manager (in the app) and the worker (a subprocess).

Names load lazily, so the worker (which imports `engines.training.worker` in a GPU environment) pulls
in neither the job manager's storage nor the app's dependencies. Only `worker`, `backend_*`,
`callbacks` and `data` import torch/transformers, and only in the worker process.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Estimate": "estimate", "estimate": "estimate", "model_shape": "estimate",
    "Hardware": "hardware", "detect": "hardware",
    "JobManager": "jobs",
    "PRESETS": "presets", "preset": "presets",
    "SpecError": "spec", "TrainSpec": "spec", "spec_from_yaml": "spec", "spec_to_yaml": "spec", "validate_spec": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"engines.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'engines.training' has no attribute {name!r}")
