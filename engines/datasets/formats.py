"""Read chat datasets in the common layouts and normalise them to OpenAI-style messages.

Files: JSONL, JSON (a list, or an object holding one), CSV, TSV, Parquet; UTF-8 with or without BOM.
Layouts: OpenAI `messages`; ShareGPT `conversations` (from/value, human/gpt/system and variants);
Alpaca (instruction/input/output, optional system); no_robots (prompt, messages, category);
prompt/completion pairs. Anything else gets a message listing the fields found and can be read
with a column mapping. Preference layouts (TRL's `prompt/chosen/rejected`, as strings or as
conversational message lists, with the prompt explicit or implicit in a shared prefix) are detected
here and read by `to_preference`; a chat import refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("openai", "sharegpt", "alpaca", "no_robots", "prompt_completion")
PREFERENCE_FORMATS = ("preference", "preference_conversational")
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "bard": "assistant",
    "bing": "assistant", "bot": "assistant",
    "system": "system",
}
READABLE = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


class FormatError(ValueError):
    """The file or its layout cannot be read; the message says what was found."""


class PreferenceLayout(FormatError):
    """The file holds preference pairs (a TRL layout), not chat rows: a preference import takes it."""


class RowError(ValueError):
    """One record cannot become a conversation."""


@dataclass
class Row:
    """One normalised example: messages, an optional category, and where it came from (1-based line or row)."""

    messages: list[dict[str, str]]
    category: str | None = None
    source: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": self.messages}
        if self.category:
            out["category"] = self.category
        if self.extra.get("split"):
            out["split"] = self.extra["split"]
        return out


@dataclass
class Problem:
    """A finding with its row number; errors make a row invalid, warnings only flag it."""

    row: int
    kind: str
    message: str
    severity: str = "error"


@dataclass
class PreferenceRow:
    """One preference example: the context (system first if any, ending with the user's turn), two assistant answers,
    the preferred one first, and where the judgement came from (`source`: kind, ids, model names, voter)."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    source: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    split: str | None = None
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        """The stored layout: TRL's conversational one, plus provenance, category and split."""
        out: dict[str, Any] = {"prompt": self.prompt, "chosen": [{"role": "assistant", "content": self.chosen}],
                               "rejected": [{"role": "assistant", "content": self.rejected}]}
        if self.source:
            out["source"] = self.source
        if self.category:
            out["category"] = self.category
        if self.split:
            out["split"] = self.split
        return out

    def to_trl(self, *, conversational: bool) -> dict[str, Any]:
        """TRL's layouts: message lists (conversational), or strings with the context flattened into the prompt."""
        if conversational:
            return {"prompt": self.prompt, "chosen": [{"role": "assistant", "content": self.chosen}],
                    "rejected": [{"role": "assistant", "content": self.rejected}]}
        return {"prompt": flat_prompt(self.prompt), "chosen": self.chosen, "rejected": self.rejected}


def flat_prompt(messages: list[dict[str, str]]) -> str:
    """A one-turn prompt is its text; a longer context is written out turn by turn."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _looks_binary(head: bytes) -> bool:
    return b"\x00" in head


def read_records(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """(source number, record) pairs and the lines that could not be parsed (every one, not just the first)."""
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise FormatError(f"Unsupported file type {suffix or '(none)'}: use {', '.join(READABLE)}.")
    if path.stat().st_size == 0:
        raise FormatError("The file is empty.")
    if suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001  # pyarrow raises many types for a bad file
            raise FormatError(f"Not a readable Parquet file ({exc.__class__.__name__}).") from None
        return [(i + 1, _plain(r)) for i, r in enumerate(frame.to_dict("records"))], []
    with open(path, "rb") as fh:
        if _looks_binary(fh.read(8192)):
            raise FormatError("This looks like a binary file, not text.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"Not UTF-8 text (byte {exc.start}).") from None
    if suffix in (".csv", ".tsv"):
        import io

        import pandas as pd

        try:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        except Exception as exc:  # noqa: BLE001
            raise FormatError(f"Not a readable {suffix[1:].upper()} file: {str(exc)[:200]}") from None
        return [(i + 2, r) for i, r in enumerate(frame.to_dict("records"))], []  # +2: the header is line 1
    if suffix == ".json" and text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip()[:1] == "{":  # maybe JSON lines saved as .json
                return _read_lines(text)
            raise FormatError(f"Not valid JSON: {exc.msg} at line {exc.lineno}.") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if not lists:
                raise FormatError("The JSON object holds no list of examples.")
            data = lists[0]
        if not isinstance(data, list):
            raise FormatError("Expected a JSON list of examples.")
        return [(i + 1, r) for i, r in enumerate(data)], []
    return _read_lines(text)


def _read_lines(text: str) -> tuple[list[tuple[int, Any]], list[Problem]]:
    records, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(n, "malformed", f"not valid JSON ({exc.msg}, column {exc.colno})"))
    return records, problems


def _plain(value: Any) -> Any:
    """Parquet hands back numpy arrays and scalars: make them lists and Python values."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def fields_found(records: Iterable[tuple[int, Any]], limit: int = 50) -> list[str]:
    seen: dict[str, None] = {}
    for i, (_, r) in enumerate(records):
        if i >= limit:
            break
        if isinstance(r, dict):
            seen.update(dict.fromkeys(map(str, r)))
    return list(seen)


def detect(records: list[tuple[int, Any]]) -> str | None:
    """The layout most of the first 50 records have, or None."""
    votes: dict[str, int] = {}
    for _, r in records[:50]:
        fmt = _detect_one(r)
        if fmt:
            votes[fmt] = votes.get(fmt, 0) + 1
    return max(votes, key=votes.get) if votes else None


def _detect_one(r: Any) -> str | None:
    if not isinstance(r, dict):
        return None
    if "chosen" in r and "rejected" in r:
        return "preference_conversational" if isinstance(_maybe_json(r["chosen"]), list) else "preference"
    if isinstance(r.get("messages"), list | str):
        return "no_robots" if "prompt" in r and "category" in r else "openai"
    if isinstance(r.get("conversations") or r.get("conversation"), list | str):
        return "sharegpt"
    if "instruction" in r and ("output" in r or "response" in r):
        return "alpaca"
    if "prompt" in r and ("completion" in r or "response" in r or "answer" in r):
        return "prompt_completion"
    return None


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{what} is {type(value).__name__}, not text")
    return value


def _maybe_json(value: Any) -> Any:
    """CSV and Parquet often store the message list as a JSON string."""
    if isinstance(value, str) and value.lstrip()[:1] == "[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise RowError("the messages column holds text that is not a JSON list") from None
    return value


def to_row(record: Any, fmt: str, source: int, mapping: dict[str, str] | None = None) -> Row:
    """One record in `fmt` (or mapped columns) as a Row; RowError says what is wrong with it."""
    if not isinstance(record, dict):
        raise RowError(f"expected an object with fields, got {type(record).__name__}")
    category = record.get("category")
    category = str(category) if category not in (None, "") else None
    if mapping:
        msgs = []
        for role in ("system", "user", "assistant"):
            col = mapping.get(role)
            if col:
                if col not in record:
                    raise RowError(f"no field {col!r}")
                text = _text(record.get(col), col)
                if text or role != "system":
                    msgs.append({"role": role, "content": text})
        cat_col = mapping.get("category")
        return Row(msgs, str(record.get(cat_col)) if cat_col and record.get(cat_col) not in (None, "") else category, source)
    if fmt in ("openai", "no_robots"):
        raw = _maybe_json(record.get("messages"))
        if not isinstance(raw, list):
            raise RowError("messages is not a list")
        msgs = []
        for m in raw:
            if not isinstance(m, dict):
                raise RowError("a message is not an object with role and content")
            msgs.append({"role": str(m.get("role", "")), "content": _text(m.get("content"), f"{m.get('role', 'a')} content")})
        return Row(msgs, category, source)
    if fmt == "sharegpt":
        raw = _maybe_json(record.get("conversations") or record.get("conversation"))
        if not isinstance(raw, list):
            raise RowError("conversations is not a list")
        msgs = []
        if record.get("system"):
            msgs.append({"role": "system", "content": _text(record["system"], "system")})
        for turn in raw:  # the hot loop of a 100k-row import: no work beyond the lookups
            if not isinstance(turn, dict):
                raise RowError("a turn is not an object with from and value")
            who = turn.get("from")
            if who is None:
                who = turn.get("role", "")
            role = SHAREGPT_ROLES.get(who) or SHAREGPT_ROLES.get(str(who).lower())
            if role is None:
                raise RowError(f"unknown speaker {who!r} (expected human/gpt/system)")
            value = turn.get("value")
            if value is None:
                value = turn.get("content")
            msgs.append({"role": role, "content": value if isinstance(value, str) else _text(value, f"{who} value")})
        return Row(msgs, category, source)
    if fmt == "alpaca":
        instruction = _text(record.get("instruction"), "instruction")
        extra_input = _text(record.get("input"), "input")
        user = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
        msgs = [{"role": "system", "content": _text(record["system"], "system")}] if record.get("system") else []
        msgs += [{"role": "user", "content": user},
                 {"role": "assistant", "content": _text(record.get("output", record.get("response")), "output")}]
        return Row(msgs, category, source)
    if fmt == "prompt_completion":
        answer = next((record[k] for k in ("completion", "response", "answer") if k in record), None)
        msgs = [{"role": "system", "content": _text(record["system"], "system")}] if record.get("system") else []
        msgs += [{"role": "user", "content": _text(record.get("prompt"), "prompt")},
                 {"role": "assistant", "content": _text(answer, "completion")}]
        return Row(msgs, category, source)
    raise RowError(f"unknown format {fmt!r}")


def normalise(records: list[tuple[int, Any]], fmt: str | None, mapping: dict[str, str] | None = None) -> tuple[list[Row], list[Problem]]:
    """Rows, and a problem (with its line) for every record that cannot be converted."""
    if fmt is None and not mapping:
        raise FormatError(
            "Unknown layout: fields found: " + (", ".join(fields_found(records)) or "none")
            + ". Map the columns (user, assistant, optional system and category) to import it."
        )
    if fmt in PREFERENCE_FORMATS and not mapping:
        raise PreferenceLayout("This file holds preference pairs (prompt, chosen, rejected): import it as a preference dataset.")
    rows, problems = [], []
    for source, rec in records:
        try:
            rows.append(to_row(rec, fmt or "", source, mapping))
        except RowError as exc:
            problems.append(Problem(source, "non_text" if "not text" in str(exc) else "malformed", str(exc)))
    return rows, problems


def to_sharegpt(row: Row) -> dict[str, Any]:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    out: dict[str, Any] = {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in row.messages]}
    if row.category:
        out["category"] = row.category
    return out


def _messages(raw: Any, what: str) -> list[dict[str, str]]:
    raw = _maybe_json(raw)
    if not isinstance(raw, list) or not raw:
        raise RowError(f"{what} is not a list of messages")
    out = []
    for m in raw:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RowError(f"a message of {what} is not an object with role system/user/assistant and content")
        out.append({"role": m["role"], "content": _text(m.get("content"), f"{what} {m['role']} content")})
    return out


def _answer(raw: Any, what: str) -> str:
    """One assistant answer: a string, or a list holding exactly one assistant message."""
    if isinstance(raw, str) and raw.lstrip()[:1] != "[":
        return raw
    msgs = _messages(raw, what)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise RowError(f"{what} must be one assistant message")
    return msgs[0]["content"]


def to_preference(record: Any, source: int) -> PreferenceRow:
    """One record in a TRL preference layout as a PreferenceRow; RowError says what is wrong with it.

    Explicit prompt (a string, or messages) with chosen/rejected as strings or one-message lists; or the implicit
    layout: no prompt, chosen and rejected whole conversations that share everything but their last answer."""
    if not isinstance(record, dict):
        raise RowError(f"expected an object with fields, got {type(record).__name__}")
    if "chosen" not in record or "rejected" not in record:
        raise RowError("a preference row needs chosen and rejected")
    prompt_raw = record.get("prompt")
    if prompt_raw is None:
        chosen_all, rejected_all = _messages(record["chosen"], "chosen"), _messages(record["rejected"], "rejected")
        if chosen_all[:-1] != rejected_all[:-1] or len(chosen_all) < 2:
            raise RowError("without a prompt, chosen and rejected must share every message but their last answer")
        prompt, chosen, rejected = chosen_all[:-1], _answer(chosen_all[-1:], "chosen"), _answer(rejected_all[-1:], "rejected")
    else:
        if isinstance(prompt_raw, str) and prompt_raw.lstrip()[:1] != "[":
            prompt = [{"role": "user", "content": prompt_raw}]
        else:
            prompt = _messages(prompt_raw, "prompt")
        if record.get("system") and prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": _text(record["system"], "system")})
        chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
    if prompt[-1]["role"] != "user":
        raise RowError("the prompt must end with the user's turn")
    if not prompt[-1]["content"].strip():
        raise RowError("the prompt's user turn is empty")
    if not chosen.strip() or not rejected.strip():
        raise RowError("chosen and rejected must both hold an answer")
    if chosen == rejected:
        raise RowError("chosen and rejected are the same answer")
    category = record.get("category")
    split = record.get("split") if record.get("split") in ("train", "eval") else None
    src = record.get("source") if isinstance(record.get("source"), dict) else {}
    return PreferenceRow(prompt, chosen, rejected, src, str(category) if category not in (None, "") else None, split, source)


def normalise_preferences(records: list[tuple[int, Any]]) -> tuple[list[PreferenceRow], list[Problem]]:
    """Preference rows, and a problem (with its line) for every record that cannot be read as one."""
    rows, problems = [], []
    for source, rec in records:
        try:
            rows.append(to_preference(rec, source))
        except RowError as exc:
            problems.append(Problem(source, "non_text" if "not text" in str(exc) else "malformed", str(exc)))
    return rows, problems
