"""Build the Gradio app: a header with the language switch, then one tab per area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engines.training.jobs import served_base_name
from studio import datasets_view
from studio.account_tab import build_account_tab, whoami_html
from studio.agreement_panel import build_agreement_panel
from studio.batch_eval_tab import build_batch_eval_tab, run_choices
from studio.chat_tab import build_chat_tab, conversation_choices, status_html, status_signature
from studio.choices import model_choices
from studio.compare_tab import build_compare_tab
from studio.datasets_tab import build_datasets_tab
from studio.download_panel import build_download_panel
from studio.exports_panel import build_exports_panel
from studio.finetune_tab import base_model_choices, build_finetune_tab, training_file_choices
from studio.history_tab import build_history_tab
from studio.i18n import LANGUAGES, Translatable, t
from studio.loading_status import bound_progress_targets
from studio.models_tab import build_models_tab
from studio.people import actor_of
from studio.preference_panel import build_preference_panel
from studio.services import Services

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS = (ASSETS / "studio.css").read_text(encoding="utf-8")
# The URL of one of Gradio's own front-end modules (`assets/NAME-<hash>.js`), as the page loaded it.
GRADIO_MODULE_URL_JS = """
  const gradioModule = (name) => [...document.querySelectorAll('link[rel="modulepreload"], script[type="module"]')]
    .map((e) => e.href || e.src).concat(performance.getEntriesByType('resource').map((e) => e.name))
    .find((u) => new RegExp('/assets/' + name + '-[^/]*\\\\.js$').test(u || ''));
"""
# Gradio's own strings (upload box, footer, table menus) follow the browser's locale, fixed when the page loads;
# its core module exports `changeLocale` (what its Settings panel calls), so the studio's switch moves them too.
# Best effort: if a Gradio release renames the module or the export, only Gradio's own strings stay as they were.
GRADIO_LOCALE_JS = """
(lang) => {
  const want = lang === 'ko' ? 'ko' : 'en';
  GRADIO_MODULE_URL_JS
  const core = gradioModule('core');
  if (core) import(core).then((m) => m.changeLocale && m.changeLocale(want)).catch(() => {});
  return lang;
}
""".replace("GRADIO_MODULE_URL_JS", GRADIO_MODULE_URL_JS)
STATUS_POLL_MS = 3000  # how often an open page asks whether the server badge changed
# Runs once when the page loads. The Models tab's server log (a CodeMirror box) follows its newest line, as a terminal
# does, unless the reader has scrolled up to read: then it stays where they are until they scroll back down. The
# server badge is kept current without a Gradio timer (see `studio.chat_tab.status_signature`).
PAGE_JS = """
() => {
  let watched = null;
  const follow = (box) => {
    const sc = box.querySelector('.cm-scroller');
    if (!sc) return false;
    let stick = true;
    sc.addEventListener('scroll', () => { stick = sc.scrollTop + sc.clientHeight >= sc.scrollHeight - 8; }, {passive: true});
    const down = () => { if (stick && sc.scrollTop + sc.clientHeight < sc.scrollHeight - 1) sc.scrollTop = sc.scrollHeight; };
    new MutationObserver(down).observe(box, {childList: true, subtree: true, characterData: true});
    down();
    return true;
  };
  const look = () => {
    const box = document.getElementById('models-log');
    if (box && box !== watched && follow(box)) watched = box;
  };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true});
  look();
  // Gradio's page keeps the loading status of every component an event ever reported on and, on each message of a
  // running event (each streamed chat update), writes every one of them again, each through a search of the whole
  // layout: 120-330 ms of the main thread per update (bench/results/page_endurance.md), growing as the page is used,
  // so a Stop click waited behind the backlog. A status that has settled ("complete", already written once since)
  // changes nothing when written again: it is dropped before the next message. studio/loading_status.py bounds
  // which components get one; this bounds how long they are kept. Best effort: a Gradio release that renames the
  // module or the class leaves the page as Gradio made it.
  GRADIO_MODULE_URL_JS
  const tracker = gradioModule('statustracker');
  if (tracker) import(tracker).then((m) => {
    const Kept = Object.values(m).find((v) => typeof v === 'function' && v.prototype
      && typeof v.prototype.update === 'function' && typeof v.prototype.resolve_args === 'function');
    if (!Kept || Kept.prototype.studioPrunes) return;
    const update = Kept.prototype.update;
    const settled = new WeakSet();
    let keeper = null;  // the page's one instance, for the browser test's count
    window.studioLoadingStatuses = () => (keeper ? Object.keys(keeper.current).length : 0);
    Kept.prototype.update = function (status) {
      keeper = this;
      for (const [id, kept] of Object.entries(this.current)) if (settled.has(kept)) delete this.current[id];
      const out = update.call(this, status);
      for (const kept of Object.values(this.current)) {
        if (kept && kept.status === 'complete' && !kept.used_cache) settled.add(kept);
      }
      return out;
    };
    Kept.prototype.studioPrunes = true;
  }).catch(() => {});
  // The server badge and the model picker: a plain fetch of their digest every few seconds, and Gradio's
  // poll_status event (the hidden #status-poll button) only when it changed or could not be read.
  let sig = null;
  const pulse = async () => {
    if (document.hidden) return;
    try {
      const r = await fetch('studio/status', {cache: 'no-store', credentials: 'same-origin'});
      if (r.ok) {
        const now = (await r.json()).sig;
        if (now === sig) return;
        sig = now;
      }
    } catch (e) { /* unreachable for a moment: ask Gradio, which says so */ }
    document.getElementById('status-poll')?.click();
  };
  setInterval(pulse, STATUS_POLL_MS);
  document.addEventListener('visibilitychange', pulse);
}
""".replace("STATUS_POLL_MS", str(STATUS_POLL_MS)).replace("GRADIO_MODULE_URL_JS", GRADIO_MODULE_URL_JS)
THEME = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate")


def install_page_routes(app: Any, services: Services) -> None:
    """What the page's own script reads besides Gradio: GET /studio/status, the digest of the server badge.

    Behind the login gate like every route that is not public; it reads state only."""
    from fastapi.responses import JSONResponse

    def get_status() -> JSONResponse:
        return JSONResponse({"sig": status_signature(services)}, headers={"Cache-Control": "no-store"})

    app.add_api_route("/studio/status", get_status, methods=["GET"], include_in_schema=False)


def _focus_run() -> str:
    """A page opened (again) shows the job that is running, else the newest run: closing the browser loses nothing."""
    from storage import runs

    active = runs.list_runs(1, statuses=runs.ACTIVE) or runs.list_runs(1)
    return str(active[0].id) if active else ""


def _title(lang: str) -> str:
    return f"## {t(lang, 'app.title')}"


def build_app(services: Services) -> gr.Blocks:
    settings = services.settings
    lang0 = settings.ui_language
    tr = Translatable()
    with gr.Blocks(title="Chat Studio") as demo:
        lang_state = gr.BrowserState(lang0, storage_key="chat-studio-language")
        with gr.Row(elem_id="app-header", equal_height=True):
            with gr.Column(scale=4, min_width=300):
                title = gr.Markdown(_title(lang0), elem_id="app-title")
                tr.add(gr.Markdown(t(lang0, "app.subtitle"), elem_id="app-subtitle"), value="app.subtitle")
            with gr.Column(scale=1, min_width=220, elem_id="app-header-side"):
                whoami = gr.HTML(whoami_html(lang0, None), elem_id="whoami-box", padding=False)
                language = tr.add(
                    gr.Radio(
                        choices=[(label, code) for code, label in LANGUAGES.items()], value=lang0,
                        label=t(lang0, "app.language"), elem_id="language-switch", min_width=200,
                    ),
                    label="app.language",
                )
        with gr.Tabs(elem_id="tabs") as tabs:
            with tr.add(gr.Tab(t(lang0, "tab.chat"), id="chat", elem_id="tab-chat"), label="tab.chat") as chat_tab:
                chat = build_chat_tab(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.datasets"), id="datasets", elem_id="tab-datasets"), label="tab.datasets") as datasets_tab:
                datasets = build_datasets_tab(services, tr, lang_state)
                build_preference_panel(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.finetune"), id="finetune", elem_id="tab-finetune"), label="tab.finetune") as finetune_tab:
                finetune = build_finetune_tab(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.compare"), id="compare", elem_id="tab-compare"), label="tab.compare") as compare_tab:
                with gr.Tabs(elem_id="compare-tabs") as compare_tabs:
                    with tr.add(gr.Tab(t(lang0, "cmp.live_tab"), id="live", elem_id="tab-compare-live"), label="cmp.live_tab"):
                        compare = build_compare_tab(services, tr, lang_state)
                    with tr.add(gr.Tab(t(lang0, "ev.tab"), id="batch", elem_id="tab-compare-batch"), label="ev.tab"):
                        batch = build_batch_eval_tab(services, tr, lang_state)
                    with tr.add(gr.Tab(t(lang0, "agr.tab"), id="agreement", elem_id="tab-compare-agreement"), label="agr.tab") as agreement_tab:
                        agreement = build_agreement_panel(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.history"), id="history", elem_id="tab-history"), label="tab.history") as history_tab:
                history = build_history_tab(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.models"), id="models", elem_id="tab-models"), label="tab.models") as models_tab:
                models = build_models_tab(services, tr, lang_state)
                download_timer = build_download_panel(services, tr, lang_state, models.refresh)
                exports = build_exports_panel(services, tr, lang_state)
            with tr.add(gr.Tab(t(lang0, "tab.account"), id="account", elem_id="tab-account"), label="tab.account") as account_tab:
                account = build_account_tab(services, tr, lang_state)

        def chat_with_run(rid: str):
            """Open Chat with the run's adapter picked."""
            from storage import runs

            run = runs.get_run(int(rid)) if str(rid).isdigit() else None
            if run is None:
                return gr.skip(), gr.skip()
            choices = model_choices(services)
            if run.name not in {v for _, v in choices}:
                choices.append((f"{run.name}  ← {run.base_model}", run.name))
            return gr.Tabs(selected="chat"), gr.update(choices=choices, value=run.name)

        def compare_with_base(rid: str):
            """Open Compare with the run's adapter beside its base model, side by side, and batch evaluation set to its eval split."""
            from storage import runs

            run = runs.get_run(int(rid)) if str(rid).isdigit() else None
            if run is None:
                return [gr.skip()] * (7 + len(compare.models))
            base = served_base_name(run.base_model)
            pair = [run.name, base]
            return [gr.Tabs(selected="compare"), gr.Tabs(selected="live"), "side", 2,
                    *[gr.update(value=pair[i], choices=pair) if i < 2 else gr.update() for i in range(len(compare.models))],
                    gr.update(value=[base, run.name], choices=[base, run.name]), "run",
                    gr.update(choices=run_choices(), value=str(run.id))]

        # A new conversation with the adapter: its answers are not mixed into whatever chat was open before.
        finetune.chat_btn.click(chat_with_run, [finetune.run_id], [tabs, chat.model], api_name=False).then(
            api_name=False, show_progress="hidden", **chat.new_chat)
        finetune.compare_btn.click(compare_with_base, [finetune.run_id],
                                   [tabs, compare_tabs, compare.mode, compare.panes, *compare.models, batch.models, batch.source,
                                    batch.run_pick], api_name=False)
        for leave_finetune in (finetune.chat_btn, finetune.compare_btn):  # a tab switched from code fires no `select`
            leave_finetune.click(lambda: gr.Timer(active=False), None, [finetune.timer], api_name=False, show_progress="hidden")
        def open_history_item(key: str, request: gr.Request):
            """History's "Open": the item in its own tab (chats load in Chat, runs in Fine-tune, evaluations in Compare)."""
            from engines import conversations as turns

            kind, _, item_id = (key or "").partition(":")
            skip = [gr.skip()] * 7
            if kind == "chat":
                actor = actor_of(request)
                try:
                    conv = turns.own_conversation(actor, item_id)
                except turns.ConversationNotFound as exc:
                    gr.Warning(str(exc))
                    return skip
                choices = conversation_choices(actor)
                if item_id not in {v for _, v in choices}:  # an old chat beyond the sidebar's newest 200
                    choices.append((conv.title, item_id))
                return [gr.Tabs(selected="chat"), gr.skip(), gr.update(choices=choices, value=item_id),
                        gr.skip(), gr.skip(), gr.skip(), gr.skip()]
            # A tab opened from here fires no `select`: its poll timer is started here.
            if kind == "run":
                return [gr.Tabs(selected="finetune"), gr.skip(), gr.skip(), item_id, gr.skip(), gr.skip(),
                        gr.Timer(active=True)]
            if kind == "eval":
                return [gr.Tabs(selected="compare"), gr.Tabs(selected="batch"), gr.skip(), gr.skip(), item_id,
                        gr.Timer(active=True), gr.skip()]
            return skip

        history.open_btn.click(open_history_item, [history.selected],
                               [tabs, compare_tabs, chat.conversation_list, finetune.run_id, batch.eval_id, batch.timer, finetune.timer],
                               api_name=False).then(api_name=False, **chat.open_chat)  # the API has /history_item
        history_tab.select(api_name=False, show_progress="hidden", **history.refresh)
        # Polling timers run only while their tab is open: a hidden tab redrawing plots every 2 s costs the browser
        # (and a 2-core machine) enough to make the visible tab stutter.
        # Fine-tune's too: every tick updates ~10 outputs, and each update of a component makes Gradio's page search its
        # whole layout tree for it (a fresh page spent most of its idle CPU there while Chat was open).
        models_timers = [models.timer, download_timer, exports.timer]
        for tab_component, tab_id in ((chat_tab, "chat"), (datasets_tab, "datasets"), (finetune_tab, "finetune"),
                                      (compare_tab, "compare"), (history_tab, "history"), (models_tab, "models"),
                                      (account_tab, "account")):
            # History's watch: its own select handler (history.refresh) starts it when the item shown is running.
            tab_component.select(lambda tab_id=tab_id: [gr.Timer(active=tab_id == "models")] * len(models_timers)
                                 + [gr.Timer(active=tab_id == "compare"), gr.skip() if tab_id == "history" else gr.Timer(active=False),
                                    gr.Timer(active=tab_id == "finetune")],
                                 None, [*models_timers, batch.timer, history.watch, finetune.timer], api_name=False,
                                 show_progress="hidden")
        # Every tab that shows live state draws it as it is now when opened (and at page load, below): the page
        # itself was built once, at the app's start.
        models_tab.select(api_name=False, **models.show)
        models_tab.select(api_name=False, **exports.refresh)
        compare_tab.select(api_name=False, **compare.refresh)
        agreement_tab.select(api_name=False, **agreement.refresh)
        finetune_tab.select(api_name=False, **finetune.show)
        account_tab.select(api_name=False, show_progress="hidden", **account.refresh)
        # Rows added from Chat meanwhile are on the page when the Datasets tab opens again.
        datasets_tab.select(api_name=False, **datasets.refresh)
        # A dataset version saved a moment ago (or a model just served) is in the Fine-tune pickers when the tab opens.
        finetune_tab.select(lambda lang: (gr.update(choices=training_file_choices(settings, lang)),
                                          gr.update(choices=base_model_choices(services))),
                            [lang_state], [finetune.dataset, finetune.base_model], api_name=False, show_progress="hidden")

        def relabel_updates(lang: str) -> tuple[list, list]:
            fallback = [(settings.default_model, settings.default_model)]
            return tr.updates(
                lang,
                extra={
                    title: {"value": _title(lang)},
                    language: {"value": lang},
                    chat.status: {"value": status_html(services, lang)},
                    chat.model: {"choices": model_choices(services) or fallback},
                },
            )

        components, _ = relabel_updates(lang0)

        def relabel(lang: str):
            """Switch every label to `lang` (and remember it in this browser)."""
            lang = lang if lang in LANGUAGES else lang0
            return [lang, *relabel_updates(lang)[1]]

        def relabel_all(lang: str, request: gr.Request):
            """The language switch: every label, and the logged-in badge."""
            lang = lang if lang in LANGUAGES else lang0
            return [*relabel(lang), whoami_html(lang, request)]

        # Set by the load event once every label and list is in place (tests and scripts wait for it).
        ready = gr.HTML("", elem_id="app-ready-box", padding=False)

        def on_load(lang: str, request: gr.Request):
            """A fresh page: the language this browser chose last, who is logged in, their conversations, the servers."""
            return [
                *relabel(lang), whoami_html(lang if lang in LANGUAGES else lang0, request),
                gr.update(choices=conversation_choices(actor_of(request)), value=None),
                gr.update(choices=base_model_choices(services)),
                gr.update(choices=training_file_choices(settings, lang if lang in LANGUAGES else lang0)),
                _focus_run(), gr.update(choices=datasets_view.dataset_choices(lang if lang in LANGUAGES else lang0)),
                "<span id='app-ready'></span>",
            ]

        def relabel_tables(lang: str, *values):
            """The tables as this page shows them (a dataset's page, a search, an evaluation), headers in `lang`."""
            return tr.table_updates(lang if lang in LANGUAGES else lang0, values)

        # One after another: the tables are relabelled from what they show, then the views that depend on this page's
        # filters are drawn again in the language now stored (a refresh drawn first could be overwritten by the relabel).
        language.input(relabel_all, [language], [lang_state, *components, whoami], api_name="set_language", show_progress="hidden",
                       js=GRADIO_LOCALE_JS).then(
            relabel_tables, [language, *tr.tables], tr.tables, api_name=False, show_progress="hidden").then(
            api_name=False, **compare.refresh).then(
            api_name=False, **datasets.refresh).then(
            api_name=False, **datasets.relabel).then(
            api_name=False, **history.relabel).then(
            api_name=False, **finetune.relabel).then(
            api_name=False, show_progress="hidden", **account.refresh)  # Team's own lines, if it is the tab on show
        demo.load(on_load, [lang_state], [lang_state, *components, whoami, chat.conversation_list, finetune.base_model, finetune.dataset, finetune.run_id, datasets.dataset, ready], api_name="load", api_visibility="private", show_progress="hidden",
                  js=GRADIO_LOCALE_JS)
        for spec in (models.show, exports.refresh, finetune.show):
            demo.load(api_name=False, **spec)
        # The leaderboard is drawn after its headers are relabelled: the other way round, the table of the app's start
        # (relabelled) could land over the one drawn now.
        def relabel_tables_at_load(lang: str, *values):
            """A fresh page's tables are in the app's start language: relabelled only when this browser chose another."""
            return [gr.skip()] * len(values) if lang not in LANGUAGES or lang == lang0 else tr.table_updates(lang, values)

        demo.load(relabel_tables_at_load, [lang_state, *tr.tables], tr.tables, api_name=False, show_progress="hidden").then(
            api_name=False, **compare.refresh)
    bound_progress_targets(demo)
    return demo
