"""Events that hide their progress leave no loading status on the page (it slowed every later chat update)."""

import gradio as gr

from studio.loading_status import bound_progress_targets
from tests.unit.studio_config import studio_config


def _deps(demo: gr.Blocks) -> list[dict]:
    return demo.get_config_file()["dependencies"]


def test_a_hidden_event_gets_no_targets_and_a_shown_one_its_first_drawn_output():
    with gr.Blocks() as demo:
        box, bot, note, state = gr.Textbox(), gr.Chatbot(), gr.Markdown(), gr.State()
        go, show, chosen = gr.Button("go"), gr.Button("show"), gr.Button("chosen")
        go.click(lambda: ("", [], ""), None, [box, bot, note], show_progress="hidden")
        show.click(lambda: (None, "", ""), None, [state, box, note])  # progress shown
        chosen.click(lambda: ("", ""), None, [box, note], show_progress="hidden", show_progress_on=[note])
    before = [d["show_progress_on"] for d in _deps(demo)]
    assert before == [None, None, [note._id]]  # Gradio's default: every output is a target, hidden or not

    assert bound_progress_targets(demo) == 4
    # The chatbot keeps its "pending" dots; the shown progress is one spinner, on the first output drawn on the page.
    assert [d["show_progress_on"] for d in _deps(demo)] == [[bot._id], [box._id], [note._id]]


def test_the_studio_page_keeps_loading_status_only_where_progress_shows():
    """The real app: no hidden event (load, language switch, tab redraws) targets anything but a chatbot, a shown
one at most one other component, and the page can gather few loading statuses however long it is used."""
    cfg = studio_config()
    types = {c["id"]: c["type"] for c in cfg["components"]}
    hidden = [d for d in cfg["dependencies"] if d["show_progress"] == "hidden"]
    shown = [d for d in cfg["dependencies"] if d["show_progress"] != "hidden"]
    seen = {"shown_max": max(len([i for i in d["show_progress_on"] if types[i] != "chatbot"]) for d in shown),
            "distinct": len({i for d in cfg["dependencies"] for i in d["show_progress_on"]}),
            "all_outputs": len({i for d in cfg["dependencies"] for i in d["outputs"]}), "hidden": len(hidden),
            "outputs": sum(len(d["outputs"]) for d in hidden),
            "targets": sorted({types[i] for d in hidden for i in (d["show_progress_on"] or [])}),
            "untargeted": sum(d["show_progress_on"] is None for d in hidden)}
    assert seen["hidden"] > 100 and seen["outputs"] > 500  # the load event and the switch relabel hundreds
    assert seen["untargeted"] == 0
    assert seen["targets"] == ["chatbot"]
    assert seen["shown_max"] == 1
    assert seen["distinct"] * 5 < seen["all_outputs"]  # was every output: 456 of the app's components
