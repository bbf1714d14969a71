"""Preference pairs (prompt with its context, chosen, rejected) from judgements the studio already stores.

Sources:
  * battle      — an arena battle the person voted A or B on (ties and "both bad" never make a pair);
  * thumbs      — two answers to the same user turn, one 👍 and one 👎;
  * regenerated — two answers to the same user turn, one kept (the active one, or one with 👍) and one regenerated
                  away (or 👎): the kept / liked one is preferred;
  * judge       — a batch evaluation's example the LLM judge decided the same way in both orders (a judge
                  that disagrees with itself across orders records a tie, which never makes a pair).
Two answers with the same verdict (both 👍, both 👎, both regenerated away; 👍 and kept) never make a pair.

An *edited answer* is not representable today: Chat lets a person edit only their own messages (an edit retires
the question and its answers and asks again), never an assistant's answer, so there is no "answer and its edited
version" to pair. An edited question's old answers still pair by their own 👍/👎.

Privacy: conversations, their feedback and battles are private to their owner (engines.accounts), so a person
builds only from their own — an admin too, like every chat-derived dataset (engines.datasets.from_chats).
Batch evaluations are team-visible, so their judged pairs are open to everyone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from engines.accounts import Actor
from engines.datasets.formats import PreferenceRow
from engines.datasets.validate import fold
from storage import battles, evals
from storage.models import Conversation, EvalResult, EvalRun, Message

SOURCES = ("battle", "thumbs", "regenerated", "judge")
USABLE = ("stop", "length", None)  # finished answers; stopped, failed, streaming or client-given ones are left out


@dataclass(frozen=True)
class PreferenceFilters:
    """What to build from. Empty tuples mean "any"; times are naive UTC like the stored rows."""

    sources: tuple[str, ...] = SOURCES
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    models: tuple[str, ...] = ()  # keep a pair when either answer came from one of these models
    category: str | None = None  # battles' and evaluation examples' category (chats have none)
    voters: tuple[str, ...] = ()  # who judged: a person's name (battle, thumbs, regenerated) or a judge model
    eval_ids: tuple[int, ...] = ()  # which batch evaluations to read (empty: every judged one)

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"Unknown preference source {unknown[0]!r}: use {', '.join(SOURCES)}.")


@dataclass
class BuildReport:
    """The rows built, how many each source gave, and what was left out and why."""

    rows: list[PreferenceRow]
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def build_preferences(actor: Actor, filters: PreferenceFilters | None = None, *, dedupe: bool = True,
                      eval_fraction: float = 0.0, seed: int = 0) -> BuildReport:
    """Every preference pair the actor may build from, filtered, near-duplicates removed, split into train/eval."""
    f = filters or PreferenceFilters()
    if not 0.0 <= eval_fraction <= 0.5:
        raise ValueError("The eval share is between 0 and 0.5.")
    report = BuildReport(rows=[])
    if "battle" in f.sources:
        _battle_pairs(actor, f, report)
    if "thumbs" in f.sources or "regenerated" in f.sources:
        _feedback_pairs(actor, f, report)
    if "judge" in f.sources:
        _judge_pairs(f, report)
    kept = [r for r in report.rows if _wanted(r, f, report)]
    if dedupe:
        kept = remove_duplicates(kept, report)
    report.rows = assign_split(kept, eval_fraction, seed=seed)
    report.counts = {s: sum(1 for r in report.rows if r.source.get("kind") == s) for s in SOURCES}
    return report


def _wanted(row: PreferenceRow, f: PreferenceFilters, report: BuildReport) -> bool:
    if fold(row.chosen) == fold(row.rejected):  # the same text (a model against itself): no preference to learn
        report.skip("same_answer")
        return False
    if f.models and not set(row.source.get("models", {}).values()) & set(f.models):
        report.skip("other_models")
        return False
    if f.voters and row.source.get("voter") not in f.voters:
        report.skip("other_voters")
        return False
    if f.category and row.category != f.category:
        report.skip("other_category")
        return False
    return True


def _in_time(at: dt.datetime | None, f: PreferenceFilters) -> bool:
    if at is None:
        return f.since is None and f.until is None
    return (f.since is None or at >= f.since) and (f.until is None or at < f.until)


# ---- battles ------------------------------------------------------------------------------------------------

def _battle_pairs(actor: Actor, f: PreferenceFilters, report: BuildReport) -> None:
    for b in battles.voted_by(actor.id, since=f.since, until=f.until, category=f.category):
        if f.models and not {b.model_a, b.model_b} & set(f.models):
            report.skip("other_models")  # before the vote: a tie between other models is not this build's tie
            continue
        if b.vote not in ("a", "b"):
            report.skip("tie_or_both_bad")
            continue
        if not (b.answer_a or "").strip() or not (b.answer_b or "").strip():
            report.skip("no_answer")
            continue
        params = evals.loads(b.params, {})
        system = (params.get("system") or "").strip() if isinstance(params, dict) else ""
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": b.prompt}]
        win, lose = ("a", "b") if b.vote == "a" else ("b", "a")
        report.rows.append(PreferenceRow(
            prompt, getattr(b, f"answer_{win}"), getattr(b, f"answer_{lose}"),
            {"kind": "battle", "battle_id": b.id, "vote": b.vote, "blind": bool(b.blind),
             "models": {"chosen": getattr(b, f"model_{win}"), "rejected": getattr(b, f"model_{lose}")},
             "voter": b.user_name or actor.name, "at": b.voted_at.isoformat() if b.voted_at else None},
            category=b.category))


# ---- 👍 / 👎 and regenerations --------------------------------------------------------------------------------

POSITIVE, NEGATIVE = ("up", "kept"), ("down", "regenerated")


def _feedback_pairs(actor: Actor, f: PreferenceFilters, report: BuildReport) -> None:
    judged = (Message.select(Message.conversation).join(Conversation)
              .where((Conversation.owner_id == actor.id) & (Message.role == "assistant")
                     & ((Message.feedback != 0) | (Message.active == False))))  # noqa: E712
    for conv in Conversation.select().where(Conversation.id.in_(judged)).order_by(Conversation.id):
        msgs = list(Message.select().where(Message.conversation == conv.id).order_by(Message.id))
        for user, answers in _turns(msgs):
            _turn_pairs(actor, conv, msgs, user, answers, f, report)


def _turns(msgs: list[Message]) -> list[tuple[Message, list[Message]]]:
    """Each user message with the assistant messages stored after it and before the next user message
    (regenerating keeps the question and adds a new answer after the retired ones; editing adds a new question)."""
    out: list[tuple[Message, list[Message]]] = []
    for m in msgs:
        if m.role == "user":
            out.append((m, []))
        elif m.role == "assistant" and out:
            out[-1][1].append(m)
    return out


def verdict(answer: Message, later_answers: int) -> str | None:
    """up | down (a person's thumb) | kept (the active answer) | regenerated (retired while another followed) | None."""
    if answer.feedback == 1:
        return "up"
    if answer.feedback == -1:
        return "down"
    if answer.active:
        return "kept"
    return "regenerated" if later_answers else None


def _context(conv: Conversation, msgs: list[Message], user: Message) -> list[dict[str, str]] | None:
    """The messages the model saw before this question, or None when history no longer tells.

    Retiring marks a message and everything after it, so an active question's context is exactly the active
    messages before it. A retired question's context is known only when nothing before it was ever retired."""
    before = [m for m in msgs if m.id < user.id]
    if not user.active and not all(m.active for m in before):
        return None
    out = [{"role": "system", "content": conv.system_prompt.strip()}] if (conv.system_prompt or "").strip() else []
    for m in before:
        if m.active and not (m.role == "assistant" and not m.content):
            out.append({"role": m.role, "content": m.content})
    return out + [{"role": "user", "content": user.content}]


def _turn_pairs(actor: Actor, conv: Conversation, msgs: list[Message], user: Message, answers: list[Message],
                f: PreferenceFilters, report: BuildReport) -> None:
    usable = [(a, verdict(a, len(answers) - i - 1)) for i, a in enumerate(answers)
              if a.finish_reason in USABLE and a.content.strip()]
    judged = [(a, v) for a, v in usable if v is not None]
    if len(judged) < 2:
        return
    context = None
    for i, (a, va) in enumerate(judged):
        for b, vb in judged[i + 1:]:
            if va == vb:
                report.skip("same_verdict")
                continue
            if (va in POSITIVE) == (vb in POSITIVE):
                report.skip("no_clear_preference")  # 👍 and kept, or 👎 and regenerated away
                continue
            (good, vg), (bad, vr) = ((a, va), (b, vb)) if va in POSITIVE else ((b, vb), (a, va))
            kind = "thumbs" if (vg, vr) == ("up", "down") else "regenerated"
            if kind not in f.sources:
                continue
            if not _in_time(max(good.created_at, bad.created_at), f):
                report.skip("outside_dates")
                continue
            context = context if context is not None else _context(conv, msgs, user)
            if context is None:
                report.skip("context_unknown")
                continue
            report.rows.append(PreferenceRow(
                context, good.content, bad.content,
                {"kind": kind, "conversation_id": conv.id, "user_message_id": user.id,
                 "message_ids": {"chosen": good.id, "rejected": bad.id}, "verdicts": {"chosen": vg, "rejected": vr},
                 "models": {"chosen": good.model, "rejected": bad.model}, "voter": actor.name,
                 "at": max(good.created_at, bad.created_at).isoformat()}))


# ---- batch evaluations judged in both orders ------------------------------------------------------------------

def _judge_pairs(f: PreferenceFilters, report: BuildReport) -> None:
    runs = EvalRun.select().where(EvalRun.judge.is_null(False))
    if f.eval_ids:
        runs = runs.where(EvalRun.id.in_(list(f.eval_ids)))
    for run in runs.order_by(EvalRun.id):
        if not _in_time(run.finished_at or run.created_at, f):
            report.skip("outside_dates")
            continue
        models, examples = evals.loads(run.models, []), evals.loads(run.examples, [])
        if len(models) < 2:
            continue
        baseline = models[0]
        rows = {(r.example, r.model): r for r in EvalResult.select().where(EvalResult.eval_run == run.id)}
        for (i, model), r in sorted(rows.items()):
            if model == baseline or r.judge_outcome is None:
                continue
            base = rows.get((i, baseline))
            if r.judge_outcome not in ("win", "loss"):
                report.skip("judge_tie_or_split")
                continue
            if i >= len(examples) or base is None or not (r.output or "").strip() or not (base.output or "").strip():
                report.skip("no_answer")
                continue
            ex = examples[i]
            prompt = [dict(m) for m in ex.get("messages", [])]
            if not prompt or prompt[-1].get("role") != "user":
                report.skip("no_answer")
                continue
            (good, gm), (bad, bm) = ((r, model), (base, baseline)) if r.judge_outcome == "win" else ((base, baseline), (r, model))
            report.rows.append(PreferenceRow(
                prompt, good.output, bad.output,
                {"kind": "judge", "eval_id": run.id, "example": i, "judge": run.judge, "outcome": r.judge_outcome,
                 "models": {"chosen": gm, "rejected": bm}, "voter": run.judge,
                 "at": (run.finished_at or run.created_at).isoformat()},
                category=ex.get("category")))


# ---- clean-up and split -----------------------------------------------------------------------------------------

def prompt_key(row: PreferenceRow) -> str:
    """The prompt with case, spacing and punctuation folded away (system messages ignored)."""
    return fold("".join(m["content"] for m in row.prompt if m["role"] != "system"))


def remove_duplicates(rows: Iterable[PreferenceRow], report: BuildReport | None = None) -> list[PreferenceRow]:
    """Drop near-duplicate pairs (same prompt and answers up to case, spacing and punctuation; the first is kept)
    and both of two pairs that contradict each other (the same two answers preferred both ways)."""
    rows = list(rows)
    seen: dict[tuple[str, str, str], int] = {}
    keep: list[int] = []
    contradicted: set[int] = set()
    for i, r in enumerate(rows):
        p, c, j = prompt_key(r), fold(r.chosen), fold(r.rejected)
        if (p, c, j) in seen:
            if report:
                report.skip("near_duplicate")
            continue
        if (p, j, c) in seen:
            contradicted.update({i, seen[(p, j, c)]})
            if report:
                report.skip("contradicting", 2)
        seen[(p, c, j)] = i
        keep.append(i)
    return [rows[i] for i in keep if i not in contradicted]


def assign_split(rows: list[PreferenceRow], eval_fraction: float, *, seed: int = 0) -> list[PreferenceRow]:
    """Mark rows train or eval: whole prompts go to one side (a prompt never leaks across), chosen by a seeded hash,
    so the same rows and seed always give the same split; at least one prompt is held out when asked for any."""
    if eval_fraction <= 0:
        for r in rows:
            r.split = "train"
        return rows
    keys = sorted({prompt_key(r) for r in rows}, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n_eval = min(len(keys) - 1, max(1, round(eval_fraction * len(keys)))) if len(keys) > 1 else 0
    held = set(keys[:n_eval])
    for r in rows:
        r.split = "eval" if prompt_key(r) in held else "train"
    return rows


def preview(rows: list[PreferenceRow], limit: int = 50) -> list[dict[str, object]]:
    """Flat rows for a table: the last question, both answers, the source and split."""
    out = []
    for r in rows[:limit]:
        out.append({"prompt": r.prompt[-1]["content"], "context_turns": len(r.prompt) - 1, "chosen": r.chosen,
                    "rejected": r.rejected, "source": r.source.get("kind"), "models": json.dumps(r.source.get("models", {})),
                    "voter": r.source.get("voter"), "split": r.split})
    return out
