"""Dataset files the studio can train on (a fuller datasets engine grows here)."""

from engines.datasets.files import DatasetFileError, dataset_choices, resolve_dataset, save_upload

__all__ = ["DatasetFileError", "dataset_choices", "resolve_dataset", "save_upload"]
