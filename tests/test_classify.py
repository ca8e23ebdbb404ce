"""task=classify and model=classifier: the readers and their refusals, the metrics against a hand count,
the loss and its auxiliary LM term, decoding, and end-to-end runs on the embedded default and a TSV dir."""

from __future__ import annotations

import gzip
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from seqtool import commands
from seqtool.config import compose
from seqtool.data.labelled import (
    NEGATIVE,
    POSITIVE,
    LabelVocab,
    find_split,
    generated_reviews,
    read_hub,
    read_labelled,
)
from seqtool.errors import UserError
from seqtool.models.classifier import Classifier
from seqtool.tasks.classify import ClassifyBatch, ClassifyTask, classification_metrics
from tests.helpers import assert_user_error, quick_trainer, seqtool

pytestmark = pytest.mark.usefixtures("one_thread")
COLUMNS = {"text_column": "sentence", "label_column": "label"}


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ readers
def test_tsv_with_header_plain_and_gz(tmp_path):
    text = "sentence\tlabel\nit 's a charming  journey . \t1\nthe film is dull\t0\n"
    for name in ("train.tsv", "train.tsv.gz"):
        split = read_labelled(write(tmp_path / name, text), **COLUMNS)
        assert [(e.text, e.label, e.line) for e in split.examples] == [
            ("it 's a charming journey .", "1", 2),  # runs of spaces and SST's trailing one collapse
            ("the film is dull", "0", 3),
        ]


def test_csv_reads_quoted_commas_and_columns_in_any_order(tmp_path):
    path = write(tmp_path / "train.csv", 'label,sentence\npositive,"good, very good"\nnegative,bad\n')
    split = read_labelled(path, **COLUMNS)
    assert [(e.text, e.label) for e in split.examples] == [
        ("good, very good", "positive"),
        ("bad", "negative"),
    ]


def test_jsonl_takes_integer_or_string_labels(tmp_path):
    path = write(
        tmp_path / "dev.jsonl", '{"sentence": "fine", "label": 1}\n{"sentence": "poor", "label": "0"}\n'
    )
    assert [(e.text, e.label) for e in read_labelled(path, **COLUMNS).examples] == [
        ("fine", "1"),
        ("poor", "0"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", "a.tsv line 3 has 3 fields, the header 2"),
        ("a.tsv", "sentence\tlabel\ngood\t1\n\nbad\t0\n", "a.tsv line 3 is empty"),
        ("a.tsv", "sentence\tlabel\n \t1\n", "a.tsv line 2: the text is empty"),
        ("a.tsv", "sentence\tlabel\ngood\t \n", "a.tsv line 2: the label is empty"),
        ("a.csv", 'sentence,label\n"good, fine",1,2\n', "a.csv line 2 has 3 fields"),
        ("a.jsonl", '{"sentence": "good", "label": 1}\n{"sentence": "bad"\n', "a.jsonl line 2 is not JSON"),
        ("a.jsonl", '{"text": "good", "label": 1}\n', "a.jsonl line 1 needs the keys 'sentence' and 'label'"),
        (
            "test.tsv",
            "index\tsentence\n0\tgood\n",
            "no 'label' column (header: index, sentence) (its labels are held out",
        ),
        ("a.tsv", "sentence\tlabel\n", "holds no labelled sentences"),
        ("a.txt", "good\t1\n", "reads .tsv, .csv or .jsonl"),
    ],
)
def test_malformed_files_are_refused_naming_the_file_and_line(tmp_path, name, text, message):
    with pytest.raises(UserError) as error:
        read_labelled(write(tmp_path / name, text), **COLUMNS)
    assert message in str(error.value) and str(tmp_path / name) in str(error.value)


def test_a_hub_dataset_reads_class_label_names_and_refuses_held_out_labels(monkeypatch):
    """task.hub through a stand-in for `datasets` (no network here): a ClassLabel reads as its names."""

    class ClassLabel:
        names = ["negative", "positive"]

    class Dataset(dict):
        column_names = ["sentence", "label", "idx"]
        features = {"label": ClassLabel()}

    def load_dataset(name, config, split):
        assert (name, config) == ("glue", "sst2")
        labels = [1, 0] if split == "validation" else [-1]  # glue's test labels are -1: held out
        return Dataset(sentence=["a fine film ", "dull"][: len(labels)], label=labels)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    split = read_hub("glue", "sst2", "validation", **COLUMNS)
    assert [(e.text, e.label) for e in split.examples] == [("a fine film", "positive"), ("dull", "negative")]
    with pytest.raises(UserError, match="hub:glue:test row 1 has no label"):
        read_hub("glue", "sst2", "test", **COLUMNS)
    with pytest.raises(UserError, match="has no 'text'/'label' columns"):
        read_hub("glue", "sst2", "validation", text_column="text", label_column="label")


def test_a_split_is_found_under_the_name_its_corpus_ships_with(tmp_path):
    write(tmp_path / "train.tsv.gz", "sentence\tlabel\na\t1\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\na\t1\n")
    assert find_split(tmp_path, "train").name == "train.tsv.gz"
    assert find_split(tmp_path, "val").name == "dev.tsv"
    assert find_split(tmp_path, "test") is None


def test_a_label_unseen_in_train_is_refused_naming_its_line(tmp_path):
    train = read_labelled(write(tmp_path / "train.tsv", "sentence\tlabel\na\tpos\nb\tneg\n"), **COLUMNS)
    labels = LabelVocab.build(train)
    assert labels.labels == ["neg", "pos"]
    dev = read_labelled(write(tmp_path / "dev.tsv", "sentence\tlabel\na\tpos\nb\tneutral\n"), **COLUMNS)
    with pytest.raises(
        UserError, match=r"dev.tsv line 3: the label 'neutral' is not among the training labels"
    ):
        [labels.encode(example, dev.origin) for example in dev.examples]


def test_generated_reviews_follow_their_grammar():
    """The label is the opinion of the last clause, flipped by not: checked by re-reading each review."""
    examples = generated_reviews(300, seed=5)
    assert examples == generated_reviews(300, seed=5) and examples != generated_reviews(300, seed=6)
    for example in examples:
        deciding = example.text.split(" , but ")[-1].split()
        positive = any(word in POSITIVE for word in deciding)
        assert positive != any(word in NEGATIVE for word in deciding)  # one opinion word per clause
        assert example.label == ("positive" if positive != ("not" in deciding) else "negative"), example
    assert {e.label for e in examples} == {"positive", "negative"}
    assert any("not" in e.text for e in examples) and any(" but " in e.text for e in examples)


# ------------------------------------------------------------------------------------------ metrics
def test_accuracy_and_macro_f1_against_a_hand_count():
    truth = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 1, 0, 1, 2, 2])
    # class 0: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8; class 1: tp 1, fp 1, fn 1 -> F1 0.5;
    # class 2: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3
    metrics = classification_metrics(predicted, truth, 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


# ------------------------------------------------------------------------------------- model, loss
def classifier(encoder="rnn", pooling="attention", **changes) -> Classifier:
    options = dict(vocab_size=20, num_classes=3, encoder=encoder, pooling=pooling, embedding_size=8,
                   hidden_size=6, num_layers=1, dropout=0.0, cell="lstm", bidirectional=True, merge="concat",
                   variational_dropout=False, layer_norm=False, weight_norm=False, forget_bias=1.0, heads=2,
                   ffn_size=16, positions="learned", max_positions=32, norm_first=True, activation="gelu",
                   attention_size=5)  # fmt: skip
    return Classifier(**(options | changes))


def test_classifier_is_linear_over_the_pooled_encoder_output():
    torch.manual_seed(0)
    model = classifier().eval()
    tokens = torch.tensor([[4, 5, 6], [7, 8, 0]])
    logits, weights = model(tokens)
    sentence, expected_weights = model.pooling(model.encoder(tokens))
    torch.testing.assert_close(logits, sentence @ model.output.weight.T + model.output.bias)
    torch.testing.assert_close(weights, expected_weights)
    assert weights[1, 2] == 0 and torch.allclose(weights.sum(1), torch.ones(2))
    assert model(tokens[1:, :2])[0].allclose(logits[1:], atol=1e-6)  # padding changes nothing
    assert classifier("bag", "mean")(tokens)[1] is None


@pytest.mark.parametrize(("encoder", "pooling"), [("bag", "last"), ("transformer", "last"), ("rnn", "cls")])
def test_a_pooling_its_encoder_cannot_give_is_refused(encoder, pooling):
    with pytest.raises(ValueError, match=f"model.pooling={pooling} needs"):
        classifier(encoder, pooling)


class ConstantLM(nn.Module):
    """A classifier whose logits are given and whose LM loss is a known constant."""

    def __init__(self, logits: torch.Tensor, lm: float | None) -> None:
        super().__init__()
        self.logits = logits
        if lm is not None:
            self.aux_lm_loss = lambda tokens: torch.tensor(lm)

    def forward(self, tokens):
        return self.logits, None


def tiny_task(tokens: str = "word") -> ClassifyTask:
    return ClassifyTask(data_dir=None, train_path=None, val_path=None, test_path=None, hub=None,
                        hub_config=None, hub_splits={}, text_column="sentence", label_column="label",
                        tokens=tokens, vocab_size=100, min_frequency=1, lowercase=False, max_length=16,
                        max_tokens=64, bucket_size=64, generated_size=40, seed=1)  # fmt: skip


def test_loss_is_summed_cross_entropy_plus_the_weighted_lm_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batch = ClassifyBatch(tokens=torch.ones(3, 2, dtype=torch.long), labels=torch.tensor([0, 1, 0]))
    task = tiny_task()
    by_hand = sum(-math.log(math.exp(row[y]) / sum(math.exp(v) for v in row))
                  for row, y in zip(logits.tolist(), [0, 1, 0]))  # fmt: skip
    loss = task.loss(ConstantLM(logits, lm=None), batch)
    assert loss.count == 3 and float(loss.total) == pytest.approx(by_hand)
    task.aux_lm_weight = 0.5
    with_lm = task.loss(ConstantLM(logits, lm=2.0), batch)
    assert float(with_lm.total) == pytest.approx(by_hand + 0.5 * 3 * 2.0)  # total + λ · count · mean LM loss
    with pytest.raises(UserError, match="needs a model with a language-model loss"):
        task.loss(ConstantLM(logits, lm=None), batch)


def test_batches_are_bucketed_by_length_and_cover_the_split(tmp_path):
    task = tiny_task()
    task.setup(tmp_path)
    ids, classes = task.encoded["val"]
    seen = []
    for batch in task.batches("val", train=False):
        lengths = (batch.tokens != 0).sum(1).tolist()
        assert batch.tokens.numel() <= max(task.max_tokens, batch.tokens.size(1))
        seen += lengths
    assert seen == sorted(len(x) for x in ids) and len(seen) == len(classes)
    assert json.loads((tmp_path / "vocab" / "labels.json").read_text())["labels"] == ["negative", "positive"]
    assert (tmp_path / "vocab" / "words.json").is_file()


# ------------------------------------------------------------------------------------- end to end
SMALL = ["task=classify", "model=classifier", "model.embedding_size=16", "model.hidden_size=16",
         "model.attention_size=8", "task.generated_size=400", "task.max_tokens=512",
         "trainer.optimizer.lr=0.01"]  # fmt: skip


@pytest.mark.slow
def test_train_eval_decode_on_the_embedded_default(tmp_path):
    run_dir = tmp_path / "run"
    commands.train(
        compose([*SMALL, f"run_dir={run_dir}", "trainer.lr_schedule.warmup_steps=5", *quick_trainer(150)])
    )
    run = commands.load_run(run_dir, device="cpu")
    from seqtool.decode.settings import SearchSettings

    metrics = commands.evaluate(run, "test", SearchSettings())
    assert metrics["accuracy"] > 0.75 and set(metrics) >= {
        "loss",
        "accuracy",
        "macro_f1",
        "majority_accuracy",
    }
    assert (run_dir / "plots" / "confusion_test.png").stat().st_size > 0
    lines = "the film was not good\nhonestly , the plot was great\n"
    result = seqtool(
        "decode", str(run_dir), "--input", "-", "--plot-attention", str(tmp_path / "att"), stdin=lines
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[2] for row in rows] == lines.splitlines()
    assert all(row[0] in ("negative", "positive") and 0.5 <= float(row[1]) <= 1 for row in rows)
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == ["attention_1.png", "attention_2.png"]
    assert_user_error(
        seqtool("decode", str(run_dir), "--input", "-", stdin="good\n\n"), "standard input line 2 is empty"
    )


@pytest.mark.slow
def test_a_tsv_dir_without_test_split_trains_and_refuses_eval_on_test(tmp_path):
    data = tmp_path / "sst"
    data.mkdir()
    rows = "".join(f"{e.text}\t{int(e.label == 'positive')}\n" for e in generated_reviews(200, seed=3))
    write(data / "train.tsv.gz", "sentence\tlabel\n" + rows)
    write(data / "dev.tsv", "sentence\tlabel\n" + rows[:400].rsplit("\n", 1)[0] + "\n")
    run_dir = tmp_path / "run"
    overrides = [
        *SMALL,
        "model.encoder=bag",
        "model.pooling=mean",
        f"task.data_dir={data}",
        f"run_dir={run_dir}",
    ]
    commands.train(compose([*overrides, *quick_trainer(4)]))
    assert json.loads((run_dir / "vocab" / "labels.json").read_text())["labels"] == ["0", "1"]
    assert_user_error(
        seqtool("eval", str(run_dir), "--split", "test"), f"task.data_dir={data} has no test split"
    )
    from seqtool.decode.settings import DecodeOptions

    options = DecodeOptions(num=2, plot_dir=tmp_path / "att")  # decode --num 2 --plot-attention DIR
    with pytest.raises(UserError, match=r"this model pools by mean \(train with model.pooling=attention\)"):
        commands.decode(commands.load_run(run_dir, device="cpu"), options)
    write(data / "dev.tsv", "sentence\tlabel\ngood\t2\n")
    with pytest.raises(UserError, match=r"dev.tsv line 2: the label '2' is not among the training labels"):
        commands.train(compose([*overrides[:-1], f"run_dir={tmp_path / 'run2'}", *quick_trainer(2)]))


@pytest.mark.parametrize(("kind", "pieces"), [("char", ["t", "h", "e", "▁", "f"]), ("bpe", None)])
def test_char_and_bpe_tokens_are_trained_on_train_and_loaded_again(tmp_path, kind, pieces):
    task = tiny_task(kind)
    task.setup(tmp_path)
    text = "the film was not good"
    assert (tmp_path / "vocab" / "tokens.json").is_file() and not (tmp_path / "vocab" / "words.json").exists()
    ids = task.tokens.encode(text)
    assert len(task.tokens.pieces(text)) == len(ids) and 3 not in ids  # every piece known: no <unk>
    if pieces is not None:
        assert task.tokens.pieces(text)[:5] == pieces
    again = tiny_task(kind)
    again.setup(tmp_path)  # the saved tokenizer, not a new one
    assert again.tokens.encode(text) == ids and again.model_kwargs() == task.model_kwargs()
