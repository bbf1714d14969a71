"""Fine-tuning: specs, presets, estimates, the job manager (in the app) and the worker (a subprocess).

Only `worker`, `backend_*`, `callbacks` and `data` import torch/transformers, and only in the worker process.
"""

from engines.training.estimate import Estimate, estimate, model_shape
from engines.training.hardware import Hardware, detect
from engines.training.jobs import JobManager
from engines.training.presets import PRESETS, preset
from engines.training.spec import SpecError, TrainSpec, spec_from_yaml, spec_to_yaml, validate_spec

__all__ = [
    "PRESETS", "Estimate", "Hardware", "JobManager", "SpecError", "TrainSpec", "detect", "estimate", "model_shape",
    "preset", "spec_from_yaml", "spec_to_yaml", "validate_spec",
]
