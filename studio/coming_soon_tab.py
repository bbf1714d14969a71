"""Placeholder for a tab whose issue has not landed yet: says what is coming."""

from __future__ import annotations

import gradio as gr

from studio.i18n import Translatable, t


def build_coming_soon_tab(name: str, tr: Translatable, lang: str) -> gr.Markdown:
    return tr.add(gr.Markdown(t(lang, f"soon.{name}"), elem_classes=["coming-soon"]), value=f"soon.{name}")
