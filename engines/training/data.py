"""Turn a chat JSONL file into token ids and labels for the trainer (worker side: needs a HF tokenizer)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.chat_templates import END_TOKENS, TEMPLATES, detect_family

IGNORE = -100
PROBE = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


class DataError(ValueError):
    """The dataset cannot be trained on; the message names the line."""


def load_rows(path: Path, splits: list[str | None] | None = None) -> list[list[dict[str, str]]]:
    """Rows of OpenAI-style messages from JSONL (`{"messages": [...]}` per line); errors name the line.

    `splits`, when given, receives each row's saved train/eval label (a dataset version split in the Datasets tab).
    """
    rows, problems = [], []
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {n}: not JSON ({exc.msg})")
                continue
            msgs = obj.get("messages") if isinstance(obj, dict) else obj
            why = _row_problem(msgs)
            if why:
                problems.append(f"line {n}: {why}")
            else:
                rows.append([{"role": m["role"], "content": m["content"]} for m in msgs])
                if splits is not None:
                    splits.append(obj.get("split") if isinstance(obj, dict) else None)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise DataError("; ".join(problems[:10]) + more)
    if not rows:
        raise DataError(f"{path.name} has no rows")
    return rows


def _row_problem(msgs: Any) -> str | None:
    if not isinstance(msgs, list) or not msgs:
        return "expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}"
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ("system", "user", "assistant"):
            return "each message needs a role (system/user/assistant) and text content"
    if not any(m["role"] == "assistant" for m in msgs):
        return "no assistant reply to learn from"
    return None


def split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """Shuffle with the seed and hold out `fraction` for evaluation (at least one row when asked)."""
    if fraction <= 0 or len(rows) < 2:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


@dataclass
class ChatFormat:
    family: str
    template: str
    kwargs: dict[str, str]

    @property
    def end_token(self) -> str:
        return END_TOKENS[self.family]


def chat_format(tokenizer: Any, choice: str = "auto") -> ChatFormat:
    """The marked template for this tokenizer's model, reproducing its stock template's default system prompt."""
    stock = getattr(tokenizer, "chat_template", None)
    family = detect_family(stock) if choice == "auto" else choice
    kwargs: dict[str, str] = {}
    if stock and family in ("chatml", "llama3"):
        kwargs["default_system"] = _stock_default_system(tokenizer, family)
    fmt = ChatFormat(family, TEMPLATES[family], kwargs)
    if stock and choice == "auto":
        ours = tokenizer.apply_chat_template(PROBE, chat_template=fmt.template, tokenize=False, **fmt.kwargs)
        theirs = tokenizer.apply_chat_template(PROBE, tokenize=False)
        if ours.strip() != theirs.strip():
            raise DataError(
                f"The marked {family} template does not reproduce this model's chat template "
                f"(ours {ours[:120]!r} vs the model's {theirs[:120]!r}); choose chat_template explicitly."
            )
    return fmt


def _stock_default_system(tokenizer: Any, family: str) -> str:
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    head, tail_ = ("<|im_start|>system\n", "<|im_end|>") if family == "chatml" else (
        "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")
    start = text.find(head)
    if start < 0 or start > text.find("x"):
        return ""
    start += len(head)
    return text[start:text.find(tail_, start)]


def encode_row(tokenizer: Any, fmt: ChatFormat, messages: list[dict[str, str]], max_len: int, responses_only: bool) -> dict:
    """input_ids + labels; labels are -100 outside the assistant replies (+ end token) when responses_only."""
    out = tokenizer.apply_chat_template(
        messages, chat_template=fmt.template, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True, **fmt.kwargs,
    )
    ids = list(out["input_ids"])
    mask = list(out["assistant_masks"])
    labels = [t if (m or not responses_only) else IGNORE for t, m in zip(ids, mask, strict=True)]
    return {"input_ids": ids[:max_len], "labels": labels[:max_len], "mask": mask[:max_len]}


def masked_text(tokenizer: Any, ids: list[int], mask: list[int]) -> str:
    return tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False)


def check_mask(tokenizer: Any, fmt: ChatFormat, messages: list[dict[str, str]]) -> None:
    """The trained tokens must decode to exactly the assistant replies, each followed by the end token."""
    enc = encode_row(tokenizer, fmt, messages, 10**9, True)
    got = masked_text(tokenizer, enc["input_ids"], enc["mask"])
    want = "".join(
        (m["content"].strip() if fmt.family != "chatml" else m["content"]) + fmt.end_token
        for m in messages if m["role"] == "assistant"
    )
    if got != want:
        raise DataError(f"assistant mask check failed for the {fmt.family} template: trained text {got[:200]!r}, expected {want[:200]!r}")


def pack(examples: list[dict], max_len: int) -> list[dict]:
    """Greedy packing of whole examples into sequences of at most max_len tokens."""
    packed, cur = [], {"input_ids": [], "labels": []}
    for ex in examples:
        if cur["input_ids"] and len(cur["input_ids"]) + len(ex["input_ids"]) > max_len:
            packed.append(cur)
            cur = {"input_ids": [], "labels": []}
        cur["input_ids"] = cur["input_ids"] + ex["input_ids"]
        cur["labels"] = cur["labels"] + ex["labels"]
    if cur["input_ids"]:
        packed.append(cur)
    return packed


def build_examples(spec: Any, tokenizer: Any, dataset_path: Path) -> tuple[list[dict], list[dict], ChatFormat, dict]:
    """Load, split, check the mask, encode (and pack) a dataset; returns train, eval, format and counts."""
    labels: list[str | None] = []
    rows = load_rows(dataset_path, labels)
    fmt = chat_format(tokenizer, spec.chat_template)
    check_mask(tokenizer, fmt, next(r for r in rows if any(m["role"] == "assistant" for m in r)))
    if spec.eval_split > 0 and "eval" in labels:  # the dataset's own saved split wins over a random one
        train_rows = [r for r, lab in zip(rows, labels, strict=True) if lab != "eval"]
        eval_rows = [r for r, lab in zip(rows, labels, strict=True) if lab == "eval"]
    else:
        train_rows, eval_rows = split(rows, spec.eval_split, spec.seed)

    def encode(part: list) -> tuple[list[dict], int]:
        out, dropped = [], 0
        for msgs in part:
            ex = encode_row(tokenizer, fmt, msgs, spec.max_seq_len, spec.train_on_responses_only)
            if all(label == IGNORE for label in ex["labels"]):
                dropped += 1  # truncation cut every trained token: nothing to learn from this row
                continue
            out.append({"input_ids": ex["input_ids"], "labels": ex["labels"]})
        return out, dropped

    train, dropped_t = encode(train_rows)
    evals, dropped_e = encode(eval_rows)
    if spec.packing:
        train, evals = pack(train, spec.max_seq_len), pack(evals, spec.max_seq_len)
    if not train:
        raise DataError(f"No training rows left after truncation to {spec.max_seq_len} tokens; raise max_seq_len.")
    for ex in train + evals:
        ex["attention_mask"] = [1] * len(ex["input_ids"])
    counts = {
        "rows": len(rows), "train_rows": len(train_rows), "eval_rows": len(eval_rows), "dropped_rows": dropped_t + dropped_e,
        "train_tokens": sum(len(e["input_ids"]) for e in train), "template": fmt.family,
    }
    return train, evals, fmt, counts


def load_preference_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a preference dataset version (the studio writes TRL's conversational layout: prompt messages,
    chosen and rejected one assistant message each; imports are normalised to it), each checked."""
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                prompt, chosen, rejected = obj["prompt"], obj["chosen"], obj["rejected"]
                ok = (isinstance(prompt, list) and prompt and prompt[-1].get("role") == "user"
                      and all(isinstance(x, list) and len(x) == 1 and x[0].get("role") == "assistant" for x in (chosen, rejected)))
            except (ValueError, KeyError, TypeError, AttributeError):
                ok = False
            if not ok:
                raise DataError(f"Line {n} is not a preference row (prompt messages ending with the user's turn, "
                                "chosen and rejected one assistant message each).")
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "split": obj.get("split")})
    if not rows:
        raise DataError("The preference dataset has no rows.")
    return rows


def build_preference_sets(spec: Any, dataset_path: Path) -> tuple[list[dict], list[dict], dict]:
    """Preference rows in TRL's conversational layout, split like chat rows: the dataset's own saved eval split when
    it has one (and an eval share is asked for), else a seeded share; returns train, eval and counts."""
    rows = load_preference_rows(dataset_path)
    if spec.eval_split > 0 and any(r["split"] == "eval" for r in rows):
        train_rows, eval_rows = [r for r in rows if r["split"] != "eval"], [r for r in rows if r["split"] == "eval"]
    else:
        train_rows, eval_rows = split(rows, spec.eval_split, spec.seed)

    def trl(part: list) -> list[dict]:
        return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in part]

    counts = {"rows": len(rows), "train_rows": len(train_rows), "eval_rows": len(eval_rows), "dropped_rows": 0,
              "train_tokens": 0, "template": spec.chat_template}
    return trl(train_rows), trl(eval_rows), counts


def data_message(counts: dict, trainable: int, total: int) -> str:
    """One log line a person can read: rows, tokens, template, trainable share."""
    dropped = f", {counts['dropped_rows']} dropped (too long)" if counts.get("dropped_rows") else ""
    return (
        f"{counts['rows']} rows ({counts['train_rows']} train, {counts['eval_rows']} eval{dropped}), "
        f"{counts['train_tokens']:,} train tokens, {counts['template']} template; "
        f"training {trainable / 1e6:.2f}M of {total / 1e6:.1f}M parameters ({100 * trainable / max(total, 1):.2f}%)"
    )
