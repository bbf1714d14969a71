"""Keep Gradio's per-component loading status to the components that show one.

Gradio's page keeps a loading status for every component that was ever a progress target of an event (by default:
every output) and, on each message of any running event (each streamed chat update), writes all of them again,
each through a search of the layout tree. Our load event, the language switch and the tabs' redraws output hundreds
of components with `show_progress="hidden"`: they show no progress, yet each made every later chat update slower
for the rest of the page's life (bench/results/page_endurance.md), and the statuses are never dropped: the set only
grows as the page is used. So an event that hides its progress gets no targets, and one that shows it, one.

That bounds which components get a status; how long they are kept is bounded in the page (`studio.app.PAGE_JS`): a
status that settled ("complete", written once since) is dropped before the next message. Even bounded, a page that
had opened every tab kept ~70 of them after ~40 events, and a streamed answer then cost 1.9-3.6 s of main thread per
4 s of streaming; with the settled ones dropped, 0.5-0.7 s (tests/e2e/test_idle_page_browser.py).
"""

from __future__ import annotations

import gradio as gr

# A chatbot shows Gradio's "answer pending" dots from its loading status: it keeps it even when the event hides progress.
KEEPS_STATUS = (gr.Chatbot,)


# Not drawn on the page: a loading status there is only a cost (the page searches its layout for it in vain).
NOT_DRAWN = (gr.State, gr.BrowserState, gr.Timer)


def bound_progress_targets(demo: gr.Blocks) -> int:
    """Bound every event's progress targets; returns how many outputs lost theirs.

    An event that hides its progress gets none (bar a chatbot). One that shows it shows it on its first drawn output
    only (and a chatbot): one spinner where the result lands, not one on each of its outputs."""
    cut = 0
    for fn in demo.fns.values():
        if fn.show_progress_on is not None:
            continue  # targets chosen on purpose: as wired
        drawn = [block for block in fn.outputs if not isinstance(block, NOT_DRAWN)]
        keep = [block for block in drawn if isinstance(block, KEEPS_STATUS)]
        if fn.show_progress != "hidden" and drawn and drawn[0] not in keep:
            keep.insert(0, drawn[0])
        cut += len(fn.outputs) - len(keep)
        fn.show_progress_on = keep
    return cut
