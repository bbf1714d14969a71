"""The History tab: one searchable timeline of everything recorded, lineage of a model, run comparison, archive."""

from __future__ import annotations

import datetime as dt
import inspect
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines.accounts import PermissionDenied
from engines.history import items as history_items
from engines.history.archive import ArchiveError, export_archive, import_archive
from engines.history.lineage import compare_runs, lineage
from engines.history.timeline import HistoryPage, history_page
from storage import catalog, runs
from storage.history import KINDS, Cursor, models_seen
from studio.api_files import downloadable, records
from studio.history_view import RANGES, items_table, lineage_markdown, since_of
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of, admin_controls
from studio.plots import color_every_series
from studio.services import Services

PAGE = 50
WATCH_S = 3.0  # how often the detail of a running fine-tune or evaluation is re-read while History is open
KIND_CHOICES = [(f"hist.kind.{k}", k) for k in KINDS]
RANGE_CHOICES = [(f"hist.range.{k}", k) for k in RANGES]
TABLE_KEYS = tuple(f"hist.col.{c}" for c in ("when", "kind", "title", "detail", "match"))
CURVE_TITLES = {"x_title": "ft.step", "y_title": "ft.axis.loss", "color_title": "ft.series"}


def curve_titles(lang: str) -> dict[str, str]:
    return {prop: t(lang, key) for prop, key in CURVE_TITLES.items()}


@dataclass
class HistoryTab:
    selected: gr.State  # "kind:id" of the item shown
    open_btn: gr.Button
    watch: gr.Timer  # re-reads a running item's detail; app.py stops it when another tab opens
    refresh: dict  # fn/inputs/outputs that reload the list (wired to the tab's select in app.py)
    relabel: dict  # fn/inputs/outputs for a language switch: the hint shown while nothing is picked


def model_names() -> list[str]:
    return sorted({*models_seen(), *(m.name for m in catalog.list_models())})


def model_filter_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, "hist.any_model"), ""), *((m, m) for m in model_names())]


def run_choices(lang: str) -> list[tuple[str, str]]:
    return [(f"#{r.id} {r.name} · {t(lang, f'ft.status.{r.status}')}", str(r.id)) for r in runs.list_runs(200)]


def build_history_tab(services: Services, tr: Translatable, lang_state: Any) -> HistoryTab:
    settings = services.settings
    lang0 = settings.ui_language

    with gr.Row(equal_height=True):
        query = tr.add(gr.Textbox(label=t(lang0, "hist.search"), placeholder=t(lang0, "hist.search_ph"), scale=3,
                                  elem_id="hist-search"), label="hist.search", placeholder="hist.search_ph")
        kinds = tr.add(gr.CheckboxGroup(choices_for(lang0, KIND_CHOICES), value=list(KINDS),
                                        label=t(lang0, "hist.kinds"), scale=4, elem_id="hist-kinds"), label="hist.kinds",
                       choices=KIND_CHOICES)
        model = tr.add(gr.Dropdown(choices=[(t(lang0, "hist.any_model"), "")], value="", label=t(lang0, "hist.model"),
                                   scale=2, elem_id="hist-model"), label="hist.model", choices=model_filter_choices)
        since = tr.add(gr.Dropdown(choices_for(lang0, RANGE_CHOICES), value="0", label=t(lang0, "hist.when"),
                                   scale=1, elem_id="hist-since"), label="hist.when", choices=RANGE_CHOICES)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            table = tr.add(gr.Dataframe(items_table(lang0, []), interactive=False, wrap=True, max_height=560, elem_id="hist-table",
                                        column_widths=["13%", "12%", "27%", "23%", "25%"]),
                           headers=TABLE_KEYS, cells={1: tuple(k for k, _ in KIND_CHOICES)})
            with gr.Row():
                more_btn = tr.add(gr.Button(t(lang0, "hist.more"), size="sm", elem_id="hist-more"), value="hist.more")
                count = gr.Markdown("", elem_id="hist-count")
        with gr.Column(scale=2):
            detail = gr.Markdown(t(lang0, "hist.pick"), elem_id="hist-detail", max_height=520)
            with gr.Row():
                open_btn = tr.add(gr.Button(t(lang0, "hist.open"), variant="primary", size="sm", elem_id="hist-open",
                                            interactive=False), value="hist.open")
                delete_btn = tr.add(gr.Button(t(lang0, "hist.delete"), variant="stop", size="sm", elem_id="hist-delete",
                                              interactive=False), value="hist.delete")
            with gr.Row(visible=False, elem_id="hist-confirm-row") as confirm_row:
                confirm_text = gr.Markdown("", elem_id="hist-confirm-text")
                confirm_btn = tr.add(gr.Button(t(lang0, "hist.confirm_delete"), variant="stop", size="sm",
                                               elem_id="hist-confirm"), value="hist.confirm_delete")
                cancel_btn = tr.add(gr.Button(t(lang0, "hist.keep"), size="sm", elem_id="hist-keep"), value="hist.keep")
    with tr.add(gr.Accordion(t(lang0, "hist.lineage"), open=False, elem_id="hist-lineage"), label="hist.lineage"):
        lin_model = tr.add(gr.Dropdown(choices=[], value=None, label=t(lang0, "hist.lin.model"), elem_id="lin-model"),
                           label="hist.lin.model")
        with gr.Row():
            lin_text = gr.Markdown("", elem_id="lin-tree")
            lin_plot = tr.add(gr.LinePlot(x="step", y="loss", color="series", label=t(lang0, "hist.curves"),
                                          elem_id="lin-curves", **curve_titles(lang0)), label="hist.curves", **CURVE_TITLES)
    with tr.add(gr.Accordion(t(lang0, "hist.compare_runs"), open=False, elem_id="hist-runs"), label="hist.compare_runs"):
        rc_runs = tr.add(gr.Dropdown(choices=[], value=[], multiselect=True, label=t(lang0, "hist.pick_runs"), elem_id="rc-runs"),
                         label="hist.pick_runs", choices=run_choices)
        with gr.Row():
            rc_plot = tr.add(gr.LinePlot(x="step", y="loss", color="series", label=t(lang0, "hist.curves"),
                                         elem_id="rc-curves", **curve_titles(lang0)), label="hist.curves", **CURVE_TITLES)
            rc_params = gr.Dataframe(interactive=False, elem_id="rc-params", wrap=True)
    with tr.add(gr.Accordion(t(lang0, "hist.archive"), open=False, elem_id="hist-archive"), label="hist.archive"):
        tr.add(gr.Markdown(t(lang0, "hist.archive_help")), value="hist.archive_help")
        archive_admin = tr.add(gr.Markdown(f"**{t(lang0, 'hist.archive_admin_only')}**", visible=False, elem_id="arch-admin-only"),
                               value="hist.archive_admin_only")
        with gr.Row():
            export_btn = tr.add(gr.Button(t(lang0, "hist.export"), elem_id="arch-export"), value="hist.export")
            archive_file = gr.File(label=t(lang0, "hist.archive_file"), visible=False, elem_id="arch-file")
        with gr.Row():
            upload = tr.add(gr.File(label=t(lang0, "hist.import_file"), file_types=[".zip"], elem_id="arch-upload"),
                            label="hist.import_file")
            import_btn = tr.add(gr.Button(t(lang0, "hist.import"), elem_id="arch-import"), value="hist.import")
        archive_msg = gr.Markdown("", elem_id="arch-msg")

    # Ticks only while History is open and the item shown is still running (pick/reload start it, follow stops it).
    watch = gr.Timer(WATCH_S, active=False)
    keys = gr.State([])  # "kind:id" per table row, in order
    cursor = gr.State(None)
    selected = gr.State("")

    # ---- handlers ----------------------------------------------------------------------------------------------
    def _page(q: str, kinds_v, model_v, since_v, request: gr.Request, before: Cursor | None = None) -> HistoryPage:
        """A page as the REST API reads one (engines.history.timeline): private kinds only the acting user's own."""
        return history_page(actor_of(request), text=q or "", kinds=tuple(kinds_v or ()), model=model_v or None,
                            since=since_of(since_v), before=before, limit=PAGE)

    def load(q, kinds_v, model_v, since_v, lang, request: gr.Request):
        """First page: matches of the search words, or the newest items."""
        started = time.perf_counter()
        page = _page(q, kinds_v, model_v, since_v, request)
        got, nxt = page.items, page.next_before  # a search shows its first page only
        ms = (time.perf_counter() - started) * 1000
        return (items_table(lang, got), [i.key for i in got], nxt,
                t(lang, "hist.count", n=len(got), ms=f"{ms:.0f}"), gr.update(visible=nxt is not None),
                gr.update(choices=model_filter_choices(lang)))

    def more(kinds_v, model_v, since_v, cur, shown, current, lang, request: gr.Request):
        """The next page (older than the last row shown), appended."""
        if not cur:
            return gr.skip(), shown, None, gr.skip(), gr.update(visible=False)
        page = _page("", kinds_v, model_v, since_v, request, before=tuple(cur))
        got, nxt = page.items, page.next_before
        frame = pd.concat([current, items_table(lang, got)], ignore_index=True) if len(current) else items_table(lang, got)
        all_keys = shown + [i.key for i in got]
        return frame, all_keys, nxt, t(lang, "hist.count", n=len(all_keys), ms="–"), gr.update(visible=nxt is not None)

    def pick(evt: gr.SelectData, shown: list[str], lang: str, request: gr.Request):
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        if row is None or row >= len(shown):
            return gr.skip(), "", gr.skip(), gr.skip(), gr.update(visible=False), gr.Timer(active=False)
        key = shown[row]
        kind, item_id = history_items.parse_key(key)
        text = history_items.describe(kind, item_id, actor_of(request)) or t(lang, "hist.gone")
        openable = kind in ("chat", "run", "eval")
        return (text, key, gr.update(interactive=openable), gr.update(interactive=True), gr.update(visible=False),
                gr.Timer(active=history_items.in_progress(kind, item_id)))

    def _now(key: str, lang: str, request: gr.Request) -> tuple[str | None, bool]:
        """The item's description as stored now (None when nothing is shown) and whether it is still running."""
        try:
            kind, item_id = history_items.parse_key(key)
        except ValueError:
            return None, False
        text = history_items.describe(kind, item_id, actor_of(request)) or t(lang, "hist.gone")
        # As the Markdown holds it (stripped and unindented), so an unchanged item compares equal and is not re-sent.
        return inspect.cleandoc(text), history_items.in_progress(kind, item_id)

    def follow(key: str, shown_text: str, lang: str, request: gr.Request):
        """Each tick: the shown item as stored now ("running · step 8/20" becomes "completed · step 20/20" without a
        click); the watch stops once the item no longer runs. Unchanged text is not sent again."""
        text, running = _now(key, lang, request)
        return (gr.skip() if text is None or text == shown_text else text), (gr.skip() if running else gr.Timer(active=False))

    def reload(q, kinds_v, model_v, since_v, lang, key, shown_text, request: gr.Request):
        """History opened (again): the list and the item shown, both as stored now; a running item is watched.
        With nothing picked, the hint is in the page's language now (the page was built in that of the app's start)."""
        text, running = _now(key, lang, request)
        if text is None:
            text = t(lang, "hist.pick")
        return (*load(q, kinds_v, model_v, since_v, lang, request),
                gr.skip() if text is None or text == shown_text else text, gr.Timer(active=running))

    def ask_delete(key: str, lang: str):
        if not key:
            raise gr.Error(t(lang, "hist.pick"))
        try:
            kind, item_id = history_items.parse_key(key)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return gr.update(visible=True), t(lang, "hist.confirm_text", kind=t(lang, f"hist.kind.{kind}"), id=item_id)

    def do_delete(key: str, q, kinds_v, model_v, since_v, lang, request: gr.Request):
        try:
            kind, item_id = history_items.parse_key(key)
            name = history_items.delete(settings, kind, item_id, actor_of(request))
        except (history_items.DeleteRefused, PermissionDenied, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        except KeyError:  # gone, or another person's private item: the same words either way
            raise gr.Error(t(lang, "hist.no_item", key=key)) from None
        gr.Info(t(lang, "hist.deleted", name=name))
        return (gr.update(visible=False), t(lang, "hist.pick"), "", gr.update(interactive=False),
                gr.update(interactive=False), *load(q, kinds_v, model_v, since_v, lang, request)[:3], gr.Timer(active=False))

    def show_lineage(name: str, lang: str, request: gr.Request):
        if not name:
            return "", gr.skip()
        lin = lineage(settings, name, actor_of(request))
        return lineage_markdown(lang, lin), lin.curves  # None (no run): the last model's curves go

    def lineage_choices():
        return gr.update(choices=model_names())

    def show_runs(ids: list[str]):
        picked = [int(i) for i in ids or [] if str(i).isdigit()]
        if not picked:
            return gr.skip(), gr.skip()
        return compare_runs(settings, picked)

    def do_export(lang: str, request: gr.Request):
        try:
            path = export_archive(settings, actor=actor_of(request))
        except (PermissionDenied, OSError) as exc:  # a member is told only admins move archives
            raise gr.Error(str(exc)) from None
        return gr.update(value=str(path), visible=True), t(lang, "hist.exported", name=path.name)

    def do_import(file: Any, lang: str, request: gr.Request):
        if not file:
            raise gr.Error(t(lang, "hist.import_pick"))
        from pathlib import Path

        try:
            counts = import_archive(settings, Path(file if isinstance(file, str) else file.name), actor=actor_of(request))
        except (ArchiveError, PermissionDenied) as exc:
            return f"⚠ {exc}"
        return t(lang, "hist.imported", rows=sum(counts.values()), tables=len([v for v in counts.values() if v]))

    # ---- API (gradio_client): plain values in and out, no state kept in the session ------------------------------
    def _listing(got: list[Any], nxt: tuple | None) -> dict[str, Any]:
        items = [{"key": i.key, "kind": i.kind, "id": i.id, "at": i.at.isoformat(sep=" ", timespec="seconds"),
                  "title": i.title, "detail": i.detail, "snippet": i.snippet} for i in got]
        cursor = [nxt[0].isoformat(), nxt[1], nxt[2]] if nxt else None
        return {"items": items, "next_cursor": cursor, "count": len(items)}

    def _api_page(words: str, kinds_v: list[str] | None, model_v: str, range_v: str, request: gr.Request,
                  before: Cursor | None = None) -> HistoryPage:
        bad = [k for k in kinds_v or () if k not in KINDS]
        if bad:
            raise gr.Error(f"unknown kinds {bad}; choose from {list(KINDS)}")
        return _page(words, kinds_v or list(KINDS), model_v, range_v, request, before=before)

    def history_api(search_words: str = "", kinds: list[str] | None = None, model: str = "", time_range: str = "0",
                    lang: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Search (words) or the timeline (newest first), 50 at a time: {"items": [{"key", "kind", "id", "at", "title",
        "detail", "snippet"}], "next_cursor" (pass to /history_more; null at the end), "count"}."""
        page = _api_page((search_words or "").strip(), kinds, model, time_range, request)
        return _listing(page.items, page.next_before)

    def history_more_api(cursor: list[Any], kinds: list[str] | None = None, model: str = "", time_range: str = "0",
                         lang: str = "", request: gr.Request = None) -> dict[str, Any]:
        """The next (older) 50 items after `cursor` (a /history or /history_more "next_cursor"); same shape as /history."""
        try:
            before = (dt.datetime.fromisoformat(str(cursor[0])), str(cursor[1]), int(cursor[2]))
        except (TypeError, ValueError, IndexError):
            raise gr.Error("cursor: pass the next_cursor of /history or /history_more") from None
        page = _api_page("", kinds, model, time_range, request, before=before)
        return _listing(page.items, page.next_before)

    def history_item_api(key: str, lang: str = "", request: gr.Request = None) -> str:
        """One item ("kind:id") described in markdown."""
        try:
            kind, item_id = history_items.parse_key(key)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        text = history_items.describe(kind, item_id, actor_of(request))
        if text is None:
            raise gr.Error(t(lang or lang0, "hist.no_item", key=key))
        return inspect.cleandoc(text)

    def history_delete_api(key: str, lang: str = "", request: gr.Request = None) -> str:
        """Delete one item ("kind:id") and its files (refused while in use, or when it is not yours to delete)."""
        lang = lang or lang0
        try:
            kind, item_id = history_items.parse_key(key)
            name = history_items.delete(settings, kind, item_id, actor_of(request))
        except (history_items.DeleteRefused, PermissionDenied, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        except KeyError:
            raise gr.Error(t(lang, "hist.no_item", key=key)) from None
        return t(lang, "hist.deleted", name=name)

    def lineage_api(model: str, lang: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Where a model came from and went: {"markdown", "curves": [{"step", "loss", "series"}]}."""
        if not (model or "").strip():
            raise gr.Error(t(lang or lang0, "hist.lin.model"))
        lin = lineage(settings, model.strip(), actor_of(request))
        return {"markdown": lineage_markdown(lang or lang0, lin), "curves": records(lin.curves)}

    def compare_runs_api(run_ids: list[int]) -> dict[str, Any]:
        """Runs side by side: {"curves": [{"step", "loss", "series"}], "differences": [{"parameter", <run name>: value}]}."""
        try:
            picked = [int(i) for i in run_ids or []]
        except (TypeError, ValueError):
            raise gr.Error("run_ids: a list of run ids (see /list_training_runs)") from None
        missing = [i for i in picked if runs.get_run(i) is None]
        if not picked or missing:
            raise gr.Error(f"no such run: {missing}" if missing else "run_ids: pick at least one run")
        curves, table = compare_runs(settings, picked)
        return {"curves": records(curves), "differences": records(table)}

    def export_archive_api(lang: str = "", request: gr.Request = None) -> dict[str, Any]:
        """The studio's archive (.zip, admins only): a file the client downloads."""
        try:
            path = export_archive(settings, actor=actor_of(request))
        except (PermissionDenied, OSError) as exc:
            raise gr.Error(str(exc)) from None
        return downloadable(path)

    # ---- wiring --------------------------------------------------------------------------------------------------
    filters_in = [query, kinds, model, since, lang_state]
    list_out = [table, keys, cursor, count, more_btn, model]
    query.submit(load, filters_in, list_out, api_name=False)
    gr.on([kinds.input, model.input, since.input], load, filters_in, list_out, api_name=False, show_progress="hidden")
    more_btn.click(more, [kinds, model, since, cursor, keys, table, lang_state], [table, keys, cursor, count, more_btn],
                   api_name=False)
    table.select(pick, [keys, lang_state], [detail, selected, open_btn, delete_btn, confirm_row, watch], api_name=False)
    watch.tick(follow, [selected, detail, lang_state], [detail, watch], api_name=False, show_progress="hidden")
    open_btn.click(lambda: gr.Timer(active=False), None, [watch], api_name=False)  # "Open" leaves History
    delete_btn.click(ask_delete, [selected, lang_state], [confirm_row, confirm_text], api_name=False)
    cancel_btn.click(lambda: gr.update(visible=False), None, [confirm_row], api_name=False)
    confirm_btn.click(do_delete, [selected, *filters_in],
                      [confirm_row, detail, selected, open_btn, delete_btn, table, keys, cursor, watch], api_name=False)
    lin_model.focus(lineage_choices, None, [lin_model], api_name=False, show_progress="hidden")
    lin_model.change(show_lineage, [lin_model, lang_state], [lin_text, lin_plot], api_name=False)
    rc_runs.focus(lambda lang: gr.update(choices=run_choices(lang)), [lang_state], [rc_runs], api_name=False, show_progress="hidden")
    rc_runs.change(show_runs, [rc_runs], [rc_plot, rc_params], api_name=False)
    for plot in (lin_plot, rc_plot):  # another model or another run brings new series: each gets its colour and legend entry
        color_every_series(plot)
    export_btn.click(do_export, [lang_state], [archive_file, archive_msg], api_name=False)
    # The UI's list, page, selection and pickers live in this browser session; the API takes plain values instead.
    gr.api(history_api, api_name="history")
    gr.api(history_more_api, api_name="history_more")
    gr.api(history_item_api, api_name="history_item")
    gr.api(history_delete_api, api_name="history_delete")
    gr.api(lineage_api, api_name="lineage")
    gr.api(compare_runs_api, api_name="compare_runs")
    gr.api(export_archive_api, api_name="export_archive")
    import_btn.click(do_import, [upload, lang_state], [archive_msg], api_name="import_archive")

    def archive_access(request: gr.Request):
        """Archives are admin-only: a member sees the buttons disabled and why (the engine refuses anyway)."""
        return admin_controls(actor_of(request).is_admin, 3)

    gr.on(None, archive_access, None, [archive_admin, export_btn, upload, import_btn], api_name=False, show_progress="hidden")
    def hint(lang: str, key: str):
        """With nothing picked, the detail is a hint: in the page's language (an item shown stays as it is)."""
        return gr.skip() if key else t(lang, "hist.pick")

    return HistoryTab(selected=selected, open_btn=open_btn, watch=watch,
                      refresh={"fn": reload, "inputs": [*filters_in, selected, detail], "outputs": [*list_out, detail, watch]},
                      relabel={"fn": hint, "inputs": [lang_state, selected], "outputs": [detail], "show_progress": "hidden"})
