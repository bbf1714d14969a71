"""Line plots whose series change (train/eval, one series per run or model) draw and name every series.

Gradio 6.31's LinePlot builds its Vega spec only when a setting changes, with the colour scale's domain fixed to the
series in the value it has then; a new value only swaps the data. A series outside that domain gets no colour
(`stroke: none`) and the legend keeps the old names, until some setting changes (a language switch re-renders it).
Sending a new setting with the value does not help: Gradio applies an update's settings before its value, so the
rebuilt spec would hold the old data. Hence a second step after every new value: a `color_map` naming exactly the
series shown, which rebuilds the spec from the value already there when the series changed (and nothing otherwise).

No chart of the studio gets a `height` (tests/unit/test_plots.py checks the page): with one, Gradio sizes the Vega
chart to its container, which makes Vega listen to the window's resizes. A language switch redraws each chart twice
without waiting for the first drawing, so the first one was never finalised and its window listener kept the whole
chart alive: ~100 listeners, 400 DOM nodes and 1.3 MiB per switch for as long as the page stayed open. Without a
height the chart takes Vega's default (about 300 px) and a chart left behind is collected.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

# Vega's "tableau10" scheme: the colours the plot picks by itself, in its order.
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")


def series_colors(names: list[str]) -> dict[str, str]:
    """A colour per series name, in order of first appearance ("train" keeps its colour when "eval" comes)."""
    unique = list(dict.fromkeys(str(n) for n in names))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(unique)}


def shown_series(data: Any, column: str) -> list[str]:
    """The `column` values of a plot's value as the browser sends it back (columns + rows), or of a DataFrame."""
    if data is None:
        return []
    if hasattr(data, "columns") and hasattr(data, "data"):  # gradio's PlotData
        columns, rows = list(data.columns), data.data
    elif isinstance(data, dict):
        columns, rows = list(data.get("columns") or []), data.get("data") or []
    else:  # a DataFrame
        return [str(v) for v in data[column]] if column in data.columns else []
    if column not in columns:
        return []
    at = columns.index(column)
    return [str(row[at]) for row in rows]


def color_every_series(plot: gr.LinePlot, column: str = "series") -> None:
    """After each new value of `plot` (whatever sent it), give it a colour map of the series it now shows."""
    plot.change(lambda data: gr.update(color_map=series_colors(shown_series(data, column))), [plot], [plot],
                api_name=False, show_progress="hidden", queue=False)
