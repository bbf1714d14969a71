"""Model registry: the bundled default, local folders, hub ids, external OpenAI-compatible endpoints."""

from engines.models.registry import (
    ModelError,
    ModelRecord,
    Registry,
    bundled_gguf_path,
    ensure_bundled_model,
    resolve_base_model,
    served_name,
)

__all__ = [
    "ModelError",
    "ModelRecord",
    "Registry",
    "bundled_gguf_path",
    "ensure_bundled_model",
    "resolve_base_model",
    "served_name",
]
