"""Start Chat Studio: python launch.py [--host] [--port] [--share] [--auth user:pass] [--model ID_OR_PATH] [--no-serve]

Manage accounts without starting anything: python launch.py users add|list|disable|enable|passwd|role ...,
python launch.py keys create|list|revoke ... (see `python launch.py users --help`)."""

from __future__ import annotations

import argparse
import atexit
import gc
import signal
import sys
import time

STARTED = time.perf_counter()
ADMIN_COMMANDS = ("users", "keys")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch.py", description="Chat Studio: chat, fine-tune and compare local LLMs.",
                                epilog="Accounts: `launch.py users --help` and `launch.py keys --help` (they start nothing).")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1, from HOST)")
    p.add_argument("--port", type=int, help="port (default 7860, from PORT)")
    p.add_argument("--share", action="store_true", help="create a public Gradio link (requires --auth or AUTH)")
    p.add_argument("--auth", help="user:password required to open the app")
    p.add_argument("--model", help="base model to serve: the bundled default, a local folder or a hub id")
    p.add_argument("--no-serve", action="store_true", help="start no model server (use VLLM_BASE_URL or start one later)")
    return p.parse_args(argv)


# ---- accounts from the command line (no app, no servers, no gradio) -------------------------------------------

def parse_admin_args(argv: list[str]) -> argparse.Namespace:
    """`users ...` / `keys ...`: the command line an owner with shell access uses to manage accounts."""
    p = argparse.ArgumentParser(prog="launch.py", description="Manage Chat Studio accounts and API keys (starts nothing).")
    top = p.add_subparsers(dest="group", required=True)

    users = top.add_parser("users", help="accounts: add, list, disable, enable, passwd, role")
    u = users.add_subparsers(dest="action", required=True)
    add = u.add_parser("add", help="add an account (password asked twice, or one line on stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=("member", "admin"), default="member")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    u.add_parser("list", help="every account: name, role, state, created")
    for action, text in (("disable", "stop an account from logging in (its data stays)"), ("enable", "let it log in again")):
        u.add_parser(action, help=text).add_argument("name")
    passwd = u.add_parser("passwd", help="set a new password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    role = u.add_parser("role", help="make an account admin or member")
    role.add_argument("name")
    role.add_argument("role", choices=("admin", "member"))

    keys = top.add_parser("keys", help="per-user API keys: create, list, revoke")
    k = keys.add_subparsers(dest="action", required=True)
    create = k.add_parser("create", help="a new key for NAME, printed once (only its hash is kept)")
    create.add_argument("name")
    create.add_argument("--label", default="default", help="what the key is for")
    k.add_parser("list", help="every key: id, user, label, prefix, created, last used, revoked")
    revoke = k.add_parser("revoke", help="revoke key ID (requests with it get 401)")
    revoke.add_argument("id", type=int)
    return p.parse_args(argv)


def _read_password(from_stdin: bool) -> str:
    """From stdin's first line (scripts), else asked twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise ValueError("The two passwords differ; nothing was changed.")
    return first


def admin_command(argv: list[str]) -> int:
    """Run one `users`/`keys` command on DATA_DIR's database: 0 on success, 2 with one `error:` line otherwise."""
    args = parse_admin_args(argv)
    from engines.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from engines.logs import configure_logging

    # Account changes are audited in the studio's log file (never a password); the terminal shows only results.
    configure_logging(settings.logs_path, level=settings.log_level, console=False)
    from engines import accounts
    from storage import connect

    connect(settings.db_url)
    # The person at the shell of DATA_DIR is the owner: the command line acts as an admin.
    cli = accounts.Actor(id=0, name="cli", role="admin")
    try:
        if args.group == "users":
            _users_command(args, accounts)
        else:
            _keys_command(args, accounts, cli)
    except (accounts.AccountError, accounts.PermissionDenied, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _users_command(args: argparse.Namespace, accounts) -> None:  # noqa: ANN001 - the engines.accounts module
    if args.action == "add":
        had_login = accounts.login_required()
        actor = accounts.add_user(args.name, _read_password(args.password_stdin), role=args.role)
        print(f"Added {actor.name} ({actor.role}).")
        if not had_login:
            print("From now on the studio asks everyone to log in (a running studio within a few seconds).", file=sys.stderr)
        if not any(u["role"] == "admin" and u["can_log_in"] and not u["disabled"] for u in accounts.list_users()):
            print("note: no admin can log in yet; add one with --role admin (or set AUTH=user:password).", file=sys.stderr)
    elif args.action == "list":
        rows = accounts.list_users()
        if not rows:
            print("No accounts yet.")
        width = max([len(r["name"]) for r in rows] + [4])
        for r in rows:
            state = "disabled" if r["disabled"] else ("enabled" if r["can_log_in"] else "no password")
            created = str(r["created_at"] or "")[:16]
            print(f"{r['name']:<{width}}  {r['role']:<6}  {state:<11}  {created}")
    elif args.action in ("disable", "enable"):
        accounts.set_disabled(args.name, args.action == "disable")
        print(f"{args.name} is {args.action}d.")
    elif args.action == "passwd":
        accounts.set_password(args.name, _read_password(args.password_stdin))
        print(f"New password set for {args.name}.")
    elif args.action == "role":
        accounts.set_role(args.name, args.role)
        print(f"{args.name} is now {args.role}.")


def _keys_command(args: argparse.Namespace, accounts, cli) -> None:  # noqa: ANN001 - the engines.accounts module
    if args.action == "create":
        owner = accounts.actor_for(args.name)
        key_id, key = accounts.create_api_key(owner, args.label)
        print(f"API key {key_id} for {owner.name} ({args.label}); shown once, store it now:", file=sys.stderr)
        print(key)  # alone on stdout, so `KEY=$(python launch.py keys create NAME)` works
    elif args.action == "list":
        rows = accounts.list_api_keys(cli, everyone=True)
        if not rows:
            print("No API keys yet.")
        for r in rows:
            used = str(r["last_used_at"])[:16] if r["last_used_at"] else "never used"
            state = "revoked" if r["revoked"] else "live"
            print(f"{r['id']:>4}  {r['user']:<16}  {r['prefix']}…  {state:<7}  {used:<16}  {r['name']}")
    elif args.action == "revoke":
        accounts.revoke_api_key(cli, args.id)
        print(f"API key {args.id} is revoked.")


# ---- the app --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ADMIN_COMMANDS:
        return admin_command(argv)
    args = parse_args(argv)
    from engines.settings import SettingsError, load_settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "auth": args.auth, "default_model": args.model}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from engines.instance_lock import AlreadyRunning, acquire

    try:
        # Before anything starts: a second studio on this DATA_DIR would adopt the same workers and evaluations.
        instance = acquire(settings.data_dir, port=settings.port)  # held (by this frame) until the process ends
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from engines import accounts
    from storage import connect

    connect(settings.db_url)
    protected = bool(settings.auth_pair) or accounts.login_required()
    if args.share and not protected:
        print("error: refusing to --share without a password: add --auth user:password (or set AUTH), "
              "or add an account with `python launch.py users add NAME --role admin`.", file=sys.stderr)
        return 2
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not protected:
        print(f"error: refusing to listen on {settings.host} without a password: add --auth user:password (or set AUTH), "
              "or add an account with `python launch.py users add NAME --role admin`.", file=sys.stderr)
        return 2

    from engines.logs import configure_logging

    configure_logging(settings.logs_path, level="DEBUG" if settings.debug else settings.log_level)
    import structlog

    log = structlog.get_logger("launch")
    accounts.bootstrap(settings.auth_pair)  # AUTH=user:pass is the first admin; rows from before accounts get an owner
    login = accounts.login_required()
    from engines.conversations import mark_interrupted_answers

    mark_interrupted_answers()  # answers a crash cut off stop looking finished (we hold the lock: nobody streams now)

    from engines.models import resolve_base_model
    from engines.serving import MlflowUI, ServerManager
    from engines.training import JobManager

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

    from studio.app import CSS, PAGE_JS, THEME, build_app
    from studio.services import Services

    services = Services(settings=settings, servers=servers, jobs=jobs, mlflow_ui=mlflow_ui, no_serve=args.no_serve,
                        evals=evaluations)
    demo = build_app(services)
    demo.queue(default_concurrency_limit=8)
    import anyio

    from studio.gate import gate_middleware

    def check(name: str, password: str) -> bool:
        return accounts.check_login(name, password, max_failures=settings.login_max_failures)

    login_checks = anyio.CapacityLimiter(2)  # argon2 is CPU-bound: a flood of tries cannot take every worker thread

    async def gradio_auth(name: str, password: str) -> bool:
        # Counted first (tries sent together each wait longer), then the wait on the event loop, holding no thread,
        # then argon2 in a worker thread: a throttled flood never stalls other people's requests or logins.
        name, failures, delay = accounts.reserve_login_attempt(name, max_failures=settings.login_max_failures)
        if delay:
            await anyio.sleep(delay)
        return await anyio.to_thread.run_sync(lambda: accounts.verify_login(name, password, failures=failures, delay=delay),
                                              limiter=login_checks)

    def still_allowed(name: str) -> str | None:
        return accounts.credentials_version(name)  # None ends the session; a new value ends older sessions

    # The gate answers a logged-out request with the bare login form (no config, no API description), and turns
    # logins on as soon as the first account exists on a studio started without any.
    gate = gate_middleware(still_allowed, auth=gradio_auth, login_now=accounts.login_required,
                           private_roots=settings.data_roots)
    import api

    apis = api.api_middleware(services)  # /v1 and /api/v1, inside the gate, answering from the first request
    log.info("app.start", host=settings.host, port=settings.port, share=args.share, login=login,
             seconds=round(time.perf_counter() - STARTED, 2))
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=args.share,
            theme=THEME,
            css=CSS,
            js=PAGE_JS,
            allowed_paths=[str(settings.exports_path)],
            show_error=True,
            footer_links=["api", "gradio"],
            prevent_thread_lock=True,
            auth=gradio_auth if login else None,
            auth_message="Log in with your own name and password. No account yet? Ask an admin: they add people "
                         "in the Team tab or with: python launch.py users add NAME",
            app_kwargs={"middleware": [gate, apis]},
            ssr_mode=False,  # a Node front proxy would serve pages around the gate
        )
        instance.update(port=demo.server_port or settings.port)
        from studio.app import install_page_routes

        install_page_routes(demo.app, services)
        from engines import monitoring

        monitoring.track_servers(servers)
        # Prometheus /metrics and /healthz next to the UI (numbers only: no text, no secrets); /metrics asks for an
        # enabled account's name and password whenever the studio asks for logins.
        monitoring.install_routes(demo.app, lambda: monitoring.health_report(servers), auth=check,
                                  auth_required=lambda: demo.app.auth is not None)
        # Everything built so far (Gradio's blocks and config, the engines) lives as long as the process: out of the
        # garbage collector's sight, a full collection no longer walks it, which stalled every open stream at once.
        gc.freeze()
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
