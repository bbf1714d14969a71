"""Start Chat Studio: python launch.py [--host] [--port] [--share] [--auth user:pass] [--model ID_OR_PATH] [--no-serve]"""

from __future__ import annotations

import argparse
import atexit
import signal
import sys
import time

STARTED = time.perf_counter()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch.py", description="Chat Studio: chat, fine-tune and compare local LLMs.")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1, from HOST)")
    p.add_argument("--port", type=int, help="port (default 7860, from PORT)")
    p.add_argument("--share", action="store_true", help="create a public Gradio link (requires --auth or AUTH)")
    p.add_argument("--auth", help="user:password required to open the app")
    p.add_argument("--model", help="base model to serve: the bundled default, a local folder or a hub id")
    p.add_argument("--no-serve", action="store_true", help="start no model server (use VLLM_BASE_URL or start one later)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from engines.settings import SettingsError, load_settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "auth": args.auth, "default_model": args.model}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.share and not settings.auth_pair:
        print("error: refusing to --share without a password: add --auth user:password (or set AUTH).", file=sys.stderr)
        return 2
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.auth_pair:
        print(f"error: refusing to listen on {settings.host} without a password: add --auth user:password (or set AUTH).",
              file=sys.stderr)
        return 2

    from engines.logs import configure_logging

    configure_logging(settings.logs_path, level="DEBUG" if settings.debug else settings.log_level)
    import structlog

    log = structlog.get_logger("launch")

    from engines.models import resolve_base_model
    from engines.serving import MlflowUI, ServerManager
    from engines.training import JobManager
    from storage import connect

    connect(settings.db_url)
    servers = ServerManager(settings)
    jobs = JobManager(settings, servers, serve_adapters=not (args.no_serve or settings.vllm_base_url))
    jobs.start()  # adopts workers an earlier app left running; saved adapters join their base servers
    mlflow_ui = MlflowUI(settings)
    from engines.evaluation.runner import EvalManager

    evaluations = EvalManager(settings, servers.endpoint_for)
    evaluations.start()  # evaluations an earlier app left running carry on once their servers are up

    def shutdown(*_: object) -> None:
        evaluations.stop()  # saved answers stay; the next start asks only for the rest
        jobs.stop()  # training workers keep running: the next start adopts them
        mlflow_ui.stop()
        servers.stop_all()

    atexit.register(shutdown)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # runs atexit: servers stop with the app

    if settings.vllm_base_url:
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        servers.add_external(settings.vllm_base_url, key)
    elif not args.no_serve:
        servers.start_in_background(lambda: resolve_base_model(settings, settings.default_model))
        for slot in settings.model_slots():
            servers.start_in_background(lambda s=slot: resolve_base_model(settings, s.path), gpu=slot.gpu, port=slot.port)

    from studio.app import CSS, THEME, build_app
    from studio.services import Services

    demo = build_app(Services(settings=settings, servers=servers, jobs=jobs, mlflow_ui=mlflow_ui,
                                no_serve=args.no_serve, evals=evaluations))
    demo.queue(default_concurrency_limit=8)
    log.info("app.start", host=settings.host, port=settings.port, share=args.share, seconds=round(time.perf_counter() - STARTED, 2))
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=args.share,
            auth=settings.auth_pair,
            theme=THEME,
            css=CSS,
            allowed_paths=[str(settings.exports_path)],
            show_error=True,
            footer_links=["api", "gradio"],
            prevent_thread_lock=True,
        )
        from engines import monitoring

        monitoring.track_servers(servers)
        # Prometheus /metrics and /healthz next to the UI (numbers only: no text, no secrets); /metrics asks for AUTH.
        monitoring.install_routes(demo.app, lambda: monitoring.health_report(servers), auth=settings.auth_pair)
        import openai  # noqa: F401  # warm the chat client's import while nobody is waiting on it

        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
