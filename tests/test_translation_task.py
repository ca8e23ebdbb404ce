"""The translation task: batches, resume, curriculum, loss, evaluation and decoding, with tiny real models
(the command line and end-to-end runs are in test_translation_cli.py)."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqtool import commands
from seqtool.config import compose, instantiate
from seqtool.data.tokenize import BOS, EOS, PAD
from seqtool.decode.settings import Beam, DecodeOptions, Greedy, Sampling, SearchSettings
from seqtool.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "task=translation",
    "task.synthetic.train_size=600",
    "task.synthetic.val_size=40",
    "task.synthetic.test_size=30",
    "task.synthetic.max_length=8",
    "task.max_tokens=300",
    "task.bucket_size=64",
]


def make_task(tmp_path, *overrides, setup=True):
    task = instantiate(compose([*SMALL, *overrides]).task)
    if setup:
        task.setup(tmp_path)
    return task


TINY = {
    "seq2seq_attn": ["model.embedding_size=16", "model.hidden_size=16", "model.dropout=0.0"],
    "transformer": ["model.d_model=16", "model.heads=2", "model.ffn_size=32", "model.encoder_layers=1",
                    "model.decoder_layers=1", "model.dropout=0.0"],
}  # fmt: skip


def decode(task, model: nn.Module, options: DecodeOptions) -> None:
    """`seqtool decode` on a task and model built here (commands.decode on a run made in memory)."""
    commands.decode(commands.LoadedRun(cfg=None, task=task, model=model, device=task.device), options)


def make_model(task, name: str = "seq2seq_attn", *overrides: str) -> nn.Module:
    """A tiny real model of conf/model/NAME.yaml, sized by the task, in eval mode."""
    torch.manual_seed(0)
    cfg = compose([f"model={name}", *TINY[name], *overrides])
    return instantiate(cfg.model, **task.model_kwargs()).eval()


@pytest.fixture
def task(tmp_path):
    return make_task(tmp_path)


# ---------------------------------------------------------------------------------------- batches


def test_model_kwargs_share_the_specials(task):
    assert task.model_kwargs() == {
        "src_vocab_size": 14, "tgt_vocab_size": 14, "pad_index": 0, "bos_index": 1, "eos_index": 2,
    }  # fmt: skip


def test_a_batch_is_source_eos_and_shifted_targets(task):
    batch = next(iter(task.batches("val", train=False)))
    row, pair = 0, task.pairs["val"][batch.index[0]]
    src = [i for i in batch.src[row].tolist() if i != PAD]
    assert src[-1] == EOS and task.src_tokenizer.decode(src) == pair[0]
    tgt_in, tgt_out = batch.tgt_in[row].tolist(), batch.tgt_out[row].tolist()
    assert tgt_in[0] == BOS and tgt_in[1:] == tgt_out[:-1] or PAD in tgt_out
    assert task.tgt_tokenizer.decode(tgt_out) == pair[1]


def test_train_batches_keep_to_the_token_budget(task):
    stream = task.batches("train", train=True)
    for _ in range(20):
        batch = next(stream)
        assert batch.src.numel() <= 300 and batch.tgt_in.numel() <= 300


def test_one_epoch_serves_every_train_pair_once(task):
    stream = task.batches("train", train=True)
    seen = []
    while task.stream.epoch == 0:
        seen += next(stream).index
    assert sorted(seen[: len(task.pairs["train"])]) == list(range(len(task.pairs["train"])))


def test_a_resumed_stream_continues_exactly(tmp_path):
    def index_stream(task, count, competence=lambda: 1.0):
        stream = task.batches("train", train=True, competence=competence)
        return [next(stream).index for _ in range(count)]

    first = make_task(tmp_path / "a")
    index_stream(first, 37)
    state = first.state_dict()
    expected = index_stream(first, 30)
    second = make_task(tmp_path / "b")
    second.load_state_dict(state)
    assert index_stream(second, 30) == expected and all(isinstance(v, int) for v in state.values())


def test_ranks_take_disjoint_batches_of_the_same_plan(tmp_path):
    plans = []
    for rank in (0, 1):
        task = make_task(tmp_path, setup=False)
        task.setup(tmp_path, rank=rank, world_size=2)
        task.batches("train", train=True)
        plans.append([tuple(index) for index in task.stream.plan()])
    assert len(plans[0]) == len(plans[1]) and not set(plans[0]) & set(plans[1])


def test_the_curriculum_draws_only_the_easiest_pairs(task):
    stream = task.batches("train", train=True, competence=lambda: 0.1)
    lengths = sorted(len(source) for source in task.ids["train"][0])
    hardest_allowed = lengths[int(0.1 * len(lengths))]
    for _ in range(10):
        batch = next(stream)
        assert all(len(task.ids["train"][0][i]) <= hardest_allowed for i in batch.index)
    assert task.state_dict()["drawn"] == 10 and task.state_dict()["cursor"] == 0


# ------------------------------------------------------------------------------------------- loss


def test_loss_is_cross_entropy_summed_over_the_target_tokens(tmp_path):
    task = make_task(tmp_path, "task.label_smoothing=0.1")
    model = make_model(task)
    with torch.no_grad():
        model.output.weight.mul_(20)  # confident predictions, so smoothing makes a visible difference
    batch = next(iter(task.batches("val", train=False)))
    loss = task.loss(model, batch)
    tokens = int((batch.tgt_out != PAD).sum())
    logits = model(batch.src, batch.tgt_in)
    plain = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum")
    smoothed = F.cross_entropy(
        logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum", label_smoothing=0.1
    )
    assert (
        loss.count == tokens and torch.allclose(loss.total, smoothed) and not torch.allclose(smoothed, plain)
    )


# ------------------------------------------------------------------------------------- evaluation


def test_evaluate_reports_loss_bleu_chrf_exact_match_and_writes_hypotheses(tmp_path):
    task = make_task(tmp_path, "task.eval_max_sentences=25")
    metrics = task.evaluate(make_model(task), "val")
    assert set(metrics) == {"loss", "perplexity", "bleu", "chrf", "exact_match", "length_ratio", "signature"}
    assert isinstance(metrics["signature"], str) and "tok:13a" in metrics["signature"]
    assert len((tmp_path / "hypotheses" / "val.txt").read_text().splitlines()) == 25  # the training cap
    task.evaluate(make_model(task), "val", search=SearchSettings(Beam(size=3)))
    assert len((tmp_path / "hypotheses" / "val.txt").read_text().splitlines()) == 40  # seqtool eval: all


def test_the_reported_bleu_is_sacrebleus_on_the_written_files(tmp_path):
    task = make_task(tmp_path, "task.synthetic.kind=none", "task.tokenizer=word", *file_source(tmp_path))
    model = make_model(task)
    metrics = task.evaluate(model, task.add_split("files", src=tmp_path / "val.de", ref=tmp_path / "val.en"))
    command = [sys.executable, "-m", "sacrebleu", str(tmp_path / "val.en"), "-w", "6"]
    result = subprocess.run(
        [*command, "-i", str(tmp_path / "hypotheses" / "files.txt")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert metrics["bleu"] == pytest.approx(json.loads(result.stdout)["score"], abs=1e-6)


GERMAN = ["ein Hund läuft .", "zwei Katzen schlafen", "ein Mann liest", "eine Frau singt laut"]
ENGLISH = ["a dog runs.", "two cats sleep", "a man reads", "a woman sings loudly"]


def file_source(tmp_path) -> list[str]:
    for split in ("train", "val"):
        (tmp_path / f"{split}.de").write_text("\n".join(GERMAN) + "\n")
        (tmp_path / f"{split}.en").write_text("\n".join(ENGLISH) + "\n")
    return [f"task.files.data_dir={tmp_path}", "task.files.test_prefix=null"]


def test_tsv_and_explicit_file_sources(tmp_path):
    (tmp_path / "t.tsv").write_text("".join(f"{g}\t{e}\n" for g, e in zip(GERMAN, ENGLISH)))
    tsv = make_task(tmp_path / "a", "task.synthetic.kind=none", f"task.files.train_tsv={tmp_path}/t.tsv",
                    f"task.files.val_tsv={tmp_path}/t.tsv")  # fmt: skip
    file_source(tmp_path)
    files = make_task(tmp_path / "b", "task.synthetic.kind=none", f"task.files.train_src={tmp_path}/train.de",
                      f"task.files.train_tgt={tmp_path}/train.en", f"task.files.val_src={tmp_path}/val.de",
                      f"task.files.val_tgt={tmp_path}/val.en")  # fmt: skip
    assert tsv.pairs["train"] == files.pairs["val"] == list(zip(GERMAN, ENGLISH))
    assert "test" not in files.pairs


def test_a_run_with_its_vocabulary_decodes_and_scores_files_without_its_data(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    overrides = ["task.synthetic.kind=none", "task.tokenizer=word", *file_source(data)]
    make_task(tmp_path / "run", *overrides)  # trains and saves the tokenizers
    shutil.rmtree(data)
    task = make_task(tmp_path / "run", *overrides)  # as `seqtool decode/eval` rebuild it
    decode(task, make_model(task), DecodeOptions(prime="ein Hund"))
    assert len(capsys.readouterr().out.splitlines()) == 1
    (tmp_path / "s.de").write_text("ein Mann\n")
    (tmp_path / "s.en").write_text("a man\n")
    assert "bleu" in task.evaluate(
        make_model(task), task.add_split("files", src=tmp_path / "s.de", ref=tmp_path / "s.en")
    )
    with pytest.raises(UserError, match="not found"):
        task.evaluate(make_model(task), "val")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (  # a source on the command line replaces the default one; two on it are refused
            ["task.files.data_dir=/somewhere", "task.hub.name=bentrevett/multi30k"],
            "exactly one data source, not task.files.data_dir and task.hub.name",
        ),
        (["task.synthetic.kind=none"], "exactly one data source, not none"),
        (["task.synthetic.kind=none", "task.files.data_dir=/no/such/dir"], "not found"),
        (["task.synthetic.kind=none", "task.hub.name=bentrevett/multi30k"], "needs network access"),
    ],
)
def test_bad_data_sources_are_user_errors(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        make_task(tmp_path, *overrides)


def test_a_source_longer_than_the_model_takes_is_named(task, tmp_path):
    model = make_model(task, "transformer", "model.max_positions=6")  # sources up to 5 tokens + EOS
    with pytest.raises(UserError, match=r"line \d+ of the val source has \d+ tokens"):
        task.evaluate(model, "val")
    (tmp_path / "in.txt").write_text("abc\nabcdefgh\n")
    with pytest.raises(UserError, match="input line 2 has 8 tokens"):
        decode(task, model, DecodeOptions(input=str(tmp_path / "in.txt")))


# ------------------------------------------------------------------------------------------ decode


def test_decode_prints_one_line_per_input_or_the_nbest_format(task, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("abc\nhgfe\ncafe\n")
    model = make_model(task)
    decode(task, model, DecodeOptions(input=str(tmp_path / "in.txt")))
    assert len(capsys.readouterr().out.splitlines()) == 3
    search = SearchSettings(Beam(size=3, nbest=2))
    decode(task, model, DecodeOptions(search=search, input=str(tmp_path / "in.txt")))
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in rows] == ["1", "1", "2", "2", "3", "3"]
    assert all(float(first[1]) >= float(second[1]) for first, second in zip(rows[::2], rows[1::2]))


def test_sampling_gives_num_samples_per_input_reproducibly(task, tmp_path, capsys):
    def samples(seed: int) -> list[list[str]]:
        search = SearchSettings(Sampling(), max_len=6, seed=seed)
        decode(task, make_model(task), DecodeOptions(search=search, prime="abcd", num=3, output=None))
        return [line.split("\t") for line in capsys.readouterr().out.splitlines()]

    first = samples(1)
    assert [row[0] for row in first] == ["1", "1", "1"] and all(len(row[2]) <= 6 for row in first)
    assert samples(1) == first and samples(2) != first


def test_decode_streams_stdin_and_plots_attention(task, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"abc\nde\n")))
    options = DecodeOptions(input="-", plot_dir=tmp_path / "maps", search=SearchSettings(Greedy()))
    decode(task, make_model(task), options)
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "attention_0001.png",
        "attention_0002.png",
    ]


def test_decode_input_that_is_not_utf8_is_a_user_error(task, tmp_path, monkeypatch):
    (tmp_path / "bad.txt").write_bytes(b"abc\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"not UTF-8 text \(line 2"):
        decode(task, make_model(task), DecodeOptions(input=str(tmp_path / "bad.txt")))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\n")))
    with pytest.raises(UserError, match=r"standard input is not UTF-8 text \(line 1"):
        decode(task, make_model(task), DecodeOptions(input="-"))


def test_nbest_without_a_wide_enough_beam_is_a_user_error(task):
    with pytest.raises(UserError, match="raise --beam"):
        search = SearchSettings(Beam(size=2, nbest=3))
        decode(task, make_model(task), DecodeOptions(search=search, prime="abc"))


def test_preview_shows_source_hypothesis_and_reference(task):
    lines = task.preview(make_model(task)).splitlines()
    assert len(lines) == 3 and all(" → " in line and line.endswith(")") for line in lines)
