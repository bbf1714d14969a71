"""UI strings per language, loaded once from assets/i18n/<lang>.json, and the switch that relabels the UI."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

I18N_DIR = Path(__file__).resolve().parent.parent / "assets" / "i18n"
LANGUAGES = {"en": "English", "ko": "한국어"}


@cache
def strings(lang: str) -> dict[str, str]:
    path = I18N_DIR / f"{lang}.json"
    if not path.is_file():
        path = I18N_DIR / "en.json"
    return json.loads(path.read_text(encoding="utf-8"))


# The placeholders that count what a string names ("{n} rows", "{rows} rows"): when one of them is 1, the language's
# own `KEY.one` form is used if it has one ("1 row"). Korean does not inflect ("1개 행"), so ko.json has no such keys.
COUNTS = ("n", "rows", "total")
SINGULAR = ".one"


def t(lang: str, key: str, **fmt: Any) -> str:
    """The string for `key` in `lang` (English if missing there, the key itself as a last resort); with a count of 1
    (see COUNTS), the language's singular form `KEY.one` where it has one."""
    table = strings(lang)
    text = None
    if any(str(fmt.get(c, "")).strip() == "1" for c in COUNTS):  # callers may pass "1" (formatted) or 1
        text = table.get(key + SINGULAR) or (None if key in table else strings("en").get(key + SINGULAR))
    text = text or table.get(key) or strings("en").get(key) or key
    return text.format(**fmt) if fmt else text


# A choice: (key, value) — the label is t(lang, key), the value never changes — or a bare value shown as it is (an id).
Choice = tuple[str, Any] | str


def choices_for(lang: str, choices: Sequence[Choice]) -> list[tuple[str, Any]]:
    """(label, value) pairs in `lang`: what a Radio, CheckboxGroup or Dropdown gets as `choices`."""
    return [(t(lang, c[0]), c[1]) if isinstance(c, tuple) else (str(c), c) for c in choices]


def relabel_cell(lang: str, cell: Any, keys: Sequence[str]) -> Any:
    """A table cell the UI wrote as t(any language, key) — alone or after a symbol such as "✓ " — in `lang`.
    Any other cell (data: names, numbers, ids) comes back unchanged."""
    if not isinstance(cell, str):
        return cell
    for key in keys:
        for code in LANGUAGES:
            text = t(code, key)
            if cell == text:
                return t(lang, key)
            head = cell[: len(cell) - len(text)]
            if cell.endswith(text) and head.endswith(" ") and not any(ch.isalnum() for ch in head):
                return head + t(lang, key)
    return cell


@dataclass(frozen=True)
class TableLabels:
    """A Dataframe's column headers (one key per column) and the columns whose cells are UI words (index → keys)."""

    headers: tuple[str, ...]
    cells: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def relabel(self, lang: str, value: Any) -> pd.DataFrame | None:
        """The table as shown, in `lang`: same rows and values, the columns renamed (by position) and the UI's words in
        the `cells` columns translated. None when the table has another shape than the one declared (left as it is)."""
        headers = [t(lang, k) for k in self.headers]
        if value is None or (isinstance(value, pd.DataFrame) and len(value.columns) == 0):
            return pd.DataFrame(columns=headers)
        frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
        if len(frame.columns) != len(headers):
            return None
        frame = frame.set_axis(headers, axis=1)
        for col, keys in self.cells.items():
            if col < len(headers):
                frame.iloc[:, col] = [relabel_cell(lang, v, keys) for v in frame.iloc[:, col]]
        return frame


@dataclass
class Translatable:
    """Components whose texts change with the language: (component, {property: key}); choices whose labels do
    (values unchanged); values drawn again in the new language; and Dataframes whose headers (and UI words in some
    columns) do."""

    entries: list[tuple[gr.components.Component | gr.blocks.BlockContext, dict[str, str]]] = field(default_factory=list)
    choice_specs: dict[int, list[Choice] | Callable[[str], list[tuple[str, Any]]]] = field(default_factory=dict)
    renders: dict[int, Callable[[str], Any]] = field(default_factory=dict)
    table_specs: list[tuple[Any, TableLabels]] = field(default_factory=list)

    def add(self, component: Any, *, choices: Sequence[Choice] | Callable[[str], list[tuple[str, Any]]] | None = None,
            render: Callable[[str], Any] | None = None, headers: Sequence[str] | None = None,
            cells: dict[int, Sequence[str]] | None = None, **props: str) -> Any:
        """Relabel `component` with the language: each of `props` (property=key); `choices`, a fixed list of (key, value)
        pairs or bare values, or `choices(lang)` giving the (label, value) pairs of the app's state now (values never
        change: what is picked stays picked); `render(lang)`, its value drawn again from the app's state now (a table of the servers,
        of the runs); `headers`, a Dataframe's column keys — renamed on the table as the page shows it (what it shows
        depends on the session: a page, a filter) — with `cells` the columns whose cells are UI words."""
        self.entries.append((component, props))
        if choices is not None:
            self.choice_specs[id(component)] = choices if callable(choices) else list(choices)
        if render is not None:
            self.renders[id(component)] = render
        if headers is not None:
            self.table_specs.append((component, TableLabels(tuple(headers), {i: tuple(k) for i, k in (cells or {}).items()})))
        return component

    @property
    def components(self) -> list[Any]:
        return [c for c, _ in self.entries]

    @property
    def tables(self) -> list[Any]:
        """The Dataframes relabelled from their current value (the inputs and outputs of `table_updates`)."""
        return [c for c, _ in self.table_specs]

    def updates(self, lang: str, extra: dict[Any, dict] | None = None) -> tuple[list[Any], list[dict]]:
        """(components, updates) relabelled for `lang`; `extra` merges more properties per component."""
        comps: list[Any] = []
        props_by_id: dict[int, dict] = {}
        for comp, props in [*self.entries, *((c, {}) for c in (extra or {}))]:
            if id(comp) not in props_by_id:
                comps.append(comp)
                props_by_id[id(comp)] = {}
            props_by_id[id(comp)].update({prop: t(lang, key) for prop, key in props.items()})
        for comp in comps:
            if id(comp) in self.choice_specs:
                spec = self.choice_specs[id(comp)]
                props_by_id[id(comp)]["choices"] = spec(lang) if callable(spec) else choices_for(lang, spec)
            if id(comp) in self.renders:
                props_by_id[id(comp)]["value"] = self.renders[id(comp)](lang)
        for comp, more in (extra or {}).items():
            props_by_id[id(comp)].update(more)
        return comps, [gr.update(**props_by_id[id(c)]) for c in comps]

    def table_updates(self, lang: str, values: Sequence[Any]) -> list[Any]:
        """Each table in `tables` (its current value in `values`) with headers and UI words in `lang`."""
        out = []
        for (_, labels), value in zip(self.table_specs, values, strict=True):
            frame = labels.relabel(lang, value)
            out.append(gr.skip() if frame is None else frame)
        return out
