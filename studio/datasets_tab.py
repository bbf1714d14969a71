"""The Datasets tab: import any common chat format, page/filter/edit rows, see what is trained on, save versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from engines.accounts import PermissionDenied
from engines.datasets import draft, from_chats, uploads
from engines.datasets.files import DatasetFileError
from engines.datasets.formats import FormatError, PreferenceLayout
from engines.datasets.preference_files import FORMAT as PREFERENCE
from engines.datasets.preference_files import export_preference_version, load_preference_version
from engines.datasets.versions import (
    ImportRefused,
    NameTaken,
    NothingToAppend,
    create_empty,
    diff_versions,
    export_version,
    save_draft,
)
from storage import datasets as store
from studio.api_files import downloadable
from studio.datasets_view import (
    TOKEN_LABELS,
    categories_frame,
    dataset_choices,
    diff_html,
    pairs_frame,
    preview_html,
    problems_frame,
    rows_frame,
    summary_markdown,
    token_histogram,
    turns_histogram,
)
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of, ownership_hint
from studio.services import Services

ANY = "(all)"  # the filters' value for "any category / split" (its label is translated)
SPLIT_CHOICES = [("ds.all", ANY), ("ds.split.train", "train"), ("ds.split.eval", "eval")]
# Chat rows export as OpenAI or ShareGPT JSONL or Parquet; preference pairs in TRL's two layouts.
EXPORT_CHOICES = [("ds.export.openai", "openai"), ("ds.export.sharegpt", "sharegpt"), ("ds.export.parquet", "parquet"),
                  ("ds.export.trl_conversational", "trl-conversational"), ("ds.export.trl_strings", "trl-strings")]
TABLE_KEYS = tuple(f"ds.col.{c}" for c in ("id", "category", "split", "turns", "user", "assistant"))
TURN_KEYS = ("ds.col.role", "ds.col.content")
PROBLEM_KEYS = tuple(f"ds.col.{c}" for c in ("row", "severity", "kind", "message"))


@dataclass
class DatasetsTab:
    dataset: gr.Dropdown
    dataset_id: gr.Textbox
    refresh: dict  # fn/inputs/outputs that re-read the current page (wired to the tab's select in app.py)
    relabel: dict  # fn/inputs/outputs that redraw the picked file's detection line in the page's language (language switch)


def version_choices(dataset_id: int | None, lang: str = "en") -> list[tuple[str, str]]:
    if not dataset_id:
        return []
    return [(f"v{v.version} · {t(lang, 'ds.n_rows', n=f'{v.row_count:,}')} · {v.created_at:%m-%d %H:%M}"
             + (f" · {v.note}" if v.note else ""), str(v.id))
            for v in store.list_versions(dataset_id)]


def category_choices(lang: str, categories: list[str]) -> list[tuple[str, str]]:
    return [(t(lang, "ds.all"), ANY), *((c, c) for c in categories)]


def turns_frame(lang: str, msgs: list[dict[str, str]]) -> pd.DataFrame:
    """The row editor's table: one line per message (role, content), headed in `lang`."""
    return pd.DataFrame([[m.get("role", ""), m.get("content", "")] for m in msgs], columns=[t(lang, k) for k in TURN_KEYS])


def _id(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _owner_name(ds_id: int | None) -> str:
    ds = store.get_dataset(ds_id) if ds_id else None
    return (getattr(ds, "owner_name", None) if ds else None) or "—"


@contextmanager
def _may_change(ds_id: int | None, lang: str) -> Iterator[None]:
    """An engine's refusal (not the owner, not an admin) becomes one translated sentence, never a traceback."""
    try:
        yield
    except PermissionDenied:
        raise gr.Error(t(lang, "own.denied", owner=_owner_name(ds_id))) from None


def build_datasets_tab(services: Services, tr: Translatable, lang_state: Any) -> DatasetsTab:
    settings = services.settings
    lang0 = settings.ui_language

    dataset_id = gr.Textbox(value="", visible=False, elem_id="ds-id")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320, elem_id="ds-side"):
            dataset = tr.add(gr.Dropdown(choices=dataset_choices(lang0), value=None, label=t(lang0, "ds.dataset"), elem_id="ds-picker"),
                             label="ds.dataset", choices=dataset_choices)
            with tr.add(gr.Accordion(t(lang0, "ds.import"), open=True, elem_id="ds-import"), label="ds.import"):
                upload = tr.add(gr.File(label=t(lang0, "ds.file"), file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"],
                                        elem_id="ds-file", height=110), label="ds.file")
                detected = gr.Markdown("", elem_id="ds-detected")
                with gr.Row(visible=False, elem_id="ds-mapping") as mapping_row:
                    map_user = tr.add(gr.Dropdown([], label=t(lang0, "ds.map_user"), min_width=90), label="ds.map_user")
                    map_assistant = tr.add(gr.Dropdown([], label=t(lang0, "ds.map_assistant"), min_width=90), label="ds.map_assistant")
                    map_system = tr.add(gr.Dropdown([], label=t(lang0, "ds.map_system"), min_width=90), label="ds.map_system")
                    map_category = tr.add(gr.Dropdown([], label=t(lang0, "ds.map_category"), min_width=90), label="ds.map_category")
                import_name = tr.add(gr.Textbox(label=t(lang0, "ds.name"), elem_id="ds-import-name"), label="ds.name")
                valid_only = tr.add(gr.Checkbox(False, label=t(lang0, "ds.valid_only"), elem_id="ds-valid-only"), label="ds.valid_only")
                drop_dups = tr.add(gr.Checkbox(True, label=t(lang0, "ds.drop_dups"), elem_id="ds-drop-dups"), label="ds.drop_dups")
                with gr.Row():
                    import_btn = tr.add(gr.Button(t(lang0, "ds.import_button"), variant="primary", elem_id="ds-import-btn"),
                                        value="ds.import_button")
                    append_btn = tr.add(gr.Button(t(lang0, "ds.append_button"), elem_id="ds-append-btn"), value="ds.append_button")
                # The import's outcome (done, refused, or why not) in one place: the file's detection above and the
                # mapping stay as they were, so a taken name costs only a new name.
                import_msg = gr.Markdown("", elem_id="ds-import-msg")
                skipped_file = tr.add(gr.File(label=t(lang0, "ds.skipped"), visible=False, interactive=False, elem_id="ds-skipped"), label="ds.skipped")
            with tr.add(gr.Accordion(t(lang0, "ds.new_empty"), open=False, elem_id="ds-new"), label="ds.new_empty"):
                new_name = tr.add(gr.Textbox(label=t(lang0, "ds.name"), elem_id="ds-new-name"), label="ds.name")
                new_btn = tr.add(gr.Button(t(lang0, "ds.create"), size="sm", elem_id="ds-create"), value="ds.create")
                thumbs_btn = tr.add(gr.Button(t(lang0, "ds.thumbs_up"), size="sm", elem_id="ds-thumbs"), value="ds.thumbs_up")
            with tr.add(gr.Accordion(t(lang0, "ds.synth"), open=False, elem_id="ds-synth"), label="ds.synth"):
                synth_model = tr.add(gr.Dropdown([settings.default_model], value=settings.default_model, allow_custom_value=True,
                                                 label=t(lang0, "ds.synth_model"), elem_id="ds-synth-model"), label="ds.synth_model")
                synth_topic = tr.add(gr.Textbox(label=t(lang0, "ds.synth_topic"), elem_id="ds-synth-topic"), label="ds.synth_topic")
                synth_seeds = tr.add(gr.Textbox(lines=3, label=t(lang0, "ds.synth_seeds"), elem_id="ds-synth-seeds"), label="ds.synth_seeds")
                synth_system = tr.add(gr.Textbox(label=t(lang0, "ds.synth_system"), elem_id="ds-synth-system"), label="ds.synth_system")
                with gr.Row():
                    synth_n = tr.add(gr.Number(8, precision=0, minimum=1, maximum=10000, label=t(lang0, "ds.synth_n"), elem_id="ds-synth-n"),
                                     label="ds.synth_n")
                    synth_conc = tr.add(gr.Number(8, precision=0, minimum=1, maximum=64, label=t(lang0, "ds.synth_concurrency")),
                                        label="ds.synth_concurrency")
                    synth_tokens = tr.add(gr.Number(192, precision=0, minimum=16, maximum=4096, label=t(lang0, "ds.synth_tokens")),
                                          label="ds.synth_tokens")
                synth_btn = tr.add(gr.Button(t(lang0, "ds.synth_button"), elem_id="ds-synth-btn"), value="ds.synth_button")
            with tr.add(gr.Accordion(t(lang0, "ds.versions"), open=True, elem_id="ds-versions"), label="ds.versions"):
                note = tr.add(gr.Textbox(label=t(lang0, "ds.note"), elem_id="ds-note"), label="ds.note")
                save_btn = tr.add(gr.Button(t(lang0, "ds.save_version"), variant="primary", elem_id="ds-save"), value="ds.save_version")
                versions = tr.add(gr.Dropdown([], label=t(lang0, "ds.version_list"), elem_id="ds-version-list"), label="ds.version_list")
                compare_to = tr.add(gr.Dropdown([], label=t(lang0, "ds.compare_to"), elem_id="ds-compare-to"), label="ds.compare_to")
                diff_md = gr.Markdown("", elem_id="ds-diff")
                with gr.Row():
                    export_fmt = tr.add(gr.Radio(choices_for(lang0, EXPORT_CHOICES), value="openai", show_label=False,
                                                 elem_id="ds-export-format"), choices=EXPORT_CHOICES)
                export_btn = tr.add(gr.Button(t(lang0, "ds.export"), size="sm", elem_id="ds-export"), value="ds.export")
                export_file = tr.add(gr.File(label=t(lang0, "ds.export_file"), interactive=False, elem_id="ds-export-file", height=90),
                                     label="ds.export_file")

        with gr.Column(scale=3, min_width=480, elem_id="ds-main"):
            with gr.Row(equal_height=True):
                search = tr.add(gr.Textbox(label=t(lang0, "ds.search"), scale=3, elem_id="ds-search"), label="ds.search")
                category = tr.add(gr.Dropdown(category_choices(lang0, []), value=ANY, label=t(lang0, "ds.category"), scale=2,
                                              elem_id="ds-category"), label="ds.category")
                split_filter = tr.add(gr.Dropdown(choices_for(lang0, SPLIT_CHOICES), value=ANY, label=t(lang0, "ds.split"), scale=1,
                                                  min_width=100, elem_id="ds-split-filter"), label="ds.split", choices=SPLIT_CHOICES)
                page_no = tr.add(gr.Number(1, precision=0, minimum=1, label=t(lang0, "ds.page"), scale=1, min_width=90,
                                           elem_id="ds-page"), label="ds.page")
            page_info = gr.Markdown("", elem_id="ds-page-info")
            owner_md = gr.Markdown("", elem_id="ds-owner")
            table = tr.add(gr.Dataframe(value=rows_frame(lang0, draft.Page([], 0, 1, 1)), interactive=False, max_height=420, wrap=True,
                                        elem_id="ds-table", column_widths=["7%", "12%", "8%", "7%", "33%", "33%"]),
                           headers=TABLE_KEYS, cells={2: ("ds.split.train", "ds.split.eval")})
            with gr.Row():
                prev_btn = gr.Button("←", size="sm", min_width=50, elem_id="ds-prev")
                next_btn = gr.Button("→", size="sm", min_width=50, elem_id="ds-next")
                undo_btn = tr.add(gr.Button(t(lang0, "ds.undo"), size="sm", elem_id="ds-undo"), value="ds.undo")
                dedupe_btn = tr.add(gr.Button(t(lang0, "ds.dedupe"), size="sm", elem_id="ds-dedupe"), value="ds.dedupe")
                dedupe_near_btn = tr.add(gr.Button(t(lang0, "ds.dedupe_near"), size="sm", elem_id="ds-dedupe-near"), value="ds.dedupe_near")
                bulk_btn = tr.add(gr.Button(t(lang0, "ds.bulk_delete"), size="sm", variant="stop", elem_id="ds-bulk-delete"), value="ds.bulk_delete")
            with gr.Row(equal_height=False):
                eval_frac = tr.add(gr.Number(0.1, label=t(lang0, "ds.eval_fraction"), step=0.05, min_width=120), label="ds.eval_fraction")
                split_seed = tr.add(gr.Number(42, precision=0, label=t(lang0, "ds.seed"), min_width=100), label="ds.seed")
                split_btn = tr.add(gr.Button(t(lang0, "ds.split_button"), size="sm", elem_id="ds-split", scale=0, min_width=160),
                                   value="ds.split_button")
            status = gr.Markdown("", elem_id="ds-status")
            with tr.add(gr.Accordion(t(lang0, "ds.editor"), open=True, elem_id="ds-editor"), label="ds.editor"):
                with gr.Row(equal_height=True):
                    row_id = tr.add(gr.Number(None, precision=0, minimum=0, label=t(lang0, "ds.row_id"), min_width=100, elem_id="ds-row-id"),
                                    label="ds.row_id")
                    row_category = tr.add(gr.Textbox(label=t(lang0, "ds.category"), elem_id="ds-row-category"), label="ds.category")
                    template_of = tr.add(gr.Dropdown([settings.default_model], value=settings.default_model, allow_custom_value=True,
                                                     label=t(lang0, "ds.template_of"), elem_id="ds-template-of"), label="ds.template_of")
                turns = tr.add(gr.Dataframe(headers=[t(lang0, k) for k in TURN_KEYS], datatype=["str", "str"], interactive=True,
                                            wrap=True, column_widths=["14%", "86%"], label=t(lang0, "ds.turns"), elem_id="ds-turns",
                                            max_height=320), label="ds.turns", headers=TURN_KEYS)
                with gr.Row():
                    save_row_btn = tr.add(gr.Button(t(lang0, "ds.save_row"), size="sm", variant="primary", elem_id="ds-save-row"), value="ds.save_row")
                    add_row_btn = tr.add(gr.Button(t(lang0, "ds.add_row"), size="sm", elem_id="ds-add-row"), value="ds.add_row")
                    delete_row_btn = tr.add(gr.Button(t(lang0, "ds.delete_row"), size="sm", variant="stop", elem_id="ds-delete-row"), value="ds.delete_row")
                preview = gr.HTML("", elem_id="ds-preview-box")
                row_shown = gr.State("")  # the open row as stored when the editor was filled (see sync_row)
            with tr.add(gr.Accordion(t(lang0, "ds.inspect"), open=False, elem_id="ds-inspect"), label="ds.inspect"):
                stats_btn = tr.add(gr.Button(t(lang0, "ds.stats"), size="sm", elem_id="ds-stats-btn"), value="ds.stats")
                stats_md = gr.Markdown("", elem_id="ds-stats")
                with gr.Row():
                    # Axis titles are words: each plot's are relabelled with the page (the columns keep their names).
                    tok_titles = {"x_title": "ds.axis.tokens", "y_title": "ds.axis.messages", "color_title": "ds.col.role"}
                    tok_plot = tr.add(gr.BarPlot(x="tokens", y="messages", color="role", label=t(lang0, "ds.token_plot"),
                                                 elem_id="ds-token-plot", sort=TOKEN_LABELS, y_lim=[0, None], scale=2, x_label_angle=-40,
                                                 **{p: t(lang0, k) for p, k in tok_titles.items()}),
                                      label="ds.token_plot", **tok_titles)
                    turns_titles = {"x_title": "ds.col.turns", "y_title": "ds.axis.rows"}
                    turns_plot = tr.add(gr.BarPlot(x="turns", y="rows", label=t(lang0, "ds.turns_plot"),
                                                   elem_id="ds-turns-plot", y_lim=[0, None], **{p: t(lang0, k) for p, k in turns_titles.items()}),
                                        label="ds.turns_plot", **turns_titles)
                    cat_titles = {"x_title": "ds.col.category", "y_title": "ds.axis.rows"}
                    cat_plot = tr.add(gr.BarPlot(x="category", y="rows", label=t(lang0, "ds.category_plot"),
                                                 elem_id="ds-category-plot", sort="-y", y_lim=[0, None],
                                                 **{p: t(lang0, k) for p, k in cat_titles.items()}),
                                      label="ds.category_plot", **cat_titles)
            problems = tr.add(gr.Dataframe(problems_frame(lang0, []), interactive=False, max_height=260, wrap=True,
                                           label=t(lang0, "ds.problems"), elem_id="ds-problems", visible=False),
                              label="ds.problems", headers=PROBLEM_KEYS)

    # ---- helpers -----------------------------------------------------------------------------------
    def _filters(search_v: str, cat_v: str | None, split_v: str | None) -> dict[str, Any]:
        return {"search": search_v or "", "category": None if cat_v in (None, ANY) else cat_v,
                "split": None if split_v in (None, ANY) else split_v}

    def show_page(ds_value: str, number: float, search_v: str, cat_v: str, split_v: str, lang: str):
        """One page of rows (server-side filter and search), its counter, and the category choices."""
        ds_id = _id(ds_value)
        if ds_id is None:
            return rows_frame(lang, draft.Page([], 0, 1, 1)), "", gr.update(choices=category_choices(lang, []), value=ANY), 1
        ds = store.get_dataset(ds_id)
        if ds is not None and ds.kind == PREFERENCE:  # pairs have no working copy: the saved version, read-only
            return pairs_page(ds_id, int(number or 1), lang)
        p = draft.page(ds_id, int(number or 1), **_filters(search_v, cat_v, split_v))
        cats = [c for c, _ in draft.categories(ds_id)]
        info = t(lang, "ds.page_info", page=f"{p.page:,}", pages=f"{p.pages:,}", total=f"{p.total:,}")
        state = draft.saved_state(ds_id)  # said beside the count: edits are not what a fine-tune trains on until saved
        if state.unsaved:
            info += " · " + (t(lang, "ds.unsaved_since", version=state.version) if state.version
                             else t(lang, "ds.never_saved"))
        elif state.version:
            info += " · " + t(lang, "ds.saved_as", version=state.version)
        return (rows_frame(lang, p), info, gr.update(choices=category_choices(lang, cats), value=cat_v if cat_v in cats else ANY),
                p.page)

    def pairs_page(ds_id: int, number: int, lang: str):
        last = store.latest_version(ds_id)
        try:
            rows = load_preference_version(settings, last) if last else []
        except (PermissionError, ValueError) as exc:  # outside the data folder, or a damaged file: said, nothing else read
            raise gr.Error(str(exc)) from None
        pages = max(1, -(-len(rows) // draft.PAGE_SIZE))
        number = min(max(1, number), pages)
        start = (number - 1) * draft.PAGE_SIZE
        info = t(lang, "ds.page_info", page=number, pages=pages, total=f"{len(rows):,}")
        if last:
            info += " · " + t(lang, "ds.pairs_info", total=f"{len(rows):,}", version=last.version)
        return (pairs_frame(lang, rows[start:start + draft.PAGE_SIZE], start), info,
                gr.update(choices=category_choices(lang, []), value=ANY), number)

    page_inputs = [dataset_id, page_no, search, category, split_filter, lang_state]
    page_outputs = [table, page_info, category, page_no]

    def open_dataset(choice: str | None, lang: str):
        ds_id = _id(choice)
        vs = version_choices(ds_id, lang)
        return (str(ds_id or ""), gr.update(choices=vs, value=vs[0][1] if vs else None),
                gr.update(choices=vs, value=vs[1][1] if len(vs) > 1 else None), 1, "", ANY, ANY)

    def _stored(row: Any) -> str:
        """The stored messages and category of a row, to tell later whether a change touched it."""
        return json.dumps([row.messages, row.category or ""], ensure_ascii=False) if row is not None else ""

    def load_row(rid: float | None, template_model: str, lang: str):
        row = draft.get_row(int(rid)) if rid else None
        if row is None:
            return turns_frame(lang, []), "", "", ""
        msgs = json.loads(row.messages)
        return turns_frame(lang, msgs), row.category or "", _preview(msgs, template_model, lang), _stored(row)

    def sync_row(ds_value: str, rid: float | None, shown: str, template_model: str, lang: str):
        """After a change to the dataset (Undo, delete, dedupe, split, another dataset opened...): the editor shows the
        open row as stored now, or closes when the row is gone, so Save row never stores a stale copy again.
        A change that did not touch the row leaves the editor alone (typing not saved yet is kept)."""
        if not rid:
            return (gr.skip(),) * 5
        row = draft.get_row(int(rid))
        if row is None or row.dataset_id != _id(ds_value):
            return None, turns_frame(lang, []), "", "", ""
        if _stored(row) == shown:
            return (gr.skip(),) * 5
        return gr.skip(), *load_row(rid, template_model, lang)

    def _preview(msgs: list[dict[str, str]], template_model: str, lang: str) -> str:
        fmt = uploads.model_format_for(settings, template_model)
        if fmt is None:
            return f"<div class='ds-note'>{t(lang, 'ds.no_template')}</div>"
        try:
            return preview_html(lang, fmt.segments(msgs))
        except Exception as exc:  # noqa: BLE001  # a template error is shown, not raised
            return f"<div class='ds-note'>{exc}</div>"

    def _turns(frame: Any) -> list[dict[str, str]]:
        """The editor's messages: its first two columns (role, content) whatever the headers' language."""
        if isinstance(frame, dict):  # an API client's {"headers", "data"}
            frame = frame.get("data") or []
        df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
        if df.shape[1] < 2:
            return []
        out = []
        for role, content in df.iloc[:, :2].itertuples(index=False):
            if str(role or "").strip() or str(content or "").strip():
                out.append({"role": str(role or "").strip().lower(), "content": str(content or "")})
        return out

    # ---- import --------------------------------------------------------------------------------------
    @contextmanager
    def staged(file: Any) -> Iterator[Path]:
        """The browser's file staged as the REST API stages one (engines.datasets.uploads): same size cap, same
        private folder under DATA_DIR, removed afterwards."""
        path = Path(file if isinstance(file, str) else file.name)
        with open(path, "rb") as stream, uploads.staged_upload(settings, stream, path.name) as copy:
            yield copy

    def on_file(file: Any, template_model: str, lang: str):
        if file is None:
            return "", gr.update(visible=False), *[gr.update(choices=[], value=None)] * 4, gr.update(visible=False), ""
        stem = Path(file if isinstance(file, str) else file.name).stem
        try:
            with staged(file) as path:
                found = uploads.inspect_upload(settings, path, template_model=template_model)
                pref = uploads.inspect_preference_upload(path) if found.preference else None
        except DatasetFileError as exc:  # too large, or not a dataset file
            return (f"<span class='ds-bad'>✗</span> {exc}", gr.update(visible=False), *[gr.update(choices=[], value=None)] * 4,
                    gr.update(visible=False), stem)
        if pref is not None:  # TRL preference pairs: imported as a preference dataset (DPO, ORPO)
            return (summary_markdown(lang, pref.layout, len(pref.rows), pref.problems), gr.update(visible=False),
                    *[gr.update(choices=[], value=None)] * 4,
                    gr.update(visible=bool(pref.problems), value=problems_frame(lang, pref.problems)), stem)
        report = found.report
        if report is None:  # a layout the importer cannot tell: the fields it found, with a guessed column mapping
            choices, guess = [None, *(found.fields or [])], found.guess or {}
            return (f"<span class='ds-bad'>✗</span> {found.error}", gr.update(visible=bool(found.fields)),
                    *[gr.update(choices=choices, value=guess.get(k)) for k in uploads.MAPPING_KEYS],
                    gr.update(visible=False), stem)
        return (summary_markdown(lang, report.format, len(report.rows), report.problems), gr.update(visible=False),
                *[gr.update(choices=[], value=None)] * 4,
                gr.update(visible=bool(report.problems), value=problems_frame(lang, report.problems)), stem)

    def do_import(file: Any, name: str, only_valid: bool, mu: str | None, ma: str | None, msys: str | None, mcat: str | None,
                  template_model: str, lang: str, drop: bool = True, request: gr.Request = None):
        """Import the chosen file. A refusal is said once, under the button, and nothing else on the form changes:
        raising gr.Error would also put an "Error" badge over every output (the Dataset picker, the detection)."""
        def refused(text: str) -> tuple:
            return gr.skip(), f"<span class='ds-bad'>✗</span> {text}", gr.skip(), gr.skip()

        if file is None:
            return refused(t(lang, "ds.no_file"))
        try:
            mapping = uploads.clean_mapping({"user": mu, "assistant": ma, "system": msys, "category": mcat})
        except ValueError:  # the engine's rule (a user and an assistant column), in the page's language
            return refused(t(lang, "ds.map_needed"))
        source = Path(file if isinstance(file, str) else file.name).name
        try:
            with staged(file) as path:
                try:
                    report = uploads.import_upload(settings, path, name, actor=actor_of(request), valid_only=bool(only_valid),
                                                   mapping=mapping, template_model=template_model, source_name=source,
                                                   drop_duplicates=bool(drop))
                except PreferenceLayout:  # TRL pairs (nothing written yet): a preference dataset (DPO, ORPO) instead
                    return imported_pairs(*uploads.import_preference_upload(
                        settings, path, name, actor=actor_of(request), valid_only=bool(only_valid),
                        drop_duplicates=bool(drop), source_name=source), lang)
        except ImportRefused as exc:
            errs = exc.report.errors
            return (gr.skip(), f"<span class='ds-bad'>✗</span> {t(lang, 'ds.refused', n=len({p.row for p in errs}))}",
                    gr.update(visible=True, value=problems_frame(lang, exc.report.problems)), gr.update(visible=False))
        except NameTaken as exc:
            return refused(t(lang, "ds.name_taken", name=exc.name))
        except (FormatError, ValueError) as exc:  # DatasetFileError (size, suffix) included
            return refused(str(exc))
        v = report.version
        msg = t(lang, "ds.imported", rows=f"{v.row_count:,}", name=v.dataset.name, format=t(lang, f"ds.format.{report.format}"))
        msg += _left_out(report, lang)
        gr.Info(msg)
        return (gr.update(choices=dataset_choices(lang), value=str(v.dataset_id)), f"<span class='ds-ok'>✓</span> {msg}",
                gr.update(visible=bool(report.problems), value=problems_frame(lang, report.problems)),
                gr.update(visible=bool(report.skipped_path), value=str(report.skipped_path) if report.skipped_path else None))

    def imported_pairs(v: Any, found: list, removed: int, lang: str) -> tuple:
        msg = t(lang, "ds.imported_pairs", rows=f"{v.row_count:,}", name=v.dataset.name,
                format=t(lang, f"ds.format.{v.dataset.source_format}"))
        if removed:
            msg += " " + t(lang, "ds.dropped_n", n=removed)
        gr.Info(msg)
        return (gr.update(choices=dataset_choices(lang), value=str(v.dataset_id)), f"<span class='ds-ok'>✓</span> {msg}",
                gr.update(visible=bool(found), value=problems_frame(lang, found)), gr.update(visible=False))

    def _left_out(report: Any, lang: str) -> str:
        return ((" " + t(lang, "ds.skipped_n", n=len(report.skipped)) if report.skipped else "")
                + (" " + t(lang, "ds.dropped_n", n=len(report.dropped)) if report.dropped else ""))

    def do_append(file: Any, ds_value: str, only_valid: bool, drop: bool, mu: str | None, ma: str | None, msys: str | None,
                  mcat: str | None, template_model: str, lang: str, request: gr.Request):
        """Add the chosen file's rows to the open dataset as its next version; a refusal is said under the buttons."""
        def refused(text: str) -> tuple:
            return f"<span class='ds-bad'>✗</span> {text}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()

        ds_id = _id(ds_value)
        if ds_id is None:
            return refused(t(lang, "ds.append_none"))
        if file is None:
            return refused(t(lang, "ds.no_file"))
        try:
            mapping = uploads.clean_mapping({"user": mu, "assistant": ma, "system": msys, "category": mcat})
        except ValueError:
            return refused(t(lang, "ds.map_needed"))
        source = Path(file if isinstance(file, str) else file.name).name
        try:
            with staged(file) as path:
                report = uploads.append_upload(settings, path, ds_id, actor=actor_of(request), valid_only=bool(only_valid),
                                               mapping=mapping, template_model=template_model, source_name=source,
                                               drop_duplicates=bool(drop))
        except ImportRefused as exc:
            errs = exc.report.errors
            return (f"<span class='ds-bad'>✗</span> {t(lang, 'ds.refused', n=len({p.row for p in errs}))}",
                    gr.update(visible=True, value=problems_frame(lang, exc.report.problems)), gr.update(visible=False),
                    gr.skip(), gr.skip(), gr.skip())
        except NothingToAppend as exc:
            key = "ds.same_as_saved" if exc.reason == "same_as_saved" else "ds.nothing_new"
            return refused(t(lang, key, name=store.get_dataset(ds_id).name))
        except PermissionDenied:
            return refused(t(lang, "own.denied", owner=_owner_name(ds_id)))
        except (FormatError, ValueError) as exc:
            return refused(str(exc))
        v = report.version
        msg = t(lang, "ds.appended", rows=f"{v.row_count - (v.parent.row_count if v.parent else 0):,}", name=v.dataset.name,
                version=v.version, total=f"{v.row_count:,}") + _left_out(report, lang)
        gr.Info(msg)
        vs = version_choices(ds_id, lang)
        return (f"<span class='ds-ok'>✓</span> {msg}",
                gr.update(visible=bool(report.problems), value=problems_frame(lang, report.problems)),
                gr.update(visible=bool(report.skipped_path), value=str(report.skipped_path) if report.skipped_path else None),
                gr.update(choices=vs, value=str(v.id)), gr.update(choices=vs, value=vs[1][1] if len(vs) > 1 else None),
                gr.update(choices=dataset_choices(lang), value=str(ds_id)))  # its row count in the picker

    def create(name: str, lang: str, request: gr.Request):
        """A new empty dataset; a refusal is a warning toast, not an "Error" badge over the Dataset picker."""
        try:
            ds_id = create_empty((name or "").strip(), actor=actor_of(request))
        except NameTaken as exc:
            gr.Warning(t(lang, "ds.name_taken", name=exc.name))
            return gr.skip()
        except ValueError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return gr.update(choices=dataset_choices(lang), value=str(ds_id))

    # ---- edits ------------------------------------------------------------------------------------------
    def _need(ds_value: str, lang: str) -> int:
        ds_id = _id(ds_value)
        if ds_id is None:
            raise gr.Error(t(lang, "ds.pick_first"))
        return ds_id

    def save_row(ds_value: str, rid: float | None, frame: Any, cat: str, template_model: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        if not rid:
            raise gr.Error(t(lang, "ds.pick_row"))
        msgs = _turns(frame)
        try:
            with _may_change(ds_id, lang):
                draft.update_row(int(rid), msgs, (cat or "").strip() or None, actor=actor_of(request))
        except draft.EditError as exc:
            raise gr.Error(str(exc)) from None
        except KeyError:  # deleted meanwhile (by Undo elsewhere, or another tab): never recreated silently
            raise gr.Error(t(lang, "ds.row_gone", id=int(rid))) from None
        return t(lang, "ds.row_saved", id=int(rid)), _preview(msgs, template_model, lang), _stored(draft.get_row(int(rid)))

    def add_row(ds_value: str, frame: Any, cat: str, template_model: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        msgs = _turns(frame)
        try:
            with _may_change(ds_id, lang):
                new_id = draft.add_row(ds_id, msgs, (cat or "").strip() or None, actor=actor_of(request))
        except draft.EditError as exc:
            raise gr.Error(str(exc)) from None
        return t(lang, "ds.row_added", id=new_id), new_id

    def delete_row(ds_value: str, rid: float | None, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        with _may_change(ds_id, lang):
            n = draft.delete_rows(ds_id, [int(rid)], actor=actor_of(request)) if rid else 0
        return t(lang, "ds.deleted", n=n), None

    def bulk_delete(ds_value: str, search_v: str, cat_v: str, split_v: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        try:
            with _may_change(ds_id, lang):
                n = draft.delete_matching(ds_id, actor=actor_of(request), **_filters(search_v, cat_v, split_v))
        except draft.EditError as exc:
            raise gr.Error(str(exc)) from None
        return t(lang, "ds.deleted", n=n)

    def dedupe(ds_value: str, lang: str, request: gr.Request, near: bool = False):
        ds_id = _need(ds_value, lang)
        with _may_change(ds_id, lang):
            return t(lang, "ds.deduped", n=draft.dedupe(ds_id, actor=actor_of(request), near=near))

    def dedupe_near(ds_value: str, lang: str, request: gr.Request):
        return dedupe(ds_value, lang, request, near=True)

    def undo(ds_value: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        with _may_change(ds_id, lang):
            action = draft.undo(ds_id, actor=actor_of(request))
        return t(lang, "ds.undone", action=action) if action else t(lang, "ds.nothing_to_undo")

    def split(ds_value: str, frac: float, seed: float, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        try:
            with _may_change(ds_id, lang):
                n_train, n_eval = draft.assign_split(ds_id, float(frac or 0), int(seed or 0), actor=actor_of(request))
        except draft.EditError as exc:
            raise gr.Error(str(exc)) from None
        return t(lang, "ds.split_done", train=n_train, eval=n_eval)

    def thumbs(ds_value: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        with _may_change(ds_id, lang):
            return t(lang, "ds.thumbs_added", n=from_chats.add_thumbs_up(ds_id, actor=actor_of(request)))

    async def generate(ds_value: str, model_name: str, topic: str, seeds_text: str, system: str, n: float, conc: float,
                       max_tokens: float, lang: str, request: gr.Request,
                       progress: gr.Progress = gr.Progress()):  # noqa: B008  # gradio's way
        """Questions (from the topic) and answers from a served model, appended for review; failures are counted."""
        from engines.datasets.synthetic import synthesize
        from engines.inference import ChatParams

        ds_id = _need(ds_value, lang)
        endpoint = services.servers.endpoint_for(model_name or settings.default_model)
        if endpoint is None:
            raise gr.Error(t(lang, "ds.synth_no_model", model=model_name))
        progress(0.0, desc=t(lang, "ds.synth_running"))
        try:
            with _may_change(ds_id, lang):
                report = await synthesize(
                    endpoint, ds_id, actor=actor_of(request), n=int(n or 1), topic=topic or "",
                    seeds=(seeds_text or "").splitlines(), system=system or "",
                    params=ChatParams(temperature=0.8, max_tokens=int(max_tokens or 192)), concurrency=int(conc or 8),
                    on_progress=lambda frac, label: progress(frac, desc=label),
                )
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        msg = t(lang, "ds.synth_done", added=report.added, failed=report.failed)
        if report.errors:
            msg += f" ({report.errors[0][:160]})"
        return msg

    def synth_models():
        names = [r.name for r in services.servers.served_models()] or [settings.default_model]
        return gr.update(choices=names)

    # ---- versions ---------------------------------------------------------------------------------------
    def save_version(ds_value: str, note_v: str, lang: str, request: gr.Request):
        ds_id = _need(ds_value, lang)
        try:
            with _may_change(ds_id, lang):
                v = save_draft(settings, ds_id, note=(note_v or "").strip() or None, actor=actor_of(request))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang, "ds.version_saved", version=v.version, rows=f"{v.row_count:,}"))
        vs = version_choices(ds_id, lang)
        return (gr.update(choices=vs, value=str(v.id)), gr.update(choices=vs, value=vs[1][1] if len(vs) > 1 else None), "",
                gr.update(choices=dataset_choices(lang), value=str(ds_id)))

    def show_diff(new_v: str | None, old_v: str | None, lang: str):
        a, b = store.get_version(_id(old_v) or 0), store.get_version(_id(new_v) or 0)
        if not a or not b or a.id == b.id:
            return ""
        try:
            d = diff_versions(settings, a, b)
        except PermissionError as exc:  # a version row pointing outside the data folder: said, nothing read
            raise gr.Error(str(exc)) from None
        return diff_html(lang, a.version, b.version, d)

    def export(v_value: str | None, fmt: str, lang: str):
        v = store.get_version(_id(v_value) or 0)
        if v is None:
            raise gr.Error(t(lang, "ds.pick_version"))
        pairs = v.format == PREFERENCE
        if pairs != fmt.startswith("trl-"):  # chat rows and preference pairs each have their own layouts
            raise gr.Error(t(lang, "ds.export_trl_only" if pairs else "ds.export_chat_only"))
        try:
            if pairs:
                return str(export_preference_version(settings, v, fmt.removeprefix("trl-")))
            return str(export_version(settings, v, fmt))
        except PermissionError as exc:  # a version row pointing outside the data folder: said, nothing read
            raise gr.Error(str(exc)) from None

    def stats(ds_value: str, template_model: str, lang: str):
        s = uploads.dataset_stats(settings, _need(ds_value, lang), template_model)
        md = t(lang, "ds.stats_md", rows=f"{s.rows:,}", turns=f"{s.turns_mean:.1f}", tokens=f"{s.tokens:,}", model=s.counted_with)
        return md, token_histogram(s.tokens_by_role), turns_histogram(s.turns), categories_frame(s.categories)

    change_buttons = [save_row_btn, add_row_btn, delete_row_btn, bulk_btn, dedupe_btn, dedupe_near_btn, undo_btn, split_btn,
                      synth_btn, thumbs_btn, save_btn]

    def ownership(ds_value: str, lang: str, request: gr.Request):
        """Who owns the open dataset; its change buttons are disabled (with the reason) for someone who may not change it.
        Only a hint: the engines refuse the change anyway."""
        ds = store.get_dataset(_id(ds_value) or 0)
        if ds is None:
            return "", *[gr.update(interactive=True)] * len(change_buttons)
        line, may = ownership_hint(request, ds, lang)
        return line, *[gr.update(interactive=may)] * len(change_buttons)

    # ---- API (gradio_client): plain ids in, plain values out --------------------------------------------
    # A Dropdown checks its value against the choices this session was sent, so a dataset or version made after a
    # client connected would be refused; these endpoints take ids and leave the checks to the engines and the store.
    def list_datasets() -> list[dict[str, Any]]:
        """Every dataset: id, name, rows (working copy), owner."""
        return [{"id": d.id, "name": d.name, "rows": draft.count(d.id), "owner": d.owner_name} for d in store.list_datasets()]

    def create_dataset(name: str, lang: str, request: gr.Request) -> dict[str, Any]:
        """A new empty dataset owned by you: {"id", "name"}."""
        lang = lang or lang0
        try:
            ds_id = create_empty((name or "").strip(), actor=actor_of(request))
        except NameTaken as exc:
            raise gr.Error(t(lang, "ds.name_taken", name=exc.name)) from None
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return {"id": ds_id, "name": store.get_dataset(ds_id).name}

    def _dataset_or_error(dataset_id: Any, lang: str) -> Any:
        ds = store.get_dataset(_id(dataset_id) or 0)
        if ds is None:
            raise gr.Error(t(lang or lang0, "ds.pick_first"))
        return ds

    def page_rows(dataset_id: str, page: int = 1, search: str = "", category: str = "", split: str = "",
                  lang: str = "") -> dict[str, Any]:
        """A page (50) of the working copy, filtered: {"rows": [{"id", "category", "split", "messages"}], "page", "pages", "total"}."""
        ds = _dataset_or_error(dataset_id, lang)
        p = draft.page(ds.id, int(page or 1), **_filters(search, category or None, split or None))
        rows = [{"id": r.id, "category": r.category, "split": r.split, "messages": json.loads(r.messages)} for r in p.rows]
        return {"rows": rows, "page": p.page, "pages": p.pages, "total": p.total}

    def open_dataset_api(dataset_id: str, lang: str = "") -> dict[str, Any]:
        """A dataset by id: {"id", "name", "owner", "versions": [{"id", "version", "rows", "note"}], "page": first page}."""
        ds = _dataset_or_error(dataset_id, lang)
        versions = [{"id": v.id, "version": v.version, "rows": v.row_count, "note": v.note} for v in store.list_versions(ds.id)]
        return {"id": ds.id, "name": ds.name, "owner": getattr(ds, "owner_name", None), "versions": versions,
                "page": page_rows(str(ds.id), 1, lang=lang)}

    def bulk_delete_api(dataset_id: str, search: str = "", category: str = "", split: str = "", lang: str = "",
                        request: gr.Request = None) -> str:
        """Delete every row of the working copy that matches the filters (undoable)."""
        return bulk_delete(dataset_id, search, category or None, split or None, lang or lang0, request)

    def export_version_api(version_id: str, fmt: str = "openai", lang: str = "") -> dict[str, Any]:
        """A saved version as JSONL (`openai`, `sharegpt`) or `parquet`: a file the client downloads."""
        return downloadable(export(version_id, fmt or "openai", lang or lang0))

    def diff_versions_api(new_version_id: str, old_version_id: str, lang: str = "") -> str:
        """How two versions of a dataset differ (rows added, removed, changed)."""
        lang = lang or lang0
        if store.get_version(_id(new_version_id) or 0) is None or store.get_version(_id(old_version_id) or 0) is None:
            raise gr.Error(t(lang, "ds.pick_version"))
        return show_diff(new_version_id, old_version_id, lang)

    # ---- wiring -----------------------------------------------------------------------------------------
    refresh = {"fn": show_page, "inputs": page_inputs, "outputs": page_outputs, "show_progress": "hidden"}
    # After every change to the rows, the open row is re-read: the editor never shows (and Save row never re-stores) a stale copy.
    editor_sync = {"fn": sync_row, "inputs": [dataset_id, row_id, row_shown, template_of, lang_state],
                   "outputs": [row_id, turns, row_category, preview, row_shown], "api_name": False, "show_progress": "hidden"}
    dataset.change(open_dataset, [dataset, lang_state], [dataset_id, versions, compare_to, page_no, search, category, split_filter],
                   api_name=False).then(**refresh).then(**editor_sync).then(
        ownership, [dataset_id, lang_state], [owner_md, *change_buttons], api_name=False, show_progress="hidden")
    search.submit(lambda: 1, None, [page_no], api_name=False).then(**refresh)
    gr.on([category.input, split_filter.input], lambda: 1, None, [page_no], api_name=False).then(**refresh)
    page_no.submit(api_name=False, **refresh)
    prev_btn.click(lambda n: max(1, int(n or 1) - 1), [page_no], [page_no], api_name=False).then(**refresh)
    next_btn.click(lambda n: int(n or 1) + 1, [page_no], [page_no], api_name=False).then(**refresh)
    def pick_row(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    table.select(pick_row, None, [row_id], api_name=False)
    row_id.change(load_row, [row_id, template_of, lang_state], [turns, row_category, preview, row_shown], api_name="open_row",
                  show_progress="hidden")
    template_of.change(load_row, [row_id, template_of, lang_state], [turns, row_category, preview, row_shown], api_name=False)

    upload.upload(on_file, [upload, template_of, lang_state],
                  [detected, mapping_row, map_user, map_assistant, map_system, map_category, problems, import_name], api_name="inspect_file")
    upload.change(lambda: "", None, [import_msg], api_name=False, show_progress="hidden")  # a new file: no stale outcome
    import_btn.click(do_import, [upload, import_name, valid_only, map_user, map_assistant, map_system, map_category, template_of, lang_state,
                                 drop_dups], [dataset, import_msg, problems, skipped_file], api_name="import_dataset")
    append_btn.click(do_append, [upload, dataset_id, valid_only, drop_dups, map_user, map_assistant, map_system, map_category,
                                 template_of, lang_state], [import_msg, problems, skipped_file, versions, compare_to, dataset],
                     api_name="append_dataset").then(**refresh).then(**editor_sync)
    new_btn.click(create, [new_name, lang_state], [dataset], api_name=False)

    save_row_btn.click(save_row, [dataset_id, row_id, turns, row_category, template_of, lang_state], [status, preview, row_shown],
                       api_name="save_row").then(**refresh)
    add_row_btn.click(add_row, [dataset_id, turns, row_category, template_of, lang_state], [status, row_id],
                      api_name="add_row").then(**refresh)
    delete_row_btn.click(delete_row, [dataset_id, row_id, lang_state], [status, row_id], api_name="delete_row").then(**refresh)
    bulk_btn.click(bulk_delete, [dataset_id, search, category, split_filter, lang_state], [status],
                   api_name=False).then(**refresh).then(**editor_sync)
    dedupe_btn.click(dedupe, [dataset_id, lang_state], [status], api_name="dedupe").then(**refresh).then(**editor_sync)
    dedupe_near_btn.click(dedupe_near, [dataset_id, lang_state], [status], api_name="dedupe_near").then(**refresh).then(**editor_sync)
    undo_btn.click(undo, [dataset_id, lang_state], [status], api_name="undo").then(**refresh).then(**editor_sync)
    split_btn.click(split, [dataset_id, eval_frac, split_seed, lang_state], [status], api_name="split").then(**refresh).then(**editor_sync)
    synth_btn.click(generate, [dataset_id, synth_model, synth_topic, synth_seeds, synth_system, synth_n, synth_conc, synth_tokens,
                               lang_state], [status], api_name="generate_examples", concurrency_limit=None).then(**refresh).then(**editor_sync)
    synth_model.focus(synth_models, None, [synth_model], api_name=False, show_progress="hidden")
    thumbs_btn.click(thumbs, [dataset_id, lang_state], [status], api_name="add_thumbs_up").then(**refresh).then(**editor_sync)

    save_btn.click(save_version, [dataset_id, note, lang_state], [versions, compare_to, note, dataset],
                   api_name="save_version").then(**refresh)
    gr.on([versions.change, compare_to.change], show_diff, [versions, compare_to, lang_state], [diff_md], api_name=False)
    export_btn.click(export, [versions, export_fmt, lang_state], [export_file], api_name=False)
    stats_btn.click(stats, [dataset_id, template_of, lang_state], [stats_md, tok_plot, turns_plot, cat_plot], api_name="dataset_stats")
    gr.api(list_datasets, api_name="list_datasets")
    gr.api(create_dataset, api_name="create_dataset")
    gr.api(open_dataset_api, api_name="open_dataset")
    gr.api(page_rows, api_name="page_rows")
    gr.api(diff_versions_api, api_name="diff_versions")
    gr.api(bulk_delete_api, api_name="bulk_delete")
    gr.api(export_version_api, api_name="export_version")
    def detection_line(file: Any, template_model: str, lang: str):
        """The picked file's detection line again, in `lang` (the column mapping the user chose is left as it is)."""
        return gr.skip() if file is None else on_file(file, template_model, lang)[0]

    relabel = {"fn": detection_line, "inputs": [upload, template_of, lang_state], "outputs": [detected], "show_progress": "hidden"}
    return DatasetsTab(dataset=dataset, dataset_id=dataset_id, refresh=refresh, relabel=relabel)
