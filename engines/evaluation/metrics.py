"""Reference metrics (ROUGE-L, BLEU, exact match) and length statistics for batch evaluation."""

from __future__ import annotations

import re
import statistics
import unicodedata
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)


class UnicodeWords:
    """rouge-score's default tokenizer keeps only [a-z0-9]: Korean (or any non-Latin) text would score zero."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer  # imports nltk: deferred until an evaluation scores

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeWords())


def normalise(text: str) -> str:
    """For exact match: NFKC, case-folded, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


def reference_scores(output: str, reference: str) -> dict[str, float | bool]:
    """ROUGE-L F1 (0–1), sentence BLEU (0–100, sacrebleu 'intl' tokens) and normalised exact match."""
    import sacrebleu

    rouge = _rouge().score(reference, output)["rougeL"].fmeasure
    bleu = sacrebleu.sentence_bleu(output, [reference], tokenize="intl").score if output.strip() else 0.0
    return {"rouge_l": float(rouge), "bleu": float(bleu), "exact": normalise(output) == normalise(reference)}


def corpus_bleu(outputs: list[str], references: list[str]) -> float:
    """Corpus BLEU, the usual figure to report (sentence BLEU is noisy on short answers)."""
    import sacrebleu

    if not outputs:
        return 0.0
    return float(sacrebleu.corpus_bleu(outputs, [references], tokenize="intl").score)


def length_stats(texts: list[str]) -> dict[str, float]:
    """Answer length in characters and words: mean, median, p90, max."""
    if not texts:
        return {}
    chars = sorted(len(t) for t in texts)
    words = [len(_WORD.findall(t)) for t in texts]
    return {
        "chars_mean": statistics.fmean(chars), "chars_median": statistics.median(chars),
        "chars_p90": chars[min(len(chars) - 1, int(0.9 * len(chars)))], "chars_max": chars[-1],
        "words_mean": statistics.fmean(words),
    }
