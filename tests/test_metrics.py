"""BLEU and chrF are sacrebleu's own numbers; exact match and perplexity are what they say."""

import json
import math
import subprocess
import sys

import pytest

from seqtool.metrics import bits_per_char, bleu, chrf, exact_match, perplexity, translation_metrics

HYPOTHESES = ["The cat sat on the mat.", "A dog runs in the park!", "two men , talking", "Hello"]
REFERENCES = ["The cat sat on the mat.", "A dog is running in the park.", "Two men are talking.", "Hi"]


def sacrebleu_cli(tmp_path, metric: str, *extra: str) -> float:
    """sacrebleu's command line on files, as a reader of the paper would run it."""
    (tmp_path / "hyp.txt").write_text("\n".join(HYPOTHESES) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(REFERENCES) + "\n")
    command = [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt")]
    result = subprocess.run(
        [*command, "-m", metric, "-w", "6", *extra], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)["score"]


def test_bleu_equals_sacrebleu_on_the_same_files(tmp_path):
    score, signature = bleu(HYPOTHESES, REFERENCES)
    assert score == pytest.approx(sacrebleu_cli(tmp_path, "bleu"), abs=1e-6)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_lowercased_bleu_says_so_in_its_signature(tmp_path):
    score, signature = bleu(HYPOTHESES, REFERENCES, lowercase=True)
    assert score == pytest.approx(sacrebleu_cli(tmp_path, "bleu", "-lc"), abs=1e-6)
    assert "case:lc" in signature


def test_chrf_equals_sacrebleu(tmp_path):
    assert chrf(HYPOTHESES, REFERENCES) == pytest.approx(sacrebleu_cli(tmp_path, "chrf"), abs=1e-6)


def test_exact_match_is_a_percentage():
    assert exact_match(HYPOTHESES, REFERENCES) == 25.0
    assert exact_match(["Hi "], ["hi"], lowercase=True) == 100.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_translation_metrics_carry_the_signature_as_text():
    metrics = translation_metrics(HYPOTHESES, REFERENCES)
    assert set(metrics) == {"bleu", "chrf", "exact_match", "length_ratio", "signature"}
    assert isinstance(metrics["signature"], str) and metrics["bleu"] == bleu(HYPOTHESES, REFERENCES)[0]


def test_length_ratio_is_the_hypothesis_over_reference_tokens_of_bleu():
    """BLEU's 13a tokens (punctuation split off): 7+7+4+1 = 19 hypothesis tokens, 7+8+5+1 = 21 reference."""
    assert translation_metrics(HYPOTHESES, REFERENCES)["length_ratio"] == pytest.approx(19 / 21)
    assert translation_metrics(["a b c d"], ["a b"])["length_ratio"] == 2.0


def test_perplexity_and_bits_per_char():
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(1e6) == math.exp(700.0)  # capped, not an overflow
    assert bits_per_char(math.log(2.0)) == pytest.approx(1.0)
