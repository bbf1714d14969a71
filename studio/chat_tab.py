"""The Chat tab: conversations on the left, a streaming chat with the picked model on the right."""

from __future__ import annotations

import asyncio
import hashlib
import html
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engines import conversations as turns
from engines.accounts import Actor
from engines.inference import ChatParams
from storage import chats
from studio.choices import model_choices
from studio.datasets_view import dataset_choices
from studio.i18n import Translatable, t
from studio.messages import display_assistant, feedback_values, flatten_content, rows_to_chatbot
from studio.people import actor_of
from studio.services import Services

# Escape in the message box while the edit banner shows clicks its Cancel (Gradio's Textbox has no key events).
EDIT_ESCAPE_JS = """
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' || !e.target.closest || !e.target.closest('#message-box')) return;
  const cancel = document.querySelector('#edit-cancel-btn');
  if (cancel && cancel.offsetParent !== null) { e.preventDefault(); cancel.click(); }
});
"""
STREAMING = {"concurrency_limit": None, "show_progress": "hidden"}  # vLLM batches: never queue chats behind each other
STOP_SETTLE_POLLS = 30  # × 0.1 s: how long Stop waits for the cancelled answer to be marked before redrawing
# At most 5 redraws of a streaming answer per second (tokens in between are merged): each redraw re-renders the
# conversation in the page, and at 20 a second a long-open page fell behind the stream (bench/page_endurance.py:
# 170-420 ms of main thread per change on a loaded 2-core machine), so a Stop click waited behind the backlog.
UI_UPDATE_S = 0.2
# All answers streaming at once share this many page updates per second (with N of them each waits N/40 s): each
# streamed update of /send costs Gradio ~9 ms (it rebuilds every output the update leaves out), so 32 chats at 20
# updates/s each would ask the event loop for ~6 s of work per second. One or two chats keep UI_UPDATE_S; the first
# and the last update are never held back.
UI_UPDATES_PER_S_ALL = 40


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    conversation_id: gr.Textbox
    conversation_list: gr.Radio
    model: gr.Dropdown
    status: gr.HTML
    message: gr.Textbox
    open_chat: dict  # fn/inputs/outputs that load the conversation picked in `conversation_list` (History's "Open")
    new_chat: dict  # fn/inputs/outputs that start an empty conversation (Fine-tune's "Chat with it")


def _conv_id(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _params(temperature: float, top_p: float, max_tokens: float, seed: float | None) -> ChatParams:
    seed_i = int(seed) if seed is not None and seed != "" and int(seed) >= 0 else None
    return ChatParams(temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens), seed=seed_i)


def conversation_choices(actor: Actor, search: str = "") -> list[tuple[str, str]]:
    """The acting user's conversations (nobody sees another person's); those made through the API are marked so."""
    return [(f"{c.title} · API" if getattr(c, "source", "ui") == "api" else c.title, str(c.id))
            for c in turns.list_conversations(actor, search)]


def chatbot_view(rows: list[Any], lang: str, *, answer_pending: bool = False) -> dict:
    """The Chatbot showing stored rows with their 👍/👎 filled in (`answer_pending`: plus an empty answer to stream into)."""
    display = rows_to_chatbot(rows, lang)
    feedback = feedback_values(rows)
    if answer_pending:
        display.append({"role": "assistant", "content": ""})
        if not rows or rows[-1].role != "assistant":
            feedback.append(None)
    return gr.update(value=display, feedback_value=feedback)


def _own(actor: Actor, cid_value: Any, lang: str) -> int:
    """The id of the actor's conversation, or a clear error (a bad id, someone else's or a deleted one)."""
    if cid_value in (None, ""):
        raise gr.Error(t(lang, "chat.no_conversation"))
    try:
        return turns.own_conversation(actor, cid_value).id
    except turns.ConversationNotFound as exc:
        raise gr.Error(str(exc)) from None


def status_html(services: Services, lang: str) -> str:
    """The model-server badge: one pill per server (and per external endpoint)."""
    pills = []
    for st in services.servers.status().values():
        label = t(lang, f"status.{st.status}")
        title = html.escape(st.error or f"127.0.0.1:{st.port}")
        pills.append(
            f"<span class='server-pill {st.status}' title='{title}'><span class='dot'></span>"
            f"{html.escape(st.name)} · {label}</span>"
        )
    for url in services.servers.external_urls():
        pills.append(
            f"<span class='server-pill ready' title='{html.escape(url)}'><span class='dot'></span>{t(lang, 'status.external')} · {html.escape(url)}</span>"
        )
    err = services.servers.pending_error()
    if err:
        pills.append(f"<span class='server-pill failed' title='{html.escape(err[-1500:])}'><span class='dot'></span>{html.escape(err.splitlines()[0][:160])}</span>")
    if not pills:
        pills.append(f"<span class='server-pill stopped'>{t(lang, 'status.no_server_mode' if services.no_serve else 'status.none')}</span>")
    return f"<div class='server-status' data-testid='server-status'>{''.join(pills)}</div>"


def status_signature(services: Services) -> str:
    """A short digest of what the badge and the model picker show: the page asks for it every few seconds (a plain
    fetch, `PAGE_JS`) and starts Gradio's `poll_status` event only when it changed. A Gradio event costs an open
    page far more than a fetch (each one makes the page walk and snapshot its whole state, more so with every tab
    it has mounted), and an idle page used to start one every 3 s for nothing."""
    seen = status_html(services, "en") + repr(model_choices(services))
    return hashlib.blake2s(seen.encode("utf-8"), digest_size=8).hexdigest()


def build_chat_tab(services: Services, tr: Translatable, lang_state: Any) -> ChatTab:
    settings = services.settings
    lang0 = settings.ui_language

    conversation_id = gr.Textbox(value="", visible=False, elem_id="conversation-id")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240, elem_id="chat-sidebar"):
            new_btn = tr.add(gr.Button(t(lang0, "chat.new"), variant="primary", size="sm", elem_id="new-chat"), value="chat.new")
            search = tr.add(
                gr.Textbox(label=t(lang0, "chat.search"), placeholder=t(lang0, "chat.search_placeholder"), elem_id="chat-search"),
                label="chat.search", placeholder="chat.search_placeholder",
            )
            conversation_list = tr.add(
                gr.Radio(choices=[], label=t(lang0, "chat.conversations"), elem_id="conversation-list", container=True),
                label="chat.conversations",
            )
            with tr.add(gr.Accordion(t(lang0, "chat.manage"), open=False, elem_id="chat-manage"), label="chat.manage"):
                rename_box = tr.add(gr.Textbox(label=t(lang0, "chat.rename"), elem_id="rename-box"), label="chat.rename")
                rename_btn = tr.add(gr.Button(t(lang0, "chat.rename_button"), size="sm", elem_id="rename-btn"), value="chat.rename_button")
                export_btn = tr.add(gr.Button(t(lang0, "chat.export_button"), size="sm", elem_id="export-btn"), value="chat.export_button")
                export_files = tr.add(gr.File(label=t(lang0, "chat.export_files"), file_count="multiple", interactive=False, elem_id="export-files"), label="chat.export_files")
                delete_btn = tr.add(gr.Button(t(lang0, "chat.delete_button"), variant="stop", size="sm", elem_id="delete-btn"), value="chat.delete_button")
                to_dataset = tr.add(gr.Dropdown(choices=dataset_choices(lang0), value=None, label=t(lang0, "chat.add_to_dataset"),
                                                elem_id="chat-to-dataset"), label="chat.add_to_dataset", choices=dataset_choices)
                to_dataset_btn = tr.add(gr.Button(t(lang0, "chat.add_to_dataset_button"), size="sm", elem_id="chat-to-dataset-btn"),
                                        value="chat.add_to_dataset_button")

        with gr.Column(scale=4):
            with gr.Row(equal_height=True):
                model = tr.add(
                    gr.Dropdown(
                        choices=[(settings.default_model, settings.default_model)], value=settings.default_model,
                        label=t(lang0, "chat.model"), allow_custom_value=True, scale=3, elem_id="model-picker",
                    ),
                    label="chat.model",
                )
                refresh_btn = gr.Button("↻", scale=0, min_width=44, elem_id="refresh-models")
                status = gr.HTML(status_html(services, lang0), elem_id="server-status-box", padding=False)
            chatbot = tr.add(
                gr.Chatbot(
                    label=t(lang0, "chat.chatbot"), elem_id="chatbot", height=520, editable="user",
                    placeholder=t(lang0, "chat.placeholder"), buttons=["copy", "copy_all"],
                    feedback_options=("Like", "Dislike"), layout="bubble", autoscroll=True,
                ),
                label="chat.chatbot", placeholder="chat.placeholder",
            )
            # The kept versions of the last turn (after Regenerate or Edit): ‹ 2 / 3 › moves between them.
            with gr.Row(visible=False, equal_height=True, elem_id="versions-row", elem_classes=["versions-row"]) as versions_row:
                ver_prev = gr.Button("‹", size="sm", scale=0, min_width=36, elem_id="ver-prev")
                ver_label = gr.HTML("", elem_id="ver-label", padding=False)
                ver_next = gr.Button("›", size="sm", scale=0, min_width=36, elem_id="ver-next")
            # Shown while "Edit last message" is on: what Enter does now, and the way out.
            with gr.Row(visible=False, equal_height=True, elem_id="edit-banner") as edit_banner:
                tr.add(gr.Markdown(t(lang0, "chat.editing_banner"), elem_id="edit-banner-text"), value="chat.editing_banner")
                edit_cancel_btn = tr.add(gr.Button(t(lang0, "chat.editing_cancel"), size="sm", scale=0, min_width=100,
                                                   elem_id="edit-cancel-btn"), value="chat.editing_cancel")
            gr.HTML("", js_on_load=EDIT_ESCAPE_JS, elem_id="edit-escape", padding=False)
            with gr.Row(equal_height=True):
                message = tr.add(
                    gr.Textbox(
                        label=t(lang0, "chat.input"), placeholder=t(lang0, "chat.input_placeholder"), lines=1, max_lines=10,
                        scale=8, show_label=False, elem_id="message-box", submit_btn=False, autofocus=True,
                    ),
                    placeholder="chat.input_placeholder", label="chat.input",
                )
                with gr.Column(scale=1, min_width=120):
                    send_btn = tr.add(gr.Button(t(lang0, "chat.send"), variant="primary", elem_id="send-btn"), value="chat.send")
                    # Send turns into Stop while an answer streams (both stay in the page: "hidden" only takes them out of sight).
                    stop_btn = tr.add(gr.Button(t(lang0, "chat.stop"), variant="stop", elem_id="stop-btn", visible="hidden"),
                                      value="chat.stop")
            with gr.Row():
                regen_btn = tr.add(gr.Button(t(lang0, "chat.regenerate"), size="sm", elem_id="regenerate-btn"), value="chat.regenerate")
                edit_btn = tr.add(gr.Button(t(lang0, "chat.edit_last"), size="sm", elem_id="edit-last-btn"), value="chat.edit_last")
            with tr.add(gr.Accordion(t(lang0, "chat.params"), open=False, elem_id="chat-params"), label="chat.params"):
                system = tr.add(
                    gr.Textbox(label=t(lang0, "chat.system_prompt"), placeholder=t(lang0, "chat.system_placeholder"), lines=2, elem_id="system-prompt"),
                    label="chat.system_prompt", placeholder="chat.system_placeholder",
                )
                with gr.Row():
                    temperature = tr.add(gr.Slider(0.0, 2.0, value=settings.default_temperature, step=0.05, label=t(lang0, "chat.temperature"), elem_id="temperature"), label="chat.temperature")
                    top_p = tr.add(gr.Slider(0.05, 1.0, value=settings.default_top_p, step=0.05, label=t(lang0, "chat.top_p"), elem_id="top-p"), label="chat.top_p")
                    max_tokens = tr.add(gr.Slider(16, settings.vllm_max_model_len, value=min(settings.default_max_tokens, settings.vllm_max_model_len), step=16, label=t(lang0, "chat.max_tokens"), elem_id="max-tokens"), label="chat.max_tokens")
                    seed = tr.add(gr.Number(value=-1, precision=0, label=t(lang0, "chat.seed"), elem_id="seed"), label="chat.seed")

    gen_inputs = [conversation_id, model, system, temperature, top_p, max_tokens, seed]

    # ---- the streaming core shared by send / regenerate / edit ----------------------
    async def stream_turn(cid: int, model_name: str, system_prompt: str, params: ChatParams, lang: str, *,
                          votes: bool = True) -> AsyncIterator[list[dict] | dict]:
        """The conversation with the answer streaming into it: first all of it, then each change of the answer.

        `votes`: the first update also redraws the 👍/👎 (a property update: Gradio builds a new Chatbot for it, ~10 ms
        of the event loop that every other chat waits for). Not needed where the page already shows this turn's votes
        (`accept` drew them) or for gradio_client, which sees only the messages."""
        # Database work in a thread: on the event loop it would hold up every other chat's stream (32 at once add up).
        # Read before the answer's row is opened, which the answer's own task does.
        rows = await asyncio.to_thread(chats.active_messages, cid)
        view = chatbot_view(rows, lang, answer_pending=True)  # the votes shown are this turn's, not the replaced one's
        display = view["value"]
        if not votes:
            view = list(display)
        # The request starts before the user's message is rendered, not after.
        updates = turns.Prefetched(
            turns.answer(services.servers, cid, model_name, params, system_prompt=system_prompt, timeout=settings.request_timeout),
            min_interval=UI_UPDATE_S, total_rate=UI_UPDATES_PER_S_ALL,
        )
        try:
            yield view
            async for upd in updates:
                if upd.error is not None:
                    display[-1] = {"role": "assistant", "content": display_assistant(lang, upd.text, error=str(upd.error))}
                    gr.Warning(str(upd.error))
                elif upd.finished is not None:
                    row = await asyncio.to_thread(chats.get_message, upd.message_id)
                    display[-1] = {"role": "assistant", "content": display_assistant(lang, upd.text, row)}
                else:
                    display[-1] = {"role": "assistant", "content": upd.text}
                yield display
        finally:
            await updates.aclose()  # a stop lands here: cancel the request, keep the partial answer

    def _model_or_error(model_name: str | None, lang: str) -> str:
        if not model_name:
            raise gr.Error(t(lang, "chat.no_model"))
        return model_name

    def busy(on: bool) -> dict:
        """Send gives way to Stop while an answer streams, and comes back when it ends or is stopped."""
        out = {send_btn: gr.update(visible="hidden" if on else True), stop_btn: gr.update(visible=True if on else "hidden")}
        return out | ({versions_row: gr.update(visible=False)} if on else {})  # counted again when the answer ends

    def idle(cid_value: str = "", lang: str = "", request: gr.Request = None) -> dict:
        """Send is back; the last turn's versions (one more after a Regenerate or an Edit) are counted again."""
        return busy(False) | versions(cid_value, lang or lang0, request)

    def versions(cid_value: str, lang: str, request: gr.Request | None) -> dict:
        """‹ i / n › under the chat when its last turn has more than one kept version; hidden otherwise."""
        cid = _conv_id(cid_value)
        tv = turns.turn_versions(actor_of(request), cid) if cid is not None else None
        if tv is None or tv.total < 2:
            return {versions_row: gr.update(visible=False)}
        label = f"<span data-index='{tv.index}' data-total='{tv.total}'>{t(lang, 'chat.version', i=tv.index, n=tv.total)}</span>"
        return {versions_row: gr.update(visible=True), ver_label: label,
                ver_prev: gr.update(interactive=tv.index > 1), ver_next: gr.update(interactive=0 < tv.index < tv.total)}

    def step_version(cid_value: str, lang: str, step: int, request: gr.Request) -> dict:
        """Show the previous or next kept version of the last turn (its question and answer); nothing is deleted."""
        cid = _conv_id(cid_value)
        if cid is None:
            return {}
        actor = actor_of(request)
        now = turns.turn_versions(actor, cid)
        try:
            turns.show_version(actor, cid, now.index + step)
        except ValueError:
            return versions(cid_value, lang, request)
        return {chatbot: chatbot_view(chats.active_messages(cid), lang)} | versions(cid_value, lang, request)

    def conversation_versions(cid_value: str, lang: str, request: gr.Request) -> dict:
        return versions(cid_value, lang, request)

    def prev_version(cid_value: str, lang: str, request: gr.Request) -> dict:
        return step_version(cid_value, lang, -1, request)

    def next_version(cid_value: str, lang: str, request: gr.Request) -> dict:
        return step_version(cid_value, lang, 1, request)

    def edit_mode(lang: str, on: bool) -> dict:
        """Updates that enter or leave "Edit last message": the banner, the input box's label and the Send button."""
        return {
            edit_banner: gr.update(visible=on),
            message: gr.update(label=t(lang, "chat.editing_label" if on else "chat.input"), show_label=on,
                               elem_classes=["editing"] if on else []),
            send_btn: gr.update(value=t(lang, "chat.editing_send" if on else "chat.send")),
        }

    def _edited_message(actor: Actor, cid_value: str, editing: int | None, lang: str) -> tuple[int, int] | None:
        """(conversation, message) being edited, if the edit still applies: still your chat, still its last question."""
        if not editing or cid_value in (None, ""):
            return None
        cid = _own(actor, cid_value, lang)
        last = turns.last_user_message(cid)
        return (cid, last.id) if last is not None and last.id == editing else None

    def store_turn(message_text: str, cid_value: str, model_name: str, system_prompt: str, lang: str, editing: int | None,
                   actor: Actor) -> int | None:
        """Store the user's message (in edit mode: replace the last one) before any model is called; None: nothing to send."""
        if not (message_text or "").strip():
            gr.Warning(t(lang, "chat.empty_message"))
            return None
        model_name = _model_or_error(model_name, lang)
        edit = _edited_message(actor, cid_value, editing, lang)
        if editing and edit is None:  # the chat moved on (another tab answered, it was deleted): never replace blindly
            gr.Warning(t(lang, "chat.editing_stale"))
            return None
        try:
            if edit is not None:  # as the pencil on the bubble does: the old question and answer stay, inactive
                turns.replace_user_message(edit[0], edit[1], message_text)
                return edit[0]
            return turns.store_user_turn(actor, _conv_id(cid_value), message_text, model=model_name, system_prompt=system_prompt)
        except turns.ConversationNotFound as exc:
            raise gr.Error(str(exc)) from None

    def accept(message_text: str, cid_value: str, model_name: str, system_prompt: str, lang: str, editing: int | None,
               request: gr.Request) -> dict:
        """Enter or Send in the page: store the message and show it at once; `stream_pending` then streams the answer.

        Two events, not one: the answer's many updates then go to the Chatbot alone (an update of a 7-output event
        costs Gradio ~10 ms, and a first update carrying several outputs could lose some under load)."""
        lang = lang or lang0
        actor = actor_of(request)
        cid = store_turn(message_text, cid_value, model_name, system_prompt, lang, editing, actor)
        if cid is None:
            return {pending: None, **({editing_state: None, **edit_mode(lang, False)} if editing else {})}
        leave = edit_mode(lang, False) if editing else {}
        return {chatbot: chatbot_view(chats.active_messages(cid), lang, answer_pending=True), conversation_id: str(cid),
                **leave, message: {**leave.get(message, gr.update()), "value": ""},
                conversation_list: gr.update(choices=conversation_choices(actor), value=str(cid)), editing_state: None,
                pending: cid, **busy(True), send_btn: {**leave.get(send_btn, gr.update()), "visible": "hidden"}}

    async def stream_pending(cid: int | None, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float,
                             lang: str):
        """The answer to the message `accept` stored, streamed into the Chatbot only."""
        if cid is None:
            yield gr.skip()
            return
        async for display in stream_turn(cid, model_name, system_prompt, _params(temp, tp, mt, sd), lang or lang0,
                                         votes=False):
            yield display

    async def send(message_text: str, cid_value: str, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float, lang: str,
                   editing: int | None, request: gr.Request):
        """`/send` for gradio_client: store the message, then stream the answer; every update carries the conversation id."""
        lang = lang or lang0
        actor = actor_of(request)
        cid = await asyncio.to_thread(store_turn, message_text, cid_value, model_name, system_prompt, lang, editing, actor)
        if cid is None:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        display: list[dict] = []
        async for display in stream_turn(cid, model_name, system_prompt, _params(temp, tp, mt, sd), lang, votes=False):
            yield display, str(cid), "", gr.skip()
        # The conversation list last, with the whole answer again: reading and sending it first held up the first
        # tokens of every chat started at the same time (32 at once: 1.8x vLLM's own time to the first token).
        listed = gr.update(choices=await asyncio.to_thread(conversation_choices, actor), value=str(cid))
        yield display, str(cid), "", listed

    async def regenerate(cid_value: str, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float, lang: str,
                         request: gr.Request):
        """Keep the last answer (inactive) and stream a new one for the same user message."""
        lang = lang or lang0
        cid = _own(actor_of(request), cid_value, lang) if cid_value not in (None, "") else None
        if cid is None or not turns.retire_last_answer(cid):
            gr.Warning(t(lang, "chat.nothing_to_regenerate"))
            yield gr.skip()
            return
        async for display in stream_turn(cid, _model_or_error(model_name, lang), system_prompt, _params(temp, tp, mt, sd), lang):
            yield display

    async def edit_last(new_text: str, cid_value: str, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float, lang: str,
                        request: gr.Request):
        """Replace the last user message with `new_text` (the old one is kept inactive) and answer again."""
        lang = lang or lang0
        cid = _own(actor_of(request), cid_value, lang) if cid_value not in (None, "") else None
        last = turns.last_user_message(cid) if cid else None
        if last is None:
            gr.Warning(t(lang, "chat.no_conversation"))
            yield gr.skip(), gr.skip()
            return
        if not (new_text or "").strip():
            gr.Warning(t(lang, "chat.empty_message"))
            yield gr.skip(), gr.skip()
            return
        turns.replace_user_message(cid, last.id, new_text)
        async for display in stream_turn(cid, _model_or_error(model_name, lang), system_prompt, _params(temp, tp, mt, sd), lang):
            yield display, ""

    async def on_retry(cid_value: str, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float, lang: str,
                       request: gr.Request):
        async for display in regenerate(cid_value, model_name, system_prompt, temp, tp, mt, sd, lang, request):
            yield display

    async def on_edit(edit: gr.EditData, cid_value: str, model_name: str, system_prompt: str, temp: float, tp: float, mt: float, sd: float,
                      lang: str, request: gr.Request):
        """The chatbot's own edit icon: any user message may be edited; what followed it is kept inactive.
        Stop shows with the first update (the edit's data comes with this event only, so it cannot follow a "busy" one)."""
        lang = lang or lang0
        cid = _own(actor_of(request), cid_value, lang) if cid_value not in (None, "") else None
        rows = chats.active_messages(cid) if cid else []
        index = edit.index if isinstance(edit.index, int) else edit.index[0]
        if not rows or index >= len(rows) or rows[index].role != "user":
            yield {chatbot: chatbot_view(rows, lang)}
            return
        turns.replace_user_message(cid, rows[index].id, flatten_content(edit.value))
        first = busy(True)
        async for display in stream_turn(cid, _model_or_error(model_name, lang), system_prompt, _params(temp, tp, mt, sd), lang):
            yield {chatbot: display, **first}
            first = {}

    async def show_stopped(cid_value: str, lang: str, request: gr.Request):
        """After Stop: the conversation as stored, so the cut answer carries its "stopped" mark at once."""
        cid = _conv_id(cid_value)
        if cid is None:
            return gr.skip()
        actor = actor_of(request)
        for _ in range(STOP_SETTLE_POLLS):  # the cancelled stream marks its row a moment after the click
            try:
                rows = turns.active_messages(actor, cid)
            except turns.ConversationNotFound:
                return gr.skip()
            if not rows or rows[-1].finish_reason != "streaming":
                break
            await asyncio.sleep(0.1)
        return chatbot_view(rows, lang or lang0)

    def on_like(like: gr.LikeData, cid_value: str, request: gr.Request):
        """Store the vote, then show the stored votes: the Chatbot's own 👍/👎 state is only its local memory."""
        if cid_value in (None, ""):
            return gr.skip()
        index = like.index if isinstance(like.index, int) else like.index[0]
        value = 1 if like.liked is True or like.liked == "Like" else -1 if like.liked is False or like.liked == "Dislike" else 0
        set_feedback(cid_value, index, value, request)
        return gr.update(feedback_value=feedback_values(turns.active_messages(actor_of(request), cid_value)))

    def set_feedback(conversation_id: int, message_index: int, value: int, request: gr.Request) -> str:
        """Thumbs up (1), down (-1) or clear (0) on the message at `message_index` of one of your conversations."""
        try:
            turns.set_feedback(actor_of(request), conversation_id, message_index, value)
        except (turns.ConversationNotFound, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return "ok"

    def edit_last_text(conversation_id: str, lang: str, request: gr.Request) -> str:
        """The last user message of one of your conversations (to edit and send back through /edit_last)."""
        cid = _own(actor_of(request), conversation_id, lang or lang0)
        last = turns.last_user_message(cid)
        if last is None:
            raise gr.Error(t(lang or lang0, "chat.no_conversation"))
        return last.content

    def start_edit(cid_value: str, lang: str, request: gr.Request):
        """"Edit last message": its text in the input box and the edit banner on; the next Enter/Send replaces it."""
        lang = lang or lang0
        cid = _own(actor_of(request), cid_value, lang) if cid_value not in (None, "") else None
        last = turns.last_user_message(cid) if cid else None
        if last is None:
            gr.Warning(t(lang, "chat.no_conversation"))
            return {c: gr.skip() for c in edit_mode_outputs}
        modes = edit_mode(lang, True)
        return {**modes, message: {**modes[message], "value": last.content}, editing_state: last.id}

    def leave_edit(editing: int | None, lang: str):
        """Cancel, Escape, or another conversation opened: back to sending new messages, the box emptied."""
        if not editing:
            return {c: gr.skip() for c in edit_mode_outputs}
        modes = edit_mode(lang or lang0, False)
        return {**modes, message: {**modes[message], "value": ""}, editing_state: None}

    # ---- conversation list ---------------------------------------------------------
    def new_chat():
        """Start an empty conversation (stored when its first message is sent).

        The input box is left as it is: a reply landing after the person started typing wiped what they typed (an
        edit in progress is ended, and its text emptied, by `leave_edit` when the conversation id changes)."""
        return gr.update(value=[], feedback_value=[]), "", "", gr.update(value=None), gr.skip()

    def open_chat(cid_value: str, lang: str, request: gr.Request):
        """Load one of your conversations into the chat (outputs: chatbot, id, system prompt, rename box, model)."""
        empty = gr.update(value=[], feedback_value=[])
        if cid_value in (None, ""):
            return empty, "", gr.skip(), "", gr.skip()
        try:
            conv = turns.own_conversation(actor_of(request), cid_value)
        except turns.ConversationNotFound as exc:
            gr.Warning(str(exc))
            return empty, "", gr.skip(), "", gr.skip()
        cid = conv.id
        model_update = conv.model if conv.model else gr.skip()
        return chatbot_view(chats.active_messages(cid), lang or lang0), str(cid), conv.system_prompt or "", conv.title, model_update

    def search_chats(term: str, request: gr.Request):
        return gr.update(choices=conversation_choices(actor_of(request), term or ""))

    def rename_chat(cid_value: str, title: str, lang: str, request: gr.Request):
        actor = actor_of(request)
        cid = _own(actor, cid_value, lang or lang0)
        try:
            turns.rename_conversation(actor, cid, title or "")
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang or lang0, "chat.renamed"))
        return gr.update(choices=conversation_choices(actor), value=str(cid))

    def delete_chat(cid_value: str, lang: str, request: gr.Request):
        actor = actor_of(request)
        cid = _own(actor, cid_value, lang or lang0)
        turns.delete_conversation(actor, cid)
        gr.Info(t(lang or lang0, "chat.deleted"))
        return gr.update(value=[], feedback_value=[]), "", gr.update(choices=conversation_choices(actor), value=None), ""

    def export_chat(cid_value: str, lang: str, request: gr.Request) -> list[str]:
        """Write the conversation as JSON and Markdown under the studio's exports folder; returns both paths."""
        actor = actor_of(request)
        cid = _own(actor, cid_value, lang or lang0)
        json_path, md_path = turns.export_conversation_files(settings, actor, cid)
        return [str(json_path), str(md_path)]

    def refresh(lang: str):
        """Server badge + model choices (+ the conversation list) for the current language."""
        html_now = status_html(services, lang or lang0)
        return html_now, gr.update(choices=model_choices(services) or [(settings.default_model, settings.default_model)])

    def poll_status(lang: str, shown: str):
        """The badge and the model choices, only when they changed since the last poll (`shown`): each component
        update makes Gradio's page search its whole layout tree."""
        html_now, models = refresh(lang)
        now = html_now + repr(models["choices"])
        return (html_now, models, now) if now != shown else (gr.skip(), gr.skip(), shown)

    def list_models() -> list[str]:
        """Names of every model a chat can use now (base models, adapters, external)."""
        return [r.name for r in services.servers.served_models()]

    def _add_to_dataset(cid_value: str, ds_value: str | None, lang: str, request: gr.Request) -> int:
        """The conversation (system prompt and turns up to the last finished answer) becomes a dataset row."""
        from engines.datasets import from_chats
        from storage import datasets as dstore

        lang = lang or lang0
        cid, ds_id = _conv_id(cid_value), _conv_id(ds_value)
        if cid is None or ds_id is None:
            raise gr.Error(t(lang, "ds.pick_first"))
        try:
            row_id = from_chats.add_conversation(ds_id, cid, actor=actor_of(request))
        except (ValueError, KeyError, PermissionError) as exc:  # PermissionDenied: not your chat, or not your dataset
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang, "chat.added_to_dataset", name=dstore.get_dataset(ds_id).name, id=row_id))
        return row_id

    def add_to_dataset(cid_value: str, ds_value: str | None, lang: str, request: gr.Request) -> None:
        _add_to_dataset(cid_value, ds_value, lang, request)

    def add_chat_to_dataset(conversation_id: str, dataset_id: str, lang: str, request: gr.Request) -> int:
        """API: add one of your conversations to a dataset by ids (any dataset existing now); returns the new row's id."""
        return _add_to_dataset(conversation_id, dataset_id, lang, request)

    # ---- wiring (every event has a stable api_name; see README) -----------------------
    editing_state = gr.State(None)  # id of the user message "Edit last message" is replacing, or None
    pending = gr.State(None)  # the conversation whose stored message waits for its answer (accept → stream_pending)
    edit_mode_outputs = [edit_banner, message, send_btn, editing_state]
    accept_inputs = [message, conversation_id, model, system, lang_state, editing_state]
    accept_outputs = [chatbot, conversation_id, message, conversation_list, edit_banner, send_btn, stop_btn, editing_state, pending,
                      versions_row]
    stream_inputs = [pending, model, system, temperature, top_p, max_tokens, seed, lang_state]
    buttons = [send_btn, stop_btn]
    version_outputs = [versions_row, ver_label, ver_prev, ver_next]
    idle_inputs, idle_outputs = [conversation_id, lang_state], [*buttons, *version_outputs]
    # In the page: store and echo at once, then stream into the Chatbot alone (see `accept`); Stop shows meanwhile.
    # Not queued behind each other: 32 people pressing Enter at once each wait for their own message's store only.
    ev_submit = message.submit(accept, accept_inputs, accept_outputs, api_name=False, show_progress="hidden",
                               concurrency_limit=None).success(
        stream_pending, stream_inputs, [chatbot], api_name=False, **STREAMING)
    ev_submit.then(idle, idle_inputs, idle_outputs, api_name=False, show_progress="hidden")
    ev_send = send_btn.click(accept, accept_inputs, accept_outputs, api_name=False, show_progress="hidden",
                             concurrency_limit=None).success(
        stream_pending, stream_inputs, [chatbot], api_name=False, **STREAMING)
    ev_send.then(idle, idle_inputs, idle_outputs, api_name=False, show_progress="hidden")
    # For gradio_client: the whole turn in one event, the conversation id in every update.
    send_api_btn = gr.Button(visible=False, elem_id="send-api")
    ev_send_api = send_api_btn.click(send, [message, *gen_inputs, lang_state, editing_state],
                                     [chatbot, conversation_id, message, conversation_list],
                                     api_name="send", **STREAMING)
    # Stop shows first, then the answer streams, then Send is back: one chain, so a slow "busy" update can never land
    # after the answer ended (two events on one click raced: Stop stayed and the new version's arrows were hidden).
    def busy_first(trigger):
        return trigger(lambda: busy(True), None, [*buttons, versions_row], api_name=False, show_progress="hidden",
                       concurrency_limit=None)
    ev_regen = busy_first(regen_btn.click).then(regenerate, [*gen_inputs, lang_state], [chatbot], api_name="regenerate",
                                               **STREAMING)
    ev_retry = busy_first(chatbot.retry).then(on_retry, [*gen_inputs, lang_state], [chatbot], api_name="retry",
                                             api_visibility="private", **STREAMING)
    ev_edit = chatbot.edit(on_edit, [*gen_inputs, lang_state], [chatbot, *buttons, versions_row], api_name="edit",
                           api_visibility="private", **STREAMING)
    for ev in (ev_regen, ev_retry, ev_edit):
        ev.then(idle, idle_inputs, idle_outputs, api_name=False, show_progress="hidden")
    edit_btn.click(start_edit, [conversation_id, lang_state], edit_mode_outputs, api_name=False)
    edit_cancel_btn.click(leave_edit, [editing_state, lang_state], edit_mode_outputs, api_name=False, show_progress="hidden")
    # Opening, starting or deleting a conversation ends an edit of the one before.
    conversation_id.change(leave_edit, [editing_state, lang_state], edit_mode_outputs, api_name=False, show_progress="hidden")
    gr.api(edit_last_text, api_name="edit_last_text")
    edit_last_btn_hidden = gr.Button(visible=False, elem_id="edit-last-submit")
    ev_edit_api = edit_last_btn_hidden.click(edit_last, [message, *gen_inputs, lang_state], [chatbot, message], api_name="edit_last", **STREAMING)
    stop_btn.click(None, None, None, cancels=[ev_submit, ev_send, ev_send_api, ev_regen, ev_retry, ev_edit, ev_edit_api], api_name="stop",
                   api_visibility="private").then(show_stopped, [conversation_id, lang_state], [chatbot], api_name=False,
                                                  show_progress="hidden").then(idle, idle_inputs, idle_outputs, api_name=False,
                                                                               show_progress="hidden")
    chatbot.like(on_like, [conversation_id], [chatbot], api_name="like", api_visibility="private", show_progress="hidden")
    gr.api(set_feedback, api_name="feedback")
    gr.api(list_models, api_name="list_models")

    new_btn.click(new_chat, None, [chatbot, conversation_id, rename_box, conversation_list, message], api_name="new_chat")
    # Another conversation (opened, new, deleted): its own versions, or none.
    conversation_id.change(conversation_versions, [conversation_id, lang_state], version_outputs, api_name=False,
                           show_progress="hidden")
    ver_prev.click(prev_version, [conversation_id, lang_state], [chatbot, *version_outputs], api_name="previous_version")
    ver_next.click(next_version, [conversation_id, lang_state], [chatbot, *version_outputs], api_name="next_version")
    conversation_list.input(open_chat, [conversation_list, lang_state], [chatbot, conversation_id, system, rename_box, model], api_name="open_chat_from_list", api_visibility="private")
    open_id = gr.Textbox(visible=False)
    open_id.change(open_chat, [open_id, lang_state], [chatbot, conversation_id, system, rename_box, model], api_name="open_chat")
    # `change`, not `input`: Gradio's Textbox sends `input` from keypress only, so Backspace, Delete, cut, paste and
    # Korean IME composition never re-filtered the list.
    search.change(search_chats, [search], [conversation_list], api_name="search_chats", show_progress="hidden")
    rename_btn.click(rename_chat, [conversation_id, rename_box, lang_state], [conversation_list], api_name="rename_chat")
    delete_btn.click(delete_chat, [conversation_id, lang_state], [chatbot, conversation_id, conversation_list, rename_box], api_name="delete_chat")
    # The picker checks its value against the choices this session saw; the API takes any dataset id (the engine checks).
    to_dataset_btn.click(add_to_dataset, [conversation_id, to_dataset, lang_state], None, api_name=False)
    gr.api(add_chat_to_dataset, api_name="add_chat_to_dataset")
    to_dataset.focus(lambda lang: gr.update(choices=dataset_choices(lang)), [lang_state], [to_dataset], api_name=False, show_progress="hidden")
    export_btn.click(export_chat, [conversation_id, lang_state], [export_files], api_name="export_chat")
    refresh_btn.click(refresh, [lang_state], [status, model], api_name="refresh_models")
    # Clicked by the page's own script (PAGE_JS) when /studio/status says the badge or the choices changed: no Gradio
    # timer, so an idle page starts no event at all.
    status_poll = gr.Button(visible="hidden", elem_id="status-poll")
    status_shown = gr.State("")  # what the last poll sent (badge + choices): an unchanged state is not sent again
    status_poll.click(poll_status, [lang_state, status_shown], [status, model, status_shown], api_name="poll_status",
                      api_visibility="private", show_progress="hidden", concurrency_limit=None)

    tab = ChatTab(
        chatbot=chatbot, conversation_id=conversation_id, conversation_list=conversation_list, model=model,
        status=status, message=message,
        open_chat={"fn": open_chat, "inputs": [conversation_list, lang_state],
                   "outputs": [chatbot, conversation_id, system, rename_box, model]},
        new_chat={"fn": new_chat, "inputs": None, "outputs": [chatbot, conversation_id, rename_box, conversation_list, message]},
    )
    return tab
