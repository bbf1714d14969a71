"""The Models tab: every model the studio knows, the model servers (start / stop / restart), their health, live metrics
and log."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engines.accounts import Actor, PermissionDenied
from engines.serving import metrics
from engines.serving.metrics import MetricsHistory
from engines.serving.start import StartRequest, start_model_server, stop_model_server
from studio.i18n import Translatable, t
from studio.models_view import (
    errors_markdown,
    health_html,
    metric_frames,
    model_rows,
    models_frame,
    servers_api,
    servers_frame,
    servers_signature,
    start_choices,
    start_options,
    x_span,
    y_limits,
)
from studio.people import actor_of, admin_controls
from studio.plots import color_every_series
from studio.services import Services

POLL_S = 2.0
MODELS_REFRESH_S = 15.0  # the models table is re-read this often (and whenever a server changes state)
LOG_LINES = 80


def plot_value(frame: Any) -> Any:
    """None for an empty frame: a LinePlot given an empty frame first draws no line for the data sent later."""
    return frame if len(frame) else None


def ttft_label(lang: str, frames: dict[str, Any]) -> str:
    """The TTFT plot's title says why it is empty: TTFT exists only for requests."""
    return t(lang, "models.plot.ttft_ms" if len(frames["ttft_ms"]) else "models.plot.ttft_ms_idle")


@dataclass
class ModelsTab:
    models_table: gr.Dataframe
    servers_table: gr.Dataframe
    server_pick: gr.Dropdown  # the selected server (its log is shown)
    start_model: gr.Dropdown  # the model the Start button serves
    health: gr.HTML
    timer: gr.Timer  # ticks every POLL_S; app.py may activate it only while the tab is open
    refresh: dict  # fn/inputs/outputs that re-read the models table and the Start choices (after a download)
    show: dict  # fn/inputs/outputs that draw the whole tab as it is now (for the page's load and the tab's select)


def active_runs() -> list[Any]:
    """Fine-tunes queued or running (the health line says where each runs), or nothing when no database is bound."""
    from storage import runs

    try:
        return runs.list_runs(20, ("queued", "running"))
    except Exception:
        return []


def catalog_entries() -> list[Any]:
    """The `models` table, or nothing when no database is bound."""
    from storage import catalog

    try:
        return catalog.list_models()
    except Exception:
        return []


def build_models_tab(services: Services, tr: Translatable, lang_state: Any, history: MetricsHistory | None = None) -> ModelsTab:
    settings = services.settings
    servers = services.servers
    history = metrics.HISTORY if history is None else history
    lang0 = settings.ui_language
    manage = not services.no_serve

    def rows() -> list[dict[str, Any]]:
        return model_rows(servers.served_models(), servers.registry.all(), catalog_entries())

    def choices() -> list[str]:
        return start_choices(settings.default_model, servers.registry.all(), catalog_entries())

    def health(lang: str) -> str:
        return health_html(lang, servers.status(), history, no_serve=services.no_serve, external_urls=servers.external_urls(),
                           pending_error=servers.pending_error(), fleet=servers.fleet.view(), jobs=active_runs())

    names0 = list(servers.status())
    raw0 = metric_frames(lang0, history)
    frames0, lims0 = {k: plot_value(v) for k, v in raw0.items()}, y_limits(raw0)
    with gr.Column(elem_id="models-tab"):
        health_box = gr.HTML(health(lang0), elem_id="models-health-box", padding=False)
        tr.add(gr.Markdown(f"### {t(lang0, 'models.registered')}"), value="models.registered_md")
        # Drawn again on a language switch (kinds and "served" are words too); the timer keeps it current after that.
        models_table = tr.add(gr.Dataframe(value=models_frame(lang0, rows()), interactive=False, max_height=260, wrap=True,
                                           elem_id="models-table"), render=lambda lang: models_frame(lang, rows()))
        refresh_btn = tr.add(gr.Button(t(lang0, "models.refresh"), size="sm", elem_id="models-refresh"), value="models.refresh")

        tr.add(gr.Markdown(f"### {t(lang0, 'models.servers')}"), value="models.servers_md")
        tr.add(gr.Markdown(t(lang0, "models.no_serve"), visible=not manage, elem_id="models-no-serve"), value="models.no_serve")
        with gr.Column(visible=manage, elem_id="models-servers"):
            # Shown to a member on page load (the buttons below are then disabled): why they cannot start or stop.
            admin_note = tr.add(gr.Markdown(t(lang0, "models.admin_only"), visible=False, elem_id="models-admin-only"),
                                value="models.admin_only")
            servers_table = tr.add(gr.Dataframe(value=servers_frame(lang0, servers.status()), interactive=False, max_height=220,
                                                wrap=True, elem_id="models-servers-table"),
                                   render=lambda lang: servers_frame(lang, servers.status()))
            with gr.Row(equal_height=False):
                server_pick = tr.add(gr.Dropdown(choices=names0, value=names0[0] if names0 else None, label=t(lang0, "models.field.server"),
                                                 scale=3, elem_id="models-server-pick"), label="models.field.server")
                stop_btn = tr.add(gr.Button(t(lang0, "models.stop"), variant="stop", size="sm", scale=0, min_width=110,
                                            elem_id="models-stop"),
                                  value="models.stop")
                restart_btn = tr.add(gr.Button(t(lang0, "models.restart"), size="sm", scale=0, min_width=110, elem_id="models-restart"),
                                     value="models.restart")
            with tr.add(gr.Accordion(t(lang0, "models.start_title"), open=not names0, elem_id="models-start-box"),
                        label="models.start_title") as start_box:
                with gr.Row():
                    start_model = tr.add(gr.Dropdown(
                        choices=choices(), value=settings.default_model, allow_custom_value=True, scale=3,
                        label=t(lang0, "models.field.model"), info=t(lang0, "models.info.model"), elem_id="models-start-model"),
                        label="models.field.model", info="models.info.model")
                    gpu = tr.add(gr.Textbox(value="", label=t(lang0, "models.field.gpu"), info=t(lang0, "models.info.gpu"), scale=1,
                                            elem_id="models-start-gpu"), label="models.field.gpu", info="models.info.gpu")
                with gr.Row():
                    port = tr.add(gr.Number(value=None, precision=0, label=t(lang0, "models.field.port"), info=t(lang0, "models.info.port"),
                                            elem_id="models-start-port"), label="models.field.port", info="models.info.port")
                    max_len = tr.add(gr.Number(value=settings.vllm_max_model_len, precision=0, label=t(lang0, "models.field.max_model_len"),
                                               elem_id="models-start-max-len"), label="models.field.max_model_len")
                    mem = tr.add(gr.Number(value=settings.vllm_gpu_memory_utilization, minimum=0.05, maximum=1.0, step=0.05,
                                           label=t(lang0, "models.field.gpu_memory_utilization"),
                                           info=t(lang0, "models.info.gpu_memory_utilization"), elem_id="models-start-gpu-mem"),
                                 label="models.field.gpu_memory_utilization", info="models.info.gpu_memory_utilization")
                start_errors = gr.Markdown("", elem_id="models-start-errors")
                start_btn = tr.add(gr.Button(t(lang0, "models.start"), variant="primary", elem_id="models-start"), value="models.start")
            with tr.add(gr.Accordion(t(lang0, "models.fleet_title"), open=False, elem_id="models-fleet-box"),
                        label="models.fleet_title"):
                tr.add(gr.Markdown(t(lang0, "models.fleet_help"), elem_id="models-fleet-help"), value="models.fleet_help")
                with gr.Row():
                    fleet_base = tr.add(gr.Dropdown(choices=choices(), value=settings.default_model, allow_custom_value=True,
                                                    scale=2, label=t(lang0, "models.fleet_base"), elem_id="models-fleet-base"),
                                        label="models.fleet_base")
                    fleet_url = tr.add(gr.Textbox(label=t(lang0, "models.fleet_url"), placeholder="http://gpu-box:8000", scale=3,
                                                  elem_id="models-fleet-url"), label="models.fleet_url")
                with gr.Row():
                    fleet_add = tr.add(gr.Button(t(lang0, "models.fleet_add"), size="sm", elem_id="models-fleet-add"),
                                       value="models.fleet_add")
                    fleet_remove = tr.add(gr.Button(t(lang0, "models.fleet_remove"), size="sm", variant="stop",
                                                    elem_id="models-fleet-remove"), value="models.fleet_remove")
            action_msg = gr.Markdown("", elem_id="models-action-msg")

            tr.add(gr.Markdown(f"### {t(lang0, 'models.metrics')}"), value="models.metrics_md")
            # No fixed height: in Gradio 6 it clips the legend once the plot is updated.
            plot_common = {"x": "time", "color": "series", "x_axis_format": "%H:%M:%S", "x_title": t(lang0, "models.time"),
                           "color_title": t(lang0, "models.series")}
            plot_tr = {"x_title": "models.time", "color_title": "models.series"}
            with gr.Row():
                requests_plot = tr.add(gr.LinePlot(frames0["requests"], y="requests", label=t(lang0, "models.plot.requests"),
                                                   y_title=t(lang0, "models.plot.requests"), y_lim=lims0["requests"],
                                                   elem_id="models-plot-requests", **plot_common),
                                       label="models.plot.requests", y_title="models.plot.requests", **plot_tr)
                kv_plot = tr.add(gr.LinePlot(frames0["kv_cache"], y="kv_cache_pct", label=t(lang0, "models.plot.kv_cache"),
                                             y_title="%", y_lim=[0, 100], elem_id="models-plot-kv", **plot_common),
                                 label="models.plot.kv_cache", **plot_tr)
            with gr.Row():
                tps_plot = tr.add(gr.LinePlot(frames0["tokens_per_s"], y="tokens_per_s", label=t(lang0, "models.plot.tokens_per_s"),
                                              y_title="tok/s", y_lim=lims0["tokens_per_s"], elem_id="models-plot-tps",
                                              **plot_common),
                                  label="models.plot.tokens_per_s", **plot_tr)
                # Dots, not a line: TTFT exists only for the intervals that had requests, so a line would join busy
                # spells across the idle time between them, and a lone busy interval would draw nothing.
                ttft_plot = tr.add(gr.ScatterPlot(frames0["ttft_ms"], y="ttft_ms", label=ttft_label(lang0, raw0),
                                                  y_title="ms", y_lim=lims0["ttft_ms"], x_lim=x_span(raw0),
                                                  elem_id="models-plot-ttft", **plot_common),
                                   label="models.plot.ttft_ms", **plot_tr)
            log_box = tr.add(gr.Code(servers.logs(names0[0], LOG_LINES) if names0 else "", label=t(lang0, "models.log"), language=None,
                                     interactive=False, max_lines=16, elem_id="models-log"), label="models.log")
        for plot in (requests_plot, kv_plot, tps_plot, ttft_plot):  # a server starting or stopping changes the series
            color_every_series(plot)
        timer = gr.Timer(POLL_S, active=False)  # app.py runs it only while this tab is open

    # ---- handlers --------------------------------------------------------------------------------------
    def refresh(lang: str):
        return models_frame(lang, rows()), gr.update(choices=choices())

    def admin(lang: str, request: gr.Request | None) -> Actor:
        """The acting admin; a member is told why (the engines refuse them too)."""
        actor = actor_of(request)
        if not actor.is_admin:
            raise gr.Error(t(lang, "models.admin_only"))
        return actor

    def on_start(lang: str, model: str | None, gpu_v: str, port_v: Any, max_len_v: Any, mem_v: Any,
                 request: gr.Request | None = None):
        if not manage:
            raise gr.Error(t(lang, "models.no_serve"))
        actor = admin(lang, request)
        model = (model or "").strip()
        if not model:
            return errors_markdown(lang, {"model": t(lang, "models.pick_model")}), gr.skip(), gr.skip(), gr.skip()
        options, errors = start_options(lang, gpu_v, port_v, max_len_v, mem_v)
        if options is None:
            return errors_markdown(lang, errors), gr.skip(), gr.skip(), gr.skip()
        ask = StartRequest(model, gpu=options.gpu, port=options.port, max_model_len=options.max_model_len,
                           gpu_memory_utilization=options.gpu_memory_utilization)
        try:  # the REST API's start: the name checked at once, a running server kept, the rest in the background
            status, started = start_model_server(settings, servers, ask, actor=actor, no_serve=not manage)
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        except ValueError as exc:  # a folder outside MODEL_CACHE_DIR / MODEL_DIRS: said now, not in the badge later
            return errors_markdown(lang, {"model": str(exc)}), gr.skip(), gr.skip(), gr.skip()
        if started is None:
            msg = t(lang, "models.already", name=model, status=t(lang, f"status.{status}"))
            return "", msg, gr.skip(), gr.update(value=model)
        time.sleep(0.3)  # the new server's state usually exists by now: the table shows it at once
        states = servers.status()
        return "", t(lang, "models.starting", name=model), servers_frame(lang, states), gr.update(choices=list(states), value=model)

    def on_stop(lang: str, name: str | None, request: gr.Request | None = None):
        actor = admin(lang, request)
        if not manage or not name:
            return t(lang, "models.pick_server"), gr.skip()
        try:
            stop_model_server(servers, name, actor=actor)  # its metrics history is kept: the plots show the gap
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        except KeyError:  # stopped and gone meanwhile, or a name no server has
            return t(lang, "models.pick_server"), gr.skip()
        return t(lang, "models.stopped", name=name), servers_frame(lang, servers.status())

    def on_restart(lang: str, name: str | None, request: gr.Request | None = None):
        actor = admin(lang, request)
        if not manage or not name or name not in servers.status():
            return t(lang, "models.pick_server"), gr.skip()
        try:
            servers.restart_server(name, actor=actor)
        except (PermissionDenied, KeyError) as exc:
            raise gr.Error(t(lang, "models.admin_only" if isinstance(exc, PermissionDenied) else "models.pick_server")) from None
        time.sleep(0.3)
        return t(lang, "models.restarting", name=name), servers_frame(lang, servers.status())

    def on_fleet(lang: str, base: str | None, url: str, add: bool, request: gr.Request | None = None):
        """Add or remove an endpoint of a base (admins): chats of that base are then routed over its endpoints."""
        actor = admin(lang, request)
        base, url = (base or "").strip(), (url or "").strip()
        if not base or not url:
            return t(lang, "models.fleet_need"), gr.skip()
        try:
            if add:
                (root, why), = servers.add_fleet_endpoint(base, url, actor=actor).items()
                msg = t(lang, "models.fleet_added", url=root, base=base) + (" " + t(lang, "models.fleet_adapter_error", why=why)
                                                                          if why else "")
            elif servers.remove_fleet_endpoint(base, url, actor=actor):
                msg = t(lang, "models.fleet_removed", url=url, base=base)
            else:
                msg = t(lang, "models.fleet_not_there", url=url, base=base)
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        except ValueError as exc:  # a URL that is not http(s)://host[:port]
            return f"<span class='ds-bad'>✗</span> {html.escape(str(exc))}", gr.skip()
        return msg, health(lang)

    def on_fleet_add(lang: str, base: str | None, url: str, request: gr.Request | None = None):
        return on_fleet(lang, base, url, True, request)

    def on_fleet_remove(lang: str, base: str | None, url: str, request: gr.Request | None = None):
        return on_fleet(lang, base, url, False, request)

    def access(request: gr.Request | None = None):
        """On page load: a member sees Start / Stop / Restart and the fleet's Add / Remove disabled, with the reason."""
        return admin_controls(actor_of(request).is_admin, 5)

    def show_log(name: str | None):
        return servers.logs(name, LOG_LINES) if name else ""

    def select_server(evt: gr.SelectData):
        row = evt.row_value if evt.row_value else None
        return row[0] if row else gr.skip()

    def view(lang: str, selected: str | None, last: dict) -> tuple[list[Any], dict]:
        """[health, servers table, server pick, 4 plots, log, models table]: what changed since `last` (the
        signatures of what the page shows; {} gives everything), and the signatures now. An unchanged table or
        plot sent again redraws and flickers."""
        states = servers.status()
        last = dict(last or {})
        out: dict[str, Any] = {}

        def changed(key: str, sig: Any) -> bool:
            if last.get(key) == sig:
                return False
            last[key] = sig
            return True

        ssig = f"{lang}|{servers_signature(states)}"
        servers_changed = changed("servers", ssig)
        out["table"] = servers_frame(lang, states) if servers_changed else gr.skip()
        names = list(states)
        selected = selected if selected in names else (names[0] if names else None)
        out["pick"] = gr.update(choices=names, value=selected) if changed("names", repr(names)) else gr.skip()
        h = health(lang)
        out["health"] = h if changed("health", h) else gr.skip()
        if changed("metrics", f"{lang}|{history.version()}"):
            frames = metric_frames(lang, history)
            lims = y_limits(frames)
            out["plots"] = [gr.update(value=plot_value(frames["requests"]), y_lim=lims["requests"]),
                            plot_value(frames["kv_cache"]),
                            gr.update(value=plot_value(frames["tokens_per_s"]), y_lim=lims["tokens_per_s"]),
                            gr.update(value=plot_value(frames["ttft_ms"]), y_lim=lims["ttft_ms"], x_lim=x_span(frames),
                                      label=ttft_label(lang, frames))]
        else:
            out["plots"] = [gr.skip()] * 4
        log_text = servers.logs(selected, LOG_LINES) if selected else ""
        out["log"] = log_text if changed("log", f"{selected}|{hash(log_text)}") else gr.skip()
        now = time.monotonic()
        if servers_changed or now - float(last.get("models_t", 0.0)) > MODELS_REFRESH_S:
            last["models_t"] = now
            table = models_frame(lang, rows())
            out["models"] = table if changed("models", table.to_json()) else gr.skip()
        else:
            out["models"] = gr.skip()
        return [out["health"], out["table"], out["pick"], *out["plots"], out["log"], out["models"]], last

    def poll(lang: str, selected: str | None, last: dict):
        """Timer tick: fetch every ready server's /metrics (≤ 1 s), then send what changed."""
        metrics.poll(servers, history)
        changes, last = view(lang, selected, last)
        return (*changes, last)

    def show(lang: str, selected: str | None, start_set_for: bool | None):
        """The tab as it is now, at page load and whenever the tab is opened: the page was built with the state
        of the app's start (no server yet), and the timer's first tick comes seconds later. "Start a server" is
        collapsed while a server runs, expanded when none does — changed only when that flips, so a box the user
        opened stays open."""
        changes, last = view(lang, selected, {})
        running = bool(servers.status())
        box = gr.update(open=not running) if running != start_set_for else gr.skip()
        return (*changes, gr.update(choices=choices()), box, running, last)

    def list_servers_api() -> list[dict[str, Any]]:
        return servers_api(servers.status(), history)

    def list_registered_api() -> list[dict[str, Any]]:
        return rows()

    # The server picker checks its value against the servers this session was sent; the API takes any name.
    def server_log_api(name: str) -> str:
        """The last lines of a server's log."""
        return show_log(name)

    def stop_server_api(lang: str, name: str, request: gr.Request = None) -> str:
        """Stop a server (admins only); returns what happened."""
        return on_stop(lang or lang0, name, request)[0]

    def restart_server_api(lang: str, name: str, request: gr.Request = None) -> str:
        """Restart a server with its options (admins only); returns what happened."""
        return on_restart(lang or lang0, name, request)[0]

    # ---- wiring ------------------------------------------------------------------------------------------
    last_state = gr.State({})
    start_set_for = gr.State(bool(names0))  # whether a server ran when "Start a server" was last opened or closed
    refresh_spec = {"fn": refresh, "inputs": [lang_state], "outputs": [models_table, start_model], "show_progress": "hidden"}
    view_outputs = [health_box, servers_table, server_pick, requests_plot, kv_plot, tps_plot, ttft_plot, log_box, models_table]
    show_spec = {"fn": show, "inputs": [lang_state, server_pick, start_set_for],
                 "outputs": [*view_outputs, start_model, start_box, start_set_for, last_state],
                 "show_progress": "hidden", "concurrency_limit": None}
    refresh_btn.click(api_name="models_table", **refresh_spec)
    start_btn.click(on_start, [lang_state, start_model, gpu, port, max_len, mem], [start_errors, action_msg, servers_table, server_pick],
                    api_name="start_server")
    stop_btn.click(on_stop, [lang_state, server_pick], [action_msg, servers_table], api_name=False)
    restart_btn.click(on_restart, [lang_state, server_pick], [action_msg, servers_table], api_name=False)
    gr.on(None, access, None, [admin_note, start_btn, stop_btn, restart_btn, fleet_add, fleet_remove], api_name="models_access",
          api_visibility="private", show_progress="hidden")
    fleet_add.click(on_fleet_add, [lang_state, fleet_base, fleet_url], [action_msg, health_box], api_name=False)
    fleet_remove.click(on_fleet_remove, [lang_state, fleet_base, fleet_url], [action_msg, health_box], api_name=False)
    server_pick.change(show_log, [server_pick], [log_box], api_name=False, show_progress="hidden")
    servers_table.select(select_server, None, [server_pick], api_name="select_server", api_visibility="private")
    timer.tick(poll, [lang_state, server_pick, last_state], [*view_outputs, last_state],
               api_name="poll_models", api_visibility="private", show_progress="hidden", concurrency_limit=None)
    gr.api(list_servers_api, api_name="list_servers")
    gr.api(list_registered_api, api_name="list_registered_models")
    gr.api(server_log_api, api_name="server_log")
    gr.api(stop_server_api, api_name="stop_server")
    gr.api(restart_server_api, api_name="restart_server")
    return ModelsTab(models_table=models_table, servers_table=servers_table, server_pick=server_pick, start_model=start_model,
                     health=health_box, timer=timer, refresh=refresh_spec, show=show_spec)
