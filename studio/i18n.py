"""UI strings per language, loaded once from assets/i18n/<lang>.json, and the switch that relabels the UI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import gradio as gr

I18N_DIR = Path(__file__).resolve().parent.parent / "assets" / "i18n"
LANGUAGES = {"en": "English", "ko": "한국어"}


@cache
def strings(lang: str) -> dict[str, str]:
    path = I18N_DIR / f"{lang}.json"
    if not path.is_file():
        path = I18N_DIR / "en.json"
    return json.loads(path.read_text(encoding="utf-8"))


def t(lang: str, key: str, **fmt: Any) -> str:
    """The string for `key` in `lang` (English if missing there, the key itself as a last resort)."""
    text = strings(lang).get(key) or strings("en").get(key) or key
    return text.format(**fmt) if fmt else text


@dataclass
class Translatable:
    """Components whose texts change with the language: (component, {property: key})."""

    entries: list[tuple[gr.components.Component | gr.blocks.BlockContext, dict[str, str]]] = field(default_factory=list)

    def add(self, component: Any, **props: str) -> Any:
        self.entries.append((component, props))
        return component

    @property
    def components(self) -> list[Any]:
        return [c for c, _ in self.entries]

    def updates(self, lang: str, extra: dict[Any, dict] | None = None) -> tuple[list[Any], list[dict]]:
        """(components, updates) relabelled for `lang`; `extra` merges more properties per component."""
        comps: list[Any] = []
        props_by_id: dict[int, dict] = {}
        for comp, props in [*self.entries, *((c, {}) for c in (extra or {}))]:
            if id(comp) not in props_by_id:
                comps.append(comp)
                props_by_id[id(comp)] = {}
            props_by_id[id(comp)].update({prop: t(lang, key) for prop, key in props.items()})
        for comp, more in (extra or {}).items():
            props_by_id[id(comp)].update(more)
        return comps, [gr.update(**props_by_id[id(c)]) for c in comps]
