"""The word-level LM (task=lm, seqtool/tasks/lm.py), the trainer's epochs, and Zaremba's experiments:
PTB lines with </s>, the vocabulary, perplexity per word against a hand computation, .gz, data_dir with
and without a test split, the epoch_decay schedule per step, resume in the middle of an epoch, decoding
words, and the bad inputs that end in one line and exit 2."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from seqtool import commands
from seqtool.config import compose
from seqtool.data.vocab import EOS, SPECIALS, UNK, WORDS_FILE
from seqtool.decode.settings import DecodeOptions, Sampling, SearchSettings
from seqtool.errors import UserError
from seqtool.models.char_rnn import CharRNN
from seqtool.schedules import LRSchedule
from seqtool.tasks.lm import WordLMTask, words_of
from tests.bad_inputs import outcome
from tests.helpers import quick_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a company said its shares rose fell N million year market new stock <unk>".split()


def ptb_lines(count: int, seed: int) -> list[str]:
    """Lines in PTB's layout: lowercased words, a space at each end, <unk> in the text."""
    rng = random.Random(seed)
    return [" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " " for _ in range(count)]


def ptb_dir(directory: Path, *, test: bool = True, gz: bool = False) -> Path:
    """A tiny PTB folder: ptb.train.txt (or .gz), ptb.valid.txt and, if asked, ptb.test.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": ptb_lines(200, 1), "valid": ptb_lines(30, 2)} | (
        {"test": ptb_lines(30, 3)} if test else {}
    )
    for split, lines in splits.items():
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if gz and split == "train":
            (directory / "ptb.train.txt.gz").write_bytes(gzip.compress(data))
        else:
            (directory / f"ptb.{split}.txt").write_bytes(data)
    return directory


def word_task(**changes) -> WordLMTask:
    options = dict(data_dir=None, train_path=None, val_path=None, test_path=None, path=None, hf_name=None,
                   hf_column="text", hf_split="train", embedded_default=False, max_chars=10**6,
                   val_fraction=0.1, test_fraction=0.1, max_vocab=None, batch_size=4, seq_len=5,
                   min_seq_len=5, eval_max_tokens=None)  # fmt: skip
    return WordLMTask(**(options | changes))


def lm_run(data_dir: Path, run_dir: Path, *extra: str, steps: int = 6) -> list[str]:
    """A seconds-long word LM run on a tiny PTB folder."""
    return ["task=lm", f"task.data_dir={data_dir}", f"run_dir={run_dir}", "task.batch_size=4",
            "task.seq_len=8", "task.min_seq_len=8", "model.embedding_size=16", "model.hidden_size=16",
            *quick_trainer(steps), *extra]  # fmt: skip


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ reading
def test_each_line_is_its_words_then_the_end_of_sentence_token():
    assert words_of([" no it was n't black monday ", "", " <unk> N "]) == [
        "no", "it", "was", "n't", "black", "monday", "</s>", "</s>", "<unk>", "N", "</s>",
    ]  # fmt: skip


def test_the_vocabulary_is_built_from_train_saved_and_read_back(tmp_path):
    data = ptb_dir(tmp_path / "ptb")
    task = word_task(data_dir=str(data))
    task.setup(tmp_path / "run")
    vocab = task.vocab
    assert vocab.tokens[:4] == SPECIALS and vocab.index["</s>"] == EOS and vocab.index["<unk>"] == UNK
    train_words = set(words_of((data / "ptb.train.txt").read_text().splitlines()))
    assert set(vocab.tokens) == train_words | set(SPECIALS)
    # the stream is the train words in order, </s> after each line
    first = (data / "ptb.train.txt").read_text().splitlines()[0].split()
    assert vocab.decode(task.splits["train"][: len(first) + 1].tolist()) == [*first, "</s>"]
    # a second setup of the same run reads vocab/words.json, even with other training text
    (tmp_path / "run" / WORDS_FILE).write_text(json.dumps({"kind": "word", "tokens": [*SPECIALS, "the"]}))
    again = word_task(data_dir=str(data))
    again.setup(tmp_path / "run")
    assert again.vocab.tokens == [*SPECIALS, "the"] and set(again.splits["val"].tolist()) <= {EOS, UNK, 4}


def test_max_vocab_keeps_the_most_frequent_words_and_the_rest_read_as_unk(tmp_path):
    task = word_task(data_dir=str(ptb_dir(tmp_path / "ptb")), max_vocab=7)
    task.setup(tmp_path / "run")
    assert len(task.vocab) == 7 and int(task.splits["train"].max()) == 6
    assert (task.splits["train"] == UNK).sum() > 0


def test_a_gzipped_train_file_reads_as_the_plain_one(tmp_path):
    plain, zipped = (
        word_task(data_dir=str(ptb_dir(tmp_path / "a"))),
        word_task(data_dir=str(ptb_dir(tmp_path / "b", gz=True))),
    )
    plain.setup(tmp_path / "run_a")
    zipped.setup(tmp_path / "run_b")
    assert plain.vocab.tokens == zipped.vocab.tokens
    assert torch.equal(plain.splits["train"], zipped.splits["train"])


def test_a_data_dir_with_a_test_file_has_a_test_split_and_one_without_refuses_it(tmp_path):
    with_test = word_task(data_dir=str(ptb_dir(tmp_path / "with")))
    with_test.setup(tmp_path / "run_with")
    assert set(with_test.splits) == {"train", "val", "test"}
    without = word_task(data_dir=str(ptb_dir(tmp_path / "without", test=False)))
    without.setup(tmp_path / "run_without")
    assert set(without.splits) == {"train", "val"}
    model = CharRNN(**without.model_kwargs(), **tiny_model())
    with pytest.raises(UserError, match=r"no test split .*use --split val"):
        without.evaluate(model, "test")


def test_files_named_one_by_one_are_read_like_a_data_dir(tmp_path):
    data = ptb_dir(tmp_path / "ptb")
    by_files = word_task(train_path=str(data / "ptb.train.txt"), val_path=str(data / "ptb.valid.txt"))
    by_files.setup(tmp_path / "run_files")
    by_dir = word_task(data_dir=str(data))
    by_dir.setup(tmp_path / "run_dir")
    assert torch.equal(by_files.splits["val"], by_dir.splits["val"]) and "test" not in by_files.splits


def test_one_text_is_cut_into_train_val_and_test_words_by_the_fractions(tmp_path):
    """task.path (or the hub, or the embedded default): one text, even of one long line, cut by word."""
    corpus = tmp_path / "one_line.txt"
    corpus.write_text(" ".join(f"w{i % 7}" for i in range(100)) + "\n")  # 100 words and one </s>
    task = word_task(path=str(corpus), val_fraction=0.2, test_fraction=0.1, batch_size=2)
    task.setup(tmp_path / "run")
    sizes = {split: len(ids) for split, ids in task.splits.items()}
    assert sizes == {"train": 70, "val": 20, "test": 11}  # 70 %, 20 %, the rest of 101 tokens
    assert task.vocab.decode(task.splits["test"][-2:].tolist()) == ["w1", "</s>"]  # word 99 is w1


# -------------------------------------------------------------------------------------- perplexity
class Bigram(nn.Module):
    """A fixed next-word table: logits of the next word given this one, no state."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = torch.randn(vocab_size, vocab_size, generator=torch.Generator().manual_seed(0))

    def forward(self, tokens, state=None):
        return self.table[tokens], state  # shape: [B, T, V]


def test_perplexity_is_exp_of_the_mean_nats_of_every_next_word_end_of_sentence_included(tmp_path):
    """One stream (batch_size 1): every word of val after the first is predicted once, </s> too."""
    task = word_task(data_dir=str(ptb_dir(tmp_path / "ptb")), batch_size=1)
    task.setup(tmp_path / "run")
    model = Bigram(len(task.vocab))
    ids = task.splits["val"].tolist()
    log_probs = torch.log_softmax(model.table, dim=-1)
    nats = [-float(log_probs[previous, word]) for previous, word in zip(ids, ids[1:])]
    assert ids.count(EOS) == 30  # one per line of ptb.valid.txt
    metrics = task.evaluate(model, "val")
    assert metrics["loss"] == pytest.approx(sum(nats) / len(nats), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(sum(nats) / len(nats)), rel=1e-6)


def test_bpe_pieces_read_back_as_the_words_and_mark_where_each_word_starts(tmp_path):
    """task.tokenizer=bpe: each sentence's pieces, then </s>; decoding gives the words back, and the
    pieces that start a word (and </s>) are exactly as many as the words and ends of sentence."""
    task = word_task(data_dir=str(ptb_dir(tmp_path / "ptb")), tokenizer="bpe", bpe_vocab_size=60)
    task.setup(tmp_path / "run")
    assert (tmp_path / "run" / "vocab" / "tokens.json").is_file()
    lines = (tmp_path / "ptb" / "ptb.valid.txt").read_text().splitlines()
    words = words_of(lines)
    ids = task.splits["val"].tolist()
    assert len(ids) > len(words)  # 60 pieces cannot spell every word whole
    assert task.vocab.decode(ids) == words
    assert int(task.vocab.starts_word[ids].sum()) == len(words)


def test_bpe_perplexity_is_per_word_from_the_same_nats_as_the_pieces(tmp_path):
    """With pieces, the loss is nats per piece and perplexity exp(the same total nats / words predicted)."""
    task = word_task(data_dir=str(ptb_dir(tmp_path / "ptb")), tokenizer="bpe", bpe_vocab_size=60,
                     batch_size=1)  # fmt: skip
    task.setup(tmp_path / "run")
    model = Bigram(len(task.vocab))
    ids = task.splits["val"].tolist()
    log_probs = torch.log_softmax(model.table, dim=-1)
    nats = [-float(log_probs[previous, piece]) for previous, piece in zip(ids, ids[1:])]
    words = int(task.vocab.starts_word[ids[1:]].sum())  # the first piece is read, not predicted
    metrics = task.evaluate(model, "val")
    assert metrics["loss"] == pytest.approx(sum(nats) / len(nats), rel=1e-6)
    assert metrics["piece_perplexity"] == pytest.approx(math.exp(sum(nats) / len(nats)), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(sum(nats) / words), rel=1e-6)


# ---------------------------------------------------------------------------------- epoch schedule
def test_the_epoch_decay_multiplier_of_every_step_against_a_hand_computation():
    """3 steps per epoch, flat for 2 epochs, then halved every epoch: epochs 1, 2 at 1, epoch 3 at
    0.5, epoch 4 at 0.25."""
    schedule = LRSchedule(kind="epoch_decay", warmup_steps=0, min_ratio=0.0, plateau_factor=0.5,
                          plateau_patience=1, decay_after_epoch=2, decay_factor=0.5)  # fmt: skip
    by_hand = [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert [schedule(step, 12, steps_per_epoch=3) for step in range(12)] == by_hand


def test_max_epochs_and_evaluation_per_epoch_follow_the_tasks_steps_per_epoch(tmp_path):
    data = ptb_dir(tmp_path / "ptb")
    run = tmp_path / "run"
    overrides = lm_run(data, run, "trainer.max_epochs=2", "trainer.eval_every=epoch",
                       "trainer.lr_schedule.kind=epoch_decay", "trainer.lr_schedule.warmup_steps=0",
                       "trainer.lr_schedule.decay_after_epoch=1", "trainer.lr_schedule.decay_factor=0.5",
                       steps=10**6)  # fmt: skip
    commands.train(compose(overrides))
    task = word_task(data_dir=str(data), seq_len=8, min_seq_len=8)
    task.setup(run)
    per_epoch = math.ceil((task.train_rows.shape[1] - 1) / 8)
    assert task.steps_per_epoch() == per_epoch
    logged = records(run)
    evaluations = [r for r in logged if "val_loss" in r]
    assert [r["step"] for r in evaluations] == [per_epoch, 2 * per_epoch]
    assert [r["epoch"] for r in evaluations] == [1.0, 2.0]
    peak = compose(overrides).trainer.optimizer.lr
    lrs = {r["step"]: r["lr"] for r in logged if "lr" in r}  # the lr of step s is set before it runs
    assert lrs == {
        s: pytest.approx(peak * (1.0 if s <= per_epoch else 0.5)) for s in range(1, 2 * per_epoch + 1)
    }


def test_a_run_resumed_in_the_middle_of_an_epoch_is_the_uninterrupted_run(tmp_path):
    data = ptb_dir(tmp_path / "ptb")
    common = ["trainer.lr_schedule.kind=epoch_decay", "trainer.lr_schedule.warmup_steps=0",
              "trainer.lr_schedule.decay_after_epoch=1", "trainer.lr_schedule.decay_factor=0.5",
              "trainer.max_epochs=2", "trainer.eval_every=epoch", "model.dropout=0.3"]  # fmt: skip
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    commands.train(compose(lm_run(data, straight, *common, steps=10**6)))
    per_epoch = max(r["step"] for r in records(straight)) // 2
    middle = per_epoch + per_epoch // 2  # half-way through the second epoch
    commands.train(compose(lm_run(data, halves, *common, steps=middle)))
    commands.train(commands.resume_config(halves, [f"trainer.max_steps={10**6}"]), resume=halves)

    def losses(run_dir):
        return {r["step"]: (r["loss"], r["lr"]) for r in records(run_dir) if "loss" in r}

    assert sorted(losses(halves)) == list(range(1, 2 * per_epoch + 1))
    assert losses(halves) == losses(straight)


def test_epochs_are_refused_for_a_task_without_them(tmp_path):
    """The synthetic memory problems draw new examples forever: no epoch to count."""
    result = outcome(["train", "task=memory", "model=recurrent", "trainer.max_epochs=2", "debug=smoke",
                      f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    assert result.code == 2 and len(result.lines()) == 1 and "has no epochs" in result.stderr


# ----------------------------------------------------------------------------------- model options
def tiny_model(**changes) -> dict:
    options = dict(cell="lstm", embedding_size=8, hidden_size=8, num_layers=2, dropout=0.0,
                   variational_dropout=False, layer_norm=False, weight_norm=False, forget_bias=None,
                   tie_weights=False, init_range=None)  # fmt: skip
    return options | changes


def test_init_range_draws_every_parameter_from_the_uniform_range():
    torch.manual_seed(0)
    model = CharRNN(vocab_size=50, **tiny_model(init_range=0.05))
    for name, parameter in model.named_parameters():
        assert parameter.abs().max() <= 0.05, name
        assert parameter.abs().max() > 0.04, name  # drawn, not left at torch's init or at zero
    with pytest.raises(ValueError, match="model.forget_bias=null"):
        CharRNN(vocab_size=50, **tiny_model(init_range=0.05, forget_bias=1.0))


# ------------------------------------------------------------------------------ the CLI, end to end
@pytest.mark.slow
def test_ptb_small_smoke_trains_evaluates_and_decodes_words(tmp_path):
    data = ptb_dir(tmp_path / "ptb", test=False)
    run = tmp_path / "run"
    result = outcome(["train", "experiment=ptb_small", "debug=smoke", f"task.data_dir={data}",
                      f"run_dir={run}", "device=cpu"])  # fmt: skip
    assert result.code == 0, result.stderr
    config = compose(["experiment=ptb_small", f"task.data_dir={data}"])
    assert (config.model.hidden_size, config.task.seq_len, config.trainer.max_epochs) == (200, 20, 13)
    evaluated = outcome(["eval", str(run), "--json"])
    assert evaluated.code == 0 and json.loads(evaluated.stdout)["perplexity"] > 1
    refused = outcome(["eval", str(run), "--split", "test"])
    assert refused.code == 2 and len(refused.lines()) == 1 and "no test split" in refused.stderr
    loaded = commands.load_run(run, device="cpu")
    options = DecodeOptions(search=SearchSettings(Sampling(), max_len=12, seed=1), prime="the company")
    [item] = next(loaded.task.decode_inputs(loaded.model, options, options.search))
    assert loaded.task.vocab.decode(item.value) == ["</s>", "the", "company"]  # a sentence's start
    decoded = outcome(["decode", str(run), "--prime", "the company", "--max-len", "12", "--seed", "1"])
    assert decoded.code == 0 and decoded.stdout.startswith("the company ")
    words = decoded.stdout.split()
    assert len(words) >= 6 and set(words) <= set(WORDS) | {"<pad>", "<s>", "<unk>"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["experiment=ptb_small"], "give task.data_dir=DIR"),
        (["task=lm", "task.data_dir=/no/such/folder"], "task.data_dir=/no/such/folder: no such directory"),
        (["task=lm", "task.data_dir={empty}"], "has no ptb.train.txt"),
        (["task=lm", "task.data_dir={blank}"], "holds no words (the train split is empty)"),
        (["task=lm", "task.train_path={blank}/ptb.valid.txt"], "task.val_path is missing"),
        (["task=lm", "task.data_dir={blank}", "task.path=x.txt"], "give exactly one data source"),
    ],
)
def test_bad_inputs_end_in_one_line_and_exit_2(tmp_path, arguments, message):
    empty, blank = tmp_path / "empty", tmp_path / "blank"
    empty.mkdir()
    ptb_dir(blank)
    (blank / "ptb.train.txt").write_text("\n\n  \n")  # lines, but no words
    argv = [a.format(empty=empty, blank=blank) for a in arguments]
    result = outcome(["train", *argv, "debug=smoke", f"run_dir={tmp_path / 'run'}"])
    assert result.code == 2, result.stderr
    assert len(result.lines()) == 1 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


# ------------------------------------------------------------------------------------ the recipe
@pytest.mark.slow
def test_the_ptb_word_lm_recipe_writes_its_page(tmp_path, shared_data):
    from tests.test_rnn_recipes import run_recipe

    if not (shared_data / "ptb").is_dir():
        pytest.skip("../shared/data/ptb is absent")
    report = run_recipe("ptb_word_lm", tmp_path, str(shared_data / "ptb"), "task.eval_max_tokens=2000")
    assert "120.7" in report and "**Verdict (measured).**" in report and "held out" in report
