"""Metrics shared by the tasks: perplexity, bits per character, BLEU / chrF / exact match, and the
captioning metrics (BLEU-1..4 against every reference, CIDEr-D).

BLEU and chrF are sacrebleu's, computed on detokenised hypotheses against the raw reference text (so
the numbers are comparable with published ones) and reported with sacrebleu's signature string, which
records how they were computed (tokenizer, casing, smoothing, version).
"""

from __future__ import annotations

import math


def perplexity(loss: float) -> float:
    """exp(loss in nats), capped so a diverged loss gives a huge number rather than an overflow."""
    return math.exp(min(loss, 700.0))


def bits_per_char(loss: float) -> float:
    """A per-character loss in nats, in bits."""
    return loss / math.log(2)


def bleu(hypotheses: list[str], references: list[str], *, lowercase: bool = False) -> tuple[float, str]:
    """Corpus BLEU (0-100) of one reference per hypothesis, and sacrebleu's signature string."""
    score, signature, _ = _bleu(hypotheses, references, lowercase=lowercase)
    return score, signature


def _bleu(hypotheses: list[str], references: list[str], *, lowercase: bool) -> tuple[float, str, float]:
    """BLEU, its signature, and the length ratio hypothesis / reference tokens that its brevity penalty
    reads (sacrebleu's `ratio`: below 1, the output is too short)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(lowercase=lowercase)
    score = metric.corpus_score(hypotheses, [references])
    ratio = score.sys_len / score.ref_len if score.ref_len else 0.0
    return float(score.score), str(metric.get_signature()), float(ratio)


def chrf(hypotheses: list[str], references: list[str], *, lowercase: bool = False) -> float:
    """Corpus chrF (0-100), sacrebleu's defaults (character 6-grams, beta 2)."""
    from sacrebleu.metrics import CHRF

    return float(CHRF(lowercase=lowercase).corpus_score(hypotheses, [references]).score)


def exact_match(hypotheses: list[str], references: list[str], *, lowercase: bool = False) -> float:
    """Percentage (0-100) of hypotheses identical to their reference, ends' whitespace ignored."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        return 0.0

    def norm(text: str) -> str:
        return text.strip().lower() if lowercase else text.strip()

    same = sum(norm(h) == norm(r) for h, r in zip(hypotheses, references))
    return 100.0 * same / len(references)


def translation_metrics(
    hypotheses: list[str], references: list[str], *, lowercase: bool = False
) -> dict[str, float | str]:
    """bleu, chrf, exact_match (all 0-100), length_ratio (hypothesis / reference tokens, BLEU's
    tokenisation) and the BLEU signature."""
    score, signature, ratio = _bleu(hypotheses, references, lowercase=lowercase)
    return {
        "bleu": score,
        "chrf": chrf(hypotheses, references, lowercase=lowercase),
        "exact_match": exact_match(hypotheses, references, lowercase=lowercase),
        "length_ratio": ratio,
        "signature": signature,
    }


def caption_metrics(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 (0-100) against all references, exact_match (0-100: equal to any reference) and,
    when pycocoevalcap is installed, CIDEr-D. Both sides are already lowercased words joined by spaces,
    so sacrebleu tokenizes by whitespace only (`<unk>` stays one word that matches nothing)."""
    from sacrebleu.metrics import BLEU

    most = max((len(refs) for refs in references), default=1)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    metrics = {}
    for n in range(1, 5):
        metric = BLEU(max_ngram_order=n, tokenize="none")
        metrics[f"bleu{n}"] = float(metric.corpus_score(hypotheses, streams).score)
    same = sum(h in refs for h, refs in zip(hypotheses, references))
    metrics["exact_match"] = 100.0 * same / max(len(hypotheses), 1)
    cider = cider_d(hypotheses, references)
    if cider is not None:
        metrics["cider_d"] = cider
    return metrics


def cider_d(hypotheses: list[str], references: list[list[str]]) -> float | None:
    """CIDEr-D (Vedantam et al. 2015) by pycocoevalcap's implementation, ×100; None when not installed."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return None
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [hypothesis] for i, hypothesis in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return 100.0 * float(score)
