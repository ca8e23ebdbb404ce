"""Slot filling and intent detection (task=tagging, model=tagger): the readers and their refusals, the
seqeval metrics on a hand example, the joint loss against a hand computation, the tagger's equations,
decode's output, and seconds-long train + eval + decode runs on the embedded corpus and a tiny JointBERT
directory."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqtool.cli import app
from seqtool.data.tagged import (
    TaggedSentence,
    embedded_splits,
    find_splits,
    read_conll,
    read_jointbert,
    read_split,
)
from seqtool.decode.generate import DecodeInput
from seqtool.errors import UserError
from seqtool.models.tagger import Tagger
from seqtool.tasks.tagging import IGNORE, Tagging, TaggingTask, tagging_metrics
from tests.helpers import assert_user_error, quick_trainer, seqtool

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [
    ("show flights from boston to denver", "O O O B-fromloc.city_name O B-toloc.city_name", "atis_flight"),
    ("fares to new york", "O O B-toloc.city_name I-toloc.city_name", "atis_airfare"),
    ("flights on monday", "O O B-depart_date.day_name", "atis_flight"),
]


def write_split(directory: Path, rows=SENTENCES, *, gz: bool = False) -> Path:
    """A JointBERT split directory: seq.in, seq.out, label (gzipped when gz)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, column in (("seq.in", 0), ("seq.out", 1), ("label", 2)):
        text = "".join(row[column] + "\n" for row in rows)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def write_corpus(root: Path, *, test: bool = False) -> Path:
    write_split(root / "train", SENTENCES * 4)
    write_split(root / "dev", SENTENCES)
    if test:
        write_split(root / "test", SENTENCES[:2])
    return root


# ------------------------------------------------------------------------------------------ readers
@pytest.mark.parametrize("gz", [False, True])
def test_a_jointbert_split_gives_words_tags_and_intents(tmp_path, gz):
    sentences = read_jointbert(write_split(tmp_path / "train", gz=gz))
    assert sentences[1] == TaggedSentence(
        ["fares", "to", "new", "york"], ["O", "O", "B-toloc.city_name", "I-toloc.city_name"], "atis_airfare"
    )
    assert len(sentences) == 3


def test_conll_sentences_end_at_blank_lines_and_docstart_is_skipped(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(
        "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\nPeter NNP B-PER\n", encoding="utf-8"
    )
    assert read_conll(path) == [
        TaggedSentence(["EU", "rejects"], ["B-ORG", "O"], None),
        TaggedSentence(["Peter"], ["B-PER"], None),
    ]
    gzipped = tmp_path / "dev.txt.gz"
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    assert read_split(gzipped) == read_conll(path)


def test_a_corpus_directory_maps_dev_to_val_and_may_lack_test(tmp_path):
    splits = find_splits(write_corpus(tmp_path))
    assert splits == {"train": tmp_path / "train", "val": tmp_path / "dev"}
    (tmp_path / "test.txt").write_text("a O\n", encoding="utf-8")
    assert find_splits(tmp_path)["test"] == tmp_path / "test.txt"


def jointbert_with(tmp_path: Path, file: str, lines: str) -> Path:
    directory = write_split(tmp_path / "train")
    (directory / file).write_text(lines, encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    "file, lines, fragment",
    [
        ("seq.out", "O O O B-fromloc.city_name O B-toloc.city_name\nO O B-toloc.city_name\nO O B-x\n",
         "seq.out, line 2: 3 tags for the 4 words"),
        ("seq.in", "show flights from boston to denver\n\nflights on monday\n", "seq.in, line 2: empty line"),
        ("seq.out", "O O O B-fromloc.city_name O B-toloc.city_name\nO O X-city I-city\nO O O\n",
         "seq.out, line 2: the tag 'X-city' is not O, B-slot or I-slot"),
        ("label", "atis_flight\natis_airfare x\natis_flight\n", "label, line 2: 'atis_airfare x'"),
        ("label", "atis_flight\n\natis_flight\n", "label, line 2: empty line"),
        ("label", "atis_flight\n", "label has 1 lines but"),
    ],
)  # fmt: skip
def test_malformed_jointbert_files_name_the_file_and_line(tmp_path, file, lines, fragment):
    with pytest.raises(UserError, match=fragment):
        read_jointbert(jointbert_with(tmp_path, file, lines))


def test_missing_files_and_malformed_conll_rows_are_refused(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "seq.in").write_text("a b\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"seq.out: no such file"):
        read_jointbert(tmp_path / "train")
    with pytest.raises(UserError, match="no such file or directory"):
        read_split(tmp_path / "absent")
    conll = tmp_path / "bad.txt"
    conll.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt, line 2: 'rejects' has no tag column"):
        read_conll(conll)
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no sentences"):
        read_split(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="has no val split"):
        find_splits(tmp_path)


def test_the_embedded_corpus_holds_the_notes_example_with_bio_spans():
    train = embedded_splits(400, seed=0)["train"]
    example = next(s for s in train if " ".join(s.words).startswith("show flights from"))
    assert example.intent == "atis_flight" and example.tags[:3] == ["O", "O", "O"]
    multiword = next(s for s in train if "salt" in s.words)
    at = multiword.words.index("salt")
    assert multiword.words[at : at + 3] == ["salt", "lake", "city"]
    assert [t[:2] for t in multiword.tags[at : at + 3]] == ["B-", "I-", "I-"]
    assert embedded_splits(400, seed=0) == embedded_splits(400, seed=0)


# ------------------------------------------------------------------------------------------ metrics
def test_slot_f1_counts_a_half_right_span_as_wrong_and_an_unseen_tag_as_missed():
    gold = [
        TaggedSentence(["to", "new", "york", "monday"],
                       ["O", "B-toloc.city_name", "I-toloc.city_name", "B-day"], "atis_flight"),
        TaggedSentence(["from", "boston"], ["O", "B-fromloc.city_name"], "atis_airfare"),
        TaggedSentence(["on", "friday"], ["O", "B-return_date.day_name"], "atis_flight"),  # unseen in train
    ]  # fmt: skip
    predicted = [
        Tagging(["O", "B-toloc.city_name", "O", "B-day"], "atis_flight"),  # new york cut short: wrong span
        Tagging(["O", "B-fromloc.city_name"], "atis_flight"),  # spans right, intent wrong
        Tagging(["O", "O"], "atis_flight"),  # the model has no unit for the unseen tag
    ]
    metrics = tagging_metrics(gold, predicted, joint=True)
    # gold spans: new york, monday, boston, friday (4); predicted: new (wrong), monday, boston (3)
    precision, recall = 2 / 3, 2 / 4
    assert metrics["slot_precision"] == pytest.approx(100 * precision)
    assert metrics["slot_recall"] == pytest.approx(100 * recall)
    assert metrics["slot_f1"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert metrics["intent_accuracy"] == pytest.approx(100 * 2 / 3)
    assert metrics["sentence_accuracy"] == 0.0  # 1: span, 2: intent, 3: unseen tag
    slots_only = tagging_metrics(gold, predicted, joint=False)
    assert "intent_accuracy" not in slots_only and slots_only["sentence_accuracy"] == pytest.approx(100 / 3)


# ------------------------------------------------------------------------------------- task, model
def make_task(tmp_path: Path, run: str = "run", **changes) -> TaggingTask:
    """A task on the tiny corpus under tmp_path/atis (written once), set up in tmp_path/run."""
    corpus = tmp_path / "atis"
    if not corpus.exists():
        write_corpus(corpus)
    task = TaggingTask(**(task_options(str(corpus)) | changes))
    task.setup(tmp_path / run)
    return task


def task_options(data_dir: str | None) -> dict:
    return dict(data_dir=data_dir, train_path=None, val_path=None, test_path=None, joint=True,
                intent_weight=0.5, min_count=1, max_tokens=100, bucket_size=10, default_size=50,
                preview_sentences=2, seed=0)  # fmt: skip


def make_tagger(task: TaggingTask, **changes) -> Tagger:
    torch.manual_seed(0)
    options = dict(cell="lstm", embedding_size=8, hidden_size=6, num_layers=1, bidirectional=True,
                   merge="concat", intent_pooling="last", dropout=0.0, variational_dropout=False,
                   layer_norm=False, weight_norm=False, forget_bias=1.0) | changes  # fmt: skip
    return Tagger(**task.model_kwargs(), **options).eval()


def test_vocabularies_are_saved_and_a_second_setup_loads_them(tmp_path):
    task = make_task(tmp_path)
    assert task.model_kwargs() == {"vocab_size": 4 + 11, "num_tags": 5, "num_intents": 2}
    saved = json.loads((tmp_path / "run" / "vocab" / "tags.json").read_text())["labels"]
    assert saved == ["B-depart_date.day_name", "B-fromloc.city_name", "B-toloc.city_name",
                     "I-toloc.city_name", "O"]  # fmt: skip
    (tmp_path / "atis" / "train" / "seq.in").unlink()  # the second setup must not read the data
    again = TaggingTask(**task_options(str(tmp_path / "atis")))
    again.setup(tmp_path / "run")
    assert again.words.tokens == task.words.tokens and again.tags.labels == task.tags.labels


def test_the_joint_loss_is_mean_slot_ce_plus_weighted_mean_intent_ce(tmp_path):
    task = make_task(tmp_path, intent_weight=0.5)
    model = make_tagger(task)
    batch = next(iter(task.batches("val", train=False)))
    loss = task.loss(model, batch)
    tag_logits, intent_logits = model(batch.tokens)
    # by hand: every word's -log p(tag), averaged over the words; every sentence's -log p(intent)
    slot_terms, intent_terms = [], []
    for row, i in enumerate(batch.index):
        sentence = task.split("val")[i]
        for t, tag in enumerate(sentence.tags):
            slot_terms.append(-tag_logits[row, t].log_softmax(-1)[task.tags.index[tag]])
        intent_terms.append(-intent_logits[row].log_softmax(-1)[task.intents.index[sentence.intent]])
    expected = sum(slot_terms) / len(slot_terms) + 0.5 * sum(intent_terms) / len(intent_terms)
    assert loss.count == len(slot_terms) == 13
    assert float(loss.total.detach() / loss.count) == pytest.approx(float(expected), rel=1e-5)
    alone = make_task(tmp_path, "alone", joint=False)
    assert alone.model_kwargs()["num_intents"] == 0 and make_tagger(alone)(batch.tokens)[1] is None


def test_unseen_val_labels_are_skipped_by_the_loss_and_wrong_in_the_metrics(tmp_path):
    write_corpus(tmp_path / "atis")
    unseen = ("flights on friday", "O O B-return_date.day_name", "atis_cheapest")
    write_split(tmp_path / "atis" / "dev", [unseen])
    task = make_task(tmp_path)
    batch = next(iter(task.batches("val", train=False)))
    assert batch.tags.tolist() == [[task.tags.index["O"], task.tags.index["O"], IGNORE]]
    assert batch.intents.tolist() == [IGNORE]
    metrics = task.evaluate(make_tagger(task), "val")
    assert metrics["slot_recall"] == 0.0 and metrics["intent_accuracy"] == 0.0
    assert math.isfinite(metrics["loss"])


def test_the_auxiliary_lm_loss_is_added_and_a_model_without_one_is_refused(tmp_path):
    task = make_task(tmp_path)
    model = make_tagger(task)
    batch = next(iter(task.batches("val", train=False)))
    plain = task.loss(model, batch)
    task.aux_lm_weight = 0.25
    with pytest.raises(UserError, match="model=bert or model=transformer_lm"):
        task.loss(model, batch)

    class WithLM(Tagger):
        def aux_lm_loss(self, tokens):
            # mean nats of a uniform guess over the vocabulary, per predicted token
            return torch.tensor(math.log(self.encoder.embedding.num_embeddings))

    with_lm = WithLM(**task.model_kwargs(), **{k: v for k, v in tagger_options().items()}).eval()
    with_lm.load_state_dict(model.state_dict())
    added = task.loss(with_lm, batch)
    lm = math.log(task.model_kwargs()["vocab_size"])
    assert float(added.total) == pytest.approx(float(plain.total) + 0.25 * plain.count * lm, rel=1e-5)


def tagger_options() -> dict:
    return dict(cell="lstm", embedding_size=8, hidden_size=6, num_layers=1, bidirectional=True,
                merge="concat", intent_pooling="last", dropout=0.0, variational_dropout=False,
                layer_norm=False, weight_norm=False, forget_bias=1.0)  # fmt: skip


def test_the_tagger_heads_read_the_encoder_and_padding_changes_nothing(tmp_path):
    task = make_task(tmp_path)
    model = make_tagger(task, intent_pooling="mean")
    tokens = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    tag_logits, intent_logits = model(tokens)
    encoded = model.encoder(tokens)
    torch.testing.assert_close(tag_logits, model.tag_head(encoded.outputs))  # softmax(W_s h_t + b_s)
    mean = encoded.outputs[0, :3].mean(0)  # the intent reads the mean over the three real words
    torch.testing.assert_close(intent_logits[0], model.intent_head(mean))
    alone_tags, alone_intent = model(tokens[:1, :3])  # the same sentence without its padding
    torch.testing.assert_close(tag_logits[0, :3], alone_tags[0])
    torch.testing.assert_close(intent_logits[0], alone_intent[0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_tag_reads_the_later_words_only_when_bidirectional(tmp_path, bidirectional):
    task = make_task(tmp_path)
    model = make_tagger(task, bidirectional=bidirectional, cell="gru")
    first, second = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[5, 6, 7, 9]])  # the last word differs
    changed = (model(first)[0][0, :3] - model(second)[0][0, :3]).abs().max()
    assert (float(changed) > 1e-6) == bidirectional


def test_decode_prints_word_slash_tag_and_the_intent(tmp_path):
    task = make_task(tmp_path)
    item = DecodeInput("1", ["from", "boston"], 2, 1)
    text = task.render(item, Tagging(["O", "B-fromloc.city_name"], "atis_flight"))
    assert text == "from/O boston/B-fromloc.city_name\tatis_flight"
    decoded = task.decode(make_tagger(task), [item, DecodeInput("2", ["an", "unknown", "word"], 3, 2)])
    assert [len(d.tokens[0].tags) for d in decoded] == [2, 3]
    assert all(d.tokens[0].intent in task.intents for d in decoded)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"train_path": "x"}, "not both"),
        ({"data_dir": None, "train_path": "x"}, "needs task.val_path"),
        ({"intent_weight": -1.0}, "intent_weight must be >= 0"),
    ],
)
def test_contradicting_options_are_refused(tmp_path, changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        TaggingTask(**(task_options("DIR") | changes))


def test_joint_needs_intents(tmp_path):
    (tmp_path / "train.txt").write_text("EU B-ORG\n\nPeter B-PER\n", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("EU B-ORG\n", encoding="utf-8")
    with pytest.raises(UserError, match="task.joint=true needs an intent per sentence"):
        make_task(tmp_path, data_dir=str(tmp_path))
    assert make_task(tmp_path, "run2", data_dir=str(tmp_path), joint=False).model_kwargs()["num_tags"] == 2


# -------------------------------------------------------------------------------------- end to end
runner = CliRunner()
TINY = ["task=tagging", "model=tagger", "model.embedding_size=16", "model.hidden_size=16",
        "task.default_size=300", "trainer.optimizer.lr=0.02"]  # fmt: skip


@pytest.mark.slow
def test_train_eval_and_decode_the_embedded_corpus(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, f"run_dir={run_dir}", *quick_trainer(60)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(run_dir), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert {"slot_f1", "intent_accuracy", "sentence_accuracy", "loss"} <= metrics.keys()
    assert metrics["intent_accuracy"] > 50  # five intents: chance is 20 %
    (tmp_path / "in.txt").write_text("show flights from boston to denver on monday\n", encoding="utf-8")
    result = runner.invoke(app, ["decode", str(run_dir), "--input", str(tmp_path / "in.txt")])
    assert result.exit_code == 0, result.output
    words, intent = result.output.strip().split("\t")
    assert [
        pair.split("/")[0] for pair in words.split()
    ] == "show flights from boston to denver on monday".split()
    assert intent.startswith("atis_")


@pytest.mark.slow
def test_a_jointbert_directory_trains_and_its_missing_test_split_is_one_line(tmp_path):
    data = write_corpus(tmp_path / "atis")
    run_dir = tmp_path / "run"
    args = ["train", *TINY, f"task.data_dir={data}", "task.joint=false", f"run_dir={run_dir}"]
    assert runner.invoke(app, [*args, *quick_trainer(4)]).exit_code == 0
    result = runner.invoke(app, ["decode", str(run_dir), "--input", "-"], input="fares to new york\n")
    assert result.exit_code == 0 and "\t" not in result.output and "york/" in result.output
    assert_user_error(seqtool("eval", str(run_dir), "--split", "test"), "has no test split")


@pytest.mark.slow
def test_the_atis_recipe_writes_its_page(tmp_path, shared_data):
    from tests.test_rnn_recipes import run_recipe

    atis = shared_data / "atis"
    if not atis.is_dir():
        pytest.skip(f"ATIS not found at {atis}")
    report = run_recipe("atis", tmp_path, str(atis))
    assert "val_slot_f1" in report and "**Verdict (measured).**" in report and "Goo et al." in report
