"""Picker choices several tabs share (so no tab imports another): the models a chat can use now."""

from __future__ import annotations

from studio.services import Services


def model_choices(services: Services) -> list[tuple[str, str]]:
    """(label, name) of every served base model and adapter (adapters labelled with their base)."""
    out = []
    for rec in services.servers.served_models():
        label = f"{rec.name}  ← {rec.parent}" if rec.kind == "adapter" else rec.name
        out.append((label, rec.name))
    return out
