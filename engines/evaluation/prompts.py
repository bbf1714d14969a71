"""Prompt sets for batch evaluation: a dataset version's eval split, a training run's eval split, or pasted prompts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAX_EXAMPLES = 2000


class PromptSetError(ValueError):
    """The prompt set cannot be built; the message says why, for the user."""


@dataclass
class Example:
    """What the models are asked (every message before the last assistant reply) and that reply as the reference."""

    messages: list[dict[str, str]]
    reference: str | None = None
    category: str | None = None

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_conversation(messages: list[dict[str, str]], category: str | None = None) -> Example | None:
    """Cut a training conversation at its last assistant turn; None when there is no user turn before it."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return Example([dict(m) for m in messages], None, category) if any(m.get("role") == "user" for m in messages) else None
    prompt = [dict(m) for m in messages[:last]]
    if not any(m["role"] == "user" for m in prompt):
        return None
    return Example(prompt, messages[last]["content"], category)


def from_pasted(text: str) -> list[Example]:
    """One prompt per line; `prompt<TAB>reference` adds a reference; JSONL lines with messages are taken as they are."""
    out = []
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptSetError(f"line {n}: looks like JSON but is not ({exc.msg})") from None
            ex = _from_object(obj, n)
        else:
            prompt, _, reference = line.partition("\t")
            ex = Example([{"role": "user", "content": prompt.strip()}], reference.strip() or None)
        out.append(ex)
    if not out:
        raise PromptSetError("Paste at least one prompt (one per line).")
    return _bounded(out)


def _from_object(obj: Any, n: int) -> Example:
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        ex = from_conversation(obj["messages"], obj.get("category"))
    elif isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
        ex = Example([{"role": "user", "content": obj["prompt"]}], obj.get("reference") or obj.get("completion"), obj.get("category"))
    else:
        ex = None
    if ex is None:
        raise PromptSetError(f"line {n}: expected {{\"prompt\": ...}} or {{\"messages\": [...]}} with a user turn")
    return ex


def from_rows(rows: list[Any], split: str | None = "eval") -> list[Example]:
    """Examples from dataset rows (engines.datasets Row); `split` keeps only rows labelled with it."""
    picked = [r for r in rows if split is None or r.extra.get("split") == split]
    out = [ex for r in picked if (ex := from_conversation(r.messages, r.category))]
    return _bounded(out)


def from_dataset_version(settings: Any, version: Any, split: str | None = "eval") -> list[Example]:
    from engines.datasets.versions import load_version

    try:
        if version.format == "preference":  # the chosen answer is the reference
            from engines.datasets.preference_files import load_preference_version

            examples = _bounded([Example([dict(m) for m in r.prompt], r.chosen, r.category)
                                 for r in load_preference_version(settings, version)
                                 if split is None or (r.split or "train") == split])
        else:
            examples = from_rows(load_version(settings, version), split)
    except PermissionError as exc:  # the row points outside the data folder (OutsideDataFolder)
        raise PromptSetError(str(exc)) from None
    if not examples:
        raise PromptSetError(
            f"{version.dataset.name} v{version.version} has no rows in its {split} split: "
            "mark some rows as eval in the Datasets tab, or pick 'all rows'.")
    return examples


def from_training_run(run: Any, spec: dict[str, Any], dataset_path: Path) -> tuple[list[Example], str]:
    """The eval split the run trained with (its saved labels, or the same seeded random hold-out); note for the user."""
    from engines.datasets.files import file_kind
    from engines.training.data import load_preference_rows, load_rows, split

    labels: list[str | None] = []
    if file_kind(dataset_path) == "preference":  # a DPO / ORPO run: the prompt, with the chosen answer as reference
        pairs = load_preference_rows(dataset_path)
        rows, labels = [p["prompt"] + p["chosen"] for p in pairs], [p["split"] for p in pairs]
    else:
        rows = load_rows(dataset_path, labels)
    fraction, seed = float(spec.get("eval_split") or 0), int(spec.get("seed") or 0)
    if fraction > 0 and "eval" in labels:
        held = [r for r, lab in zip(rows, labels, strict=True) if lab == "eval"]
        note = f"the {len(held)} rows labelled eval in {dataset_path.name}"
    elif fraction > 0:
        _, held = split(rows, fraction, seed)
        note = f"the {len(held)} rows run {run.name} held out for evaluation (seed {seed})"
    else:
        held = rows[: min(len(rows), 32)]
        note = (f"run {run.name} had no eval split: the first {len(held)} rows of {dataset_path.name}, "
                "which it trained on (expect flattering scores)")
    return _bounded([ex for m in held if (ex := from_conversation(m))]), note


def _bounded(examples: list[Example]) -> list[Example]:
    if len(examples) > MAX_EXAMPLES:
        raise PromptSetError(f"{len(examples)} prompts: at most {MAX_EXAMPLES} per evaluation (use a smaller split).")
    return examples


@dataclass
class PromptSet:
    examples: list[Example]
    source: str  # shown in the run list and logged to MLflow
    dataset_version_id: int | None = None
    training_run_id: int | None = None
    note: str = ""


def build_prompt_set(settings: Any, source: str, *, version_id: Any = None, split: str = "eval", run_id: Any = None,
                     pasted: str = "", limit: int = 0) -> PromptSet:
    """The prompt set a user picked: 'dataset' (a saved version), 'run' (a fine-tune's eval split) or 'pasted'."""
    if source == "dataset":
        from storage import datasets

        version = datasets.get_version(int(version_id)) if str(version_id or "").isdigit() else None
        if version is None:
            raise PromptSetError("Pick a saved dataset version (save one in the Datasets tab first).")
        which = None if split == "all" else "eval"
        ps = PromptSet(from_dataset_version(settings, version, which), f"{version.dataset.name} v{version.version} · {split}",
                       dataset_version_id=version.id)
    elif source == "run":
        from engines.datasets.files import resolve_dataset
        from storage import runs

        run = runs.get_run(int(run_id)) if str(run_id or "").isdigit() else None
        if run is None:
            raise PromptSetError("Pick a fine-tune run.")
        spec = json.loads(run.spec or "{}")
        examples, note = from_training_run(run, spec, resolve_dataset(settings, run.dataset))
        ps = PromptSet(examples, f"run {run.name} · eval split", dataset_version_id=run.dataset_version_id,
                       training_run_id=run.id, note=note)
    elif source == "pasted":
        ps = PromptSet(from_pasted(pasted), "pasted prompts")
    else:
        raise PromptSetError(f"Unknown prompt source {source!r}.")
    if limit and limit > 0 and len(ps.examples) > limit:
        ps.examples = ps.examples[: int(limit)]
        ps.source += f" · first {int(limit)}"
    if not ps.examples:
        raise PromptSetError("The prompt set is empty.")
    return ps
