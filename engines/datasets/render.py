"""Render a conversation with the trainer's marked chat template, without torch: jinja2 + `tokenizers`.

The same templates (engines.chat_templates) the worker trains with; the `{% generation %}` block
is marked here so a preview can show which part is trained, and token counts are the real ones.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engines.chat_templates import TEMPLATES, detect_family

START, END = "\ue000", "\ue001"  # private-use characters: never in real text


class _Generation(Extension):
    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_mark", []), [], [], body).set_lineno(lineno)

    def _mark(self, caller: Any) -> str:
        return START + caller() + END


def _env(*extensions: Any) -> ImmutableSandboxedEnvironment:
    """Like transformers' chat-template environment (trim/lstrip blocks, loop controls, its two helpers)."""
    env = ImmutableSandboxedEnvironment(extensions=[*extensions, "jinja2.ext.loopcontrols"], trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: dt.datetime.now().strftime(fmt))
    return env


@lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    return _env(_Generation).from_string(template)


@lru_cache(maxsize=8)
def _stock_template(stock: str) -> Any:
    return _env().from_string(stock)


class ModelFormat:
    """A model folder's chat format: family, marked template, default system prompt, special tokens, tokenizer."""

    def __init__(self, folder: Path, family: str = "auto") -> None:
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        stock = cfg.get("chat_template")
        if isinstance(stock, list):  # named templates: take the default one
            stock = next((t["template"] for t in stock if t.get("name") == "default"), None)
        if stock is None and (folder / "chat_template.jinja").is_file():
            stock = (folder / "chat_template.jinja").read_text()
        self.family = detect_family(stock) if family == "auto" else family
        self.template = TEMPLATES[self.family]
        self.special = {k: _token_text(cfg.get(k)) for k in ("bos_token", "eos_token")}
        self.default_system = ""
        if stock and self.family in ("chatml", "llama3"):
            probe = _stock_template(stock).render(messages=[{"role": "user", "content": "\ue002"}], add_generation_prompt=False, **self.special)
            head = "<|im_start|>system\n" if self.family == "chatml" else "<|start_header_id|>system<|end_header_id|>\n\n"
            tail = "<|im_end|>" if self.family == "chatml" else "<|eot_id|>"
            i = probe.find(head)
            if 0 <= i < probe.find("\ue002"):
                self.default_system = probe[i + len(head): probe.find(tail, i)]
        tok = folder / "tokenizer.json"
        self._tokenizer_path = str(tok) if tok.is_file() else None

    def segments(self, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
        """The rendered text as (piece, trained) pairs: trained = inside an assistant reply (+ end token)."""
        text = self._render(messages)
        out, trained = [], False
        for part in re.split(f"([{START}{END}])", text):
            if part in (START, END):
                trained = part == START
            elif part:
                out.append((part, trained))
        return out

    def _render(self, messages: list[dict[str, str]]) -> str:
        return _compiled(self.template).render(messages=messages, add_generation_prompt=False,
                                               default_system=self.default_system, **self.special)

    def text(self, messages: list[dict[str, str]]) -> str:
        return self._render(messages).replace(START, "").replace(END, "")

    def count_tokens(self, texts: list[str]) -> list[int]:
        if self._tokenizer_path is None:
            return [len(t) // 4 + 1 for t in texts]  # no tokenizer.json: a rough count, said so by callers
        return [len(e.ids) for e in _tokenizer(self._tokenizer_path).encode_batch(texts, add_special_tokens=False)]


@lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value or "")
