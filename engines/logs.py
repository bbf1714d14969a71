"""structlog setup: JSON lines under LOG_DIR plus readable console output."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

import structlog

# Whole key names only: "prompt_tokens" is a number worth logging, "hf_token" is a secret.
_SECRET_KEYS = re.compile(r"^(.*api_key|.*_token|token|.*password|auth|authorization|.*secret.*|cookie)$", re.I)
_NOT_SECRET = {"prompt_tokens", "completion_tokens", "total_tokens", "max_tokens"}


def _redact(_logger: object, _name: str, event: dict) -> dict:
    """Never let a secret reach a log line, whatever a caller passed."""
    for key in list(event):
        if key not in _NOT_SECRET and _SECRET_KEYS.match(key):
            event[key] = "***"
    return event


def configure_logging(log_dir: Path, *, level: str = "INFO", console: bool = True) -> Path:
    """Route structlog and stdlib logging to `log_dir/studio.jsonl` (JSON) and the console (text)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "studio.jsonl"
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=20_000_000, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer(ensure_ascii=False)],
        )
    )
    root = logging.getLogger()
    root.handlers = [file_handler]
    if console:
        console_handler = logging.StreamHandler()
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.dev.ConsoleRenderer(colors=False)],
            )
        )
        root.addHandler(console_handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "gradio", "uvicorn.access", "openai", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
