"""task=mlm: BERT's masking statistics, packing, next-sentence pairs, per-batch determinism, the loss
over masked positions only, the metrics, data sources, and a smoke train + eval + decode."""

import gzip
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqtool.errors import UserError
from seqtool.models.bert import IGNORE, Bert, Masking
from seqtool.tasks.mlm import IS_NEXT, NOT_NEXT, MaskedLMTask, pack, pieces
from tests.helpers import assert_user_error, quick_trainer, seqtool

pytestmark = pytest.mark.usefixtures("one_thread")

MASK_INDEX, FIRST_WORD = 6, 7
# 60 lines of 3..8 words over 50 words, each seen in train; no two packed runs are alike
LINES = [" ".join(f"w{(7 * n + 3 * k) % 50}" for k in range(3 + n % 6)) for n in range(60)]


def task(tmp_path, *, lines=LINES, **keys) -> MaskedLMTask:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = dict(path=str(corpus), data_dir=None, hf_name=None, hf_column="text", hf_split="train",
                   tsv_column=None, max_chars=10**6, val_fraction=0.2, test_fraction=0.0, max_vocab=1000,
                   seq_len=16, batch_size=4, mask_rate=0.15, mask_token_share=0.8, random_token_share=0.1,
                   next_sentence=False, eval_max_sequences=100, seed=3) | keys  # fmt: skip
    built = MaskedLMTask(**options)
    built.setup(tmp_path / "run")
    return built


def originals(batch) -> torch.Tensor:
    """The tokens before corruption: the targets where chosen, the tokens elsewhere."""
    return torch.where(batch.targets != IGNORE, batch.targets, batch.tokens)


# ------------------------------------------------------------------------------------------ masking
def test_each_row_chooses_round_rate_of_its_words_never_specials_or_padding():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(FIRST_WORD, 200, (500, 30), generator=generator)
    lengths = torch.randint(1, 31, (500,), generator=generator)
    tokens[torch.arange(30) >= lengths[:, None]] = 0  # padding
    tokens[:, 0] = 5  # a [SEP] first, and <unk>s: specials, never chosen
    tokens[::3, 1] = 3
    _, targets = Masking().apply(tokens, mask_index=MASK_INDEX, vocab_size=200, generator=generator)
    chosen = targets != IGNORE
    assert not chosen[tokens < FIRST_WORD].any()
    words = (tokens >= FIRST_WORD).sum(1)
    want = torch.where(words > 0, torch.floor(0.15 * words + 0.5).clamp(min=1), 0)
    assert torch.equal(chosen.sum(1), want.long())
    assert (chosen.sum(1)[words > 0] >= 1).all()  # at least one word per sequence
    assert torch.equal(targets[chosen], tokens[chosen])


def test_the_chosen_split_80_10_10_within_binomial_tolerance():
    vocab = 5000  # a random replacement rarely draws the same word again
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(FIRST_WORD, vocab, (400, 50), generator=generator)
    corrupted, targets = Masking().apply(tokens, mask_index=MASK_INDEX, vocab_size=vocab, generator=generator)
    chosen = targets != IGNORE
    n = int(chosen.sum())
    masked = (corrupted[chosen] == MASK_INDEX).float().mean()
    kept = (corrupted[chosen] == tokens[chosen]).float().mean()
    replaced = 1 - masked - kept
    words = vocab - FIRST_WORD
    for observed, p in ((masked, 0.8), (replaced, 0.1 * (1 - 1 / words)), (kept, 0.1 + 0.1 / words)):
        assert abs(float(observed) - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 standard errors
    assert ((corrupted[~chosen]) == tokens[~chosen]).all()
    swapped = chosen & (corrupted != tokens) & (corrupted != MASK_INDEX)
    assert (corrupted[swapped] >= FIRST_WORD).all()  # a random replacement is a word, never a special


def test_always_mask_puts_mask_at_every_chosen_position():
    tokens = torch.randint(FIRST_WORD, 100, (50, 20), generator=torch.Generator().manual_seed(2))
    corrupted, targets = Masking(0.3, 1.0, 0.0).apply(tokens, mask_index=MASK_INDEX, vocab_size=100)
    chosen = targets != IGNORE
    assert (corrupted[chosen] == MASK_INDEX).all() and (corrupted[~chosen] == tokens[~chosen]).all()


# ------------------------------------------------------------------------------------ data, batches
def test_long_lines_are_cut_into_pieces_and_pieces_packed_within_the_budget():
    assert pieces(["a b c d e f g", "", "h i"], 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"], ["h", "i"]]
    assert pack([[1, 2], [3, 4, 5], [6], [7, 8, 9, 10, 11]], 5) == [[1, 2, 3, 4, 5], [6], [7, 8, 9, 10, 11]]


def test_one_long_line_still_gives_val_and_test_pieces(tmp_path):
    mlm = task(tmp_path, lines=[" ".join(f"w{n}" for n in range(140))], val_fraction=0.1, test_fraction=0.1)
    assert [len(mlm.runs[split]) for split in ("train", "val", "test")] == [8, 1, 1]  # 10 pieces of 14


def test_sequences_end_in_sep_fit_seq_len_and_keep_the_text_in_order(tmp_path):
    mlm = task(tmp_path)
    assert mlm.vocab.tokens[4:7] == ["[CLS]", "[SEP]", "[MASK]"]
    assert mlm.model_kwargs() == {
        "vocab_size": len(mlm.vocab),
        "mask_index": MASK_INDEX,
        "next_sentence": False,
    }
    for batch in mlm.batches("val", train=False):
        for row in originals(batch).tolist():
            row = [t for t in row if t != 0]
            assert row[-1] == mlm.sep and mlm.sep not in row[:-1] and len(row) + 1 <= 16
            text = " ".join(mlm.vocab.decode(row[:-1]))
            assert text in " ".join(LINES)  # consecutive lines, in order
        assert (batch.segments == 0).all()


def test_train_batches_are_a_function_of_their_index_so_resume_is_exact(tmp_path):
    first = task(tmp_path)
    stream = first.batches("train", train=True)
    taken = [next(stream) for _ in range(6)]
    again = task(tmp_path)
    again.load_state_dict({"position": 4})
    resumed = next(again.batches("train", train=True))
    for a, b in zip((taken[4].tokens, taken[4].targets), (resumed.tokens, resumed.targets)):
        assert torch.equal(a, b)
    assert not torch.equal(taken[0].targets, taken[1].targets)
    assert first.state_dict() == {"position": 6}


def test_an_epoch_shows_every_training_run_once(tmp_path):
    mlm = task(tmp_path)
    runs = len(mlm.runs["train"])
    seen = [mlm._shuffled(slot, runs) for slot in range(runs)]
    assert sorted(seen) == list(range(runs)) and seen != list(range(runs))


def test_val_batches_are_fixed(tmp_path):
    mlm = task(tmp_path)
    a, b = list(mlm.batches("val", train=False)), list(mlm.batches("val", train=False))
    assert all(torch.equal(x.tokens, y.tokens) and torch.equal(x.targets, y.targets) for x, y in zip(a, b))


def test_next_sentence_pairs_the_true_next_run_or_a_random_other_half_the_time(tmp_path):
    mlm = task(tmp_path, next_sentence=True, seq_len=20, batch_size=8)
    runs = [tuple(run) for run in mlm.runs["train"]]
    labels = []
    stream = mlm.batches("train", train=True)
    for _ in range(40):
        batch = next(stream)
        for row, segments, label in zip(
            originals(batch).tolist(), batch.segments.tolist(), batch.is_next.tolist()
        ):
            real = [i for i, t in enumerate(row) if t != 0]
            seps = [i for i in real if row[i] == mlm.sep]
            assert len(seps) == 2 and seps[1] == real[-1]
            a, b = tuple(row[: seps[0]]), tuple(row[seps[0] + 1 : seps[1]])
            assert [segments[i] for i in real] == [0] * (seps[0] + 1) + [1] * (seps[1] - seps[0])
            k = runs.index(a)
            assert (runs.index(b) == k + 1) == (label == IS_NEXT)
            assert label in (IS_NEXT, NOT_NEXT) and runs.index(b) != k
            labels.append(label)
    n = len(labels)
    assert abs(labels.count(NOT_NEXT) / n - 0.5) < 4 * math.sqrt(0.25 / n)


# ---------------------------------------------------------------------------------- loss, metrics
def tiny_bert(mlm: MaskedLMTask) -> Bert:
    torch.manual_seed(0)
    sizes = dict(d_model=16, heads=2, num_layers=1, ffn_size=32, dropout=0.0, max_positions=32)
    return Bert(**sizes, norm_first=False, **mlm.model_kwargs())


@pytest.mark.parametrize("next_sentence", [False, True])
def test_the_loss_counts_only_the_masked_positions(tmp_path, next_sentence):
    mlm = task(tmp_path, next_sentence=next_sentence, seq_len=20)
    model = tiny_bert(mlm)
    batch = next(mlm.batches("train", train=True))
    loss = mlm.loss(model, batch)
    logits, next_logits = model(batch.tokens, batch.segments)  # every position
    chosen = (batch.targets != IGNORE).nonzero().tolist()
    want = sum(-F.log_softmax(logits[b, t], -1)[batch.targets[b, t]] for b, t in chosen)
    if next_sentence:  # + count × the mean NSP cross-entropy: the trainer's mean is L_MLM + L_NSP
        want = want + len(chosen) * F.cross_entropy(next_logits, batch.is_next)
    assert loss.count == len(chosen) < batch.tokens.numel() / 2
    torch.testing.assert_close(loss.total, want)


class Copier(nn.Module):
    """Predicts, at every position, the token it is given (a BERT that learned nothing but copying)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens, segments=None, *, predict=None):
        logits = 50.0 * F.one_hot(tokens, self.vocab_size).float()
        return (logits if predict is None else logits[predict]), None


def test_metrics_reward_a_right_guess_and_only_it(tmp_path):
    unchanged = task(tmp_path, mask_token_share=0.0, random_token_share=0.0)  # chosen words stay as they are
    copier = Copier(len(unchanged.vocab))
    metrics = unchanged.evaluate(copier, "val")
    assert metrics["masked_accuracy"] == 1.0 and metrics["loss"] < 1e-6
    masked = task(tmp_path, mask_token_share=1.0, random_token_share=0.0)  # copying guesses [MASK]
    metrics = masked.evaluate(copier, "val")
    assert metrics["masked_accuracy"] == 0.0
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def test_nsp_accuracy_is_reported_with_next_sentence(tmp_path):
    mlm = task(tmp_path, next_sentence=True, seq_len=20)
    metrics = mlm.evaluate(tiny_bert(mlm), "val")
    assert set(metrics) == {"loss", "perplexity", "masked_accuracy", "nsp_accuracy"}
    assert 0 <= metrics["nsp_accuracy"] <= 1


# ------------------------------------------------------------------------------------- data sources
def test_data_dir_reads_a_tsv_column_with_the_dev_file_as_val(tmp_path):
    folder = tmp_path / "sst"
    folder.mkdir()
    rows = "sentence\tlabel\n" + "".join(f"{line} \t{n % 2}\n" for n, line in enumerate(LINES))
    (folder / "train.tsv.gz").write_bytes(gzip.compress(rows.encode()))
    (folder / "dev.tsv").write_text("sentence\tlabel\nw1 w2 \t1\n", encoding="utf-8")
    mlm = task(tmp_path, path=None, data_dir=str(folder), tsv_column="sentence")
    assert mlm.runs["val"] == [[mlm.vocab.index["w1"], mlm.vocab.index["w2"]]]
    assert "label" not in mlm.vocab and "0" not in mlm.vocab
    with pytest.raises(UserError, match="no column 'text'"):
        task(tmp_path, path=None, data_dir=str(folder), tsv_column="text")


@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_text_without_words_is_a_user_error(tmp_path, content):
    with pytest.raises(UserError, match="empty|no words"):
        task(tmp_path, lines=[content])


@pytest.mark.parametrize(
    "keys, fragment",
    [({"mask_rate": 0.0}, "task.mask_rate"), ({"mask_rate": 1.5}, "task.mask_rate"),
     ({"mask_token_share": 0.9, "random_token_share": 0.2}, "random_token_share"),
     ({"data_dir": "x"}, "give one"), ({"hf_name": "x"}, "give one")],
)  # fmt: skip
def test_bad_keys_are_refused(tmp_path, keys, fragment):
    with pytest.raises(ValueError, match=fragment):
        task(tmp_path, **keys)


# --------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_smoke_train_eval_and_decode_fill_the_masks(tmp_path):
    run = tmp_path / "run"
    trained = seqtool("train", "model=bert", "task=mlm", "debug=smoke", "task.max_chars=100000",
                      f"run_dir={run}", *quick_trainer(6))  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    evaluated = seqtool("eval", str(run), "--split", "val")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "masked_accuracy" in evaluated.stdout and "perplexity" in evaluated.stdout
    decoded = seqtool(
        "decode", str(run), "--input", "-", stdin="def [MASK] ( self ) :\nimport [MASK] [SEP] x\n"
    )
    assert decoded.returncode == 0, decoded.stderr
    first, second = decoded.stdout.splitlines()
    assert "[MASK]" not in decoded.stdout
    assert first.startswith("def ") and first.endswith(" ( self ) :") and len(first.split()) == 6
    assert second.startswith("import ") and second.endswith(" [SEP] x")
    refused = seqtool("decode", str(run), "--prime", "no mask here")
    assert_user_error(refused, "has no [MASK] to fill")


@pytest.mark.slow
def test_a_bad_mask_rate_is_one_line_and_exit_2(tmp_path):
    result = seqtool("train", "model=bert", "task=mlm", "task.mask_rate=1.5", f"run_dir={tmp_path / 'run'}")
    assert_user_error(result, "task.mask_rate=1.5 must be in (0, 1]")
