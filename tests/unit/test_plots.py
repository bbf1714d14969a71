"""The colour map that makes a LinePlot re-render when its series change (studio/plots.py)."""

from __future__ import annotations

import pandas as pd
from gradio.components.native_plot import PlotData

from studio.plots import PALETTE, series_colors, shown_series
from tests.unit.studio_config import studio_config


def test_each_series_gets_a_colour_in_order_of_first_appearance():
    assert series_colors(["train", "train", "eval", "train"]) == {"train": PALETTE[0], "eval": PALETTE[1]}
    assert series_colors([]) == {}
    assert len(set(series_colors([f"run{i}" for i in range(12)]).values())) == len(PALETTE)  # wraps, never fails


def test_series_are_read_from_what_the_browser_sends_back_or_a_frame():
    frame = pd.DataFrame({"step": [1, 2, 1], "loss": [2.0, 1.0, 1.5], "series": ["a · train", "a · train", "b · train"]})
    sent = PlotData(columns=["step", "loss", "series"], data=frame.values.tolist(), datatypes={}, mark="line")
    assert shown_series(sent, "series") == ["a · train", "a · train", "b · train"]
    assert shown_series(sent.model_dump(), "series") == shown_series(frame, "series")
    assert shown_series(None, "series") == [] and shown_series(sent, "colour") == []


def test_no_chart_of_the_studio_page_has_a_fixed_height():
    """A fixed height makes Gradio size the Vega chart to its container, which listens to the window's resizes; Gradio
    redraws a chart twice on a language switch without waiting for the first, so the first one's listener stayed
    registered for good, and with it the whole chart (each switch left ~100 listeners, 400 DOM nodes, 1.3 MiB)."""
    cfg = studio_config()
    charts = {c["props"].get("elem_id") or c["id"]: c["props"].get("height")
              for c in cfg["components"] if c["type"] == "nativeplot"}
    assert len(charts) >= 10, charts  # fine-tune, history, datasets, compare and models draw charts
    assert {name: h for name, h in charts.items() if h is not None} == {}
