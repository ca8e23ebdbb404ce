import math

import pytest
import torch

from seqtool.data.text import read_local, stdlib_source
from seqtool.errors import UserError
from seqtool.models.char_rnn import CharRNN
from seqtool.tasks.charlm import CharLMTask


def make_task(path, **changes) -> CharLMTask:
    options = dict(
        path=str(path),
        hf_name=None,
        hf_column="text",
        hf_split="train",
        max_chars=10**6,
        val_fraction=0.1,
        test_fraction=0.1,
        batch_size=3,
        seq_len=5,
        min_seq_len=2,
        eval_max_chars=10**6,
    )
    return CharLMTask(**(options | changes))


def make_model(vocab_size: int) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(
        vocab_size=vocab_size,
        cell="lstm",
        embedding_size=8,
        hidden_size=12,
        num_layers=2,
        dropout=0.0,
        variational_dropout=False,
        layer_norm=False,
        weight_norm=False,
        forget_bias=1.0,
        tie_weights=False,
    )


@pytest.fixture
def alphabet_task(tmp_path):
    text = "abcdefghijklmnopqrstuvwxyz" * 4  # 104 characters: train 83, val 10, test 11
    (tmp_path / "text.txt").write_text(text)
    task = make_task(tmp_path / "text.txt")
    task.setup(tmp_path)
    return task


def test_streams_are_contiguous_rows_and_targets_are_shifted(alphabet_task):
    task = alphabet_task
    rows = task.train_rows  # 3 streams of 83 // 3 = 27 characters
    assert rows.shape == (3, 27)
    assert task.vocab.decode(rows[1].tolist()) == task.splits["train"][27:54]
    segments = task.batches("train", train=True)
    first, second = next(segments), next(segments)
    assert first.reset and not second.reset
    assert torch.equal(first.y[:, :-1], first.x[:, 1:])
    assert torch.equal(second.x[:, 0], first.y[:, -1])  # the next segment continues each stream


def test_streams_wrap_around_and_reset_the_state(alphabet_task):
    segments = alphabet_task.batches("train", train=True)
    lengths, resets = [], []
    for _ in range(7):
        segment = next(segments)
        lengths.append(segment.x.shape[1])
        resets.append(segment.reset)
    assert lengths[:6] == [5, 5, 5, 5, 5, 1]  # 26 inputs per stream of 27 characters
    assert resets == [True, False, False, False, False, False, True]
    assert alphabet_task.epoch == 1


def test_the_curriculum_shortens_segments(alphabet_task):
    competence = iter([0.2, 0.5, 1.0])
    segments = alphabet_task.batches("train", train=True, competence=lambda: next(competence))
    assert [next(segments).x.shape[1] for _ in range(3)] == [2, 3, 5]  # min_seq_len 2, then ceil(c * 5)


def test_carrying_the_state_over_segments_equals_one_long_forward(alphabet_task):
    model = make_model(len(alphabet_task.vocab)).eval()
    segments = alphabet_task.batches("train", train=True)
    losses = []
    with torch.no_grad():
        for _ in range(3):
            loss = alphabet_task.loss(model, next(segments))
            losses.append(loss.total)
        whole = alphabet_task.train_rows[:, :16]
        logits, _ = model(whole[:, :-1])
        expected = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), whole[:, 1:].flatten(), reduction="sum"
        )
    assert torch.allclose(sum(losses), expected, atol=1e-4)


def test_state_dict_restores_the_stream_position(alphabet_task, tmp_path):
    model = make_model(len(alphabet_task.vocab))
    segments = alphabet_task.batches("train", train=True)
    alphabet_task.loss(model, next(segments))
    saved = alphabet_task.state_dict()
    expected = next(segments)
    twin = make_task(tmp_path / "text.txt")
    twin.setup(tmp_path)
    twin.load_state_dict(saved)
    again = next(twin.batches("train", train=True))
    assert torch.equal(again.x, expected.x) and not again.reset
    assert all(torch.equal(a, b) for a, b in zip(twin.carry, saved["carry"]))


def test_evaluate_reports_loss_perplexity_and_bits_per_character(alphabet_task):
    model = make_model(len(alphabet_task.vocab))
    metrics = alphabet_task.evaluate(model, "val")
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))
    assert metrics["loss"] == pytest.approx(math.log(26), rel=0.05)  # untrained: near uniform


def test_the_vocabulary_is_saved_and_reused(alphabet_task, tmp_path):
    assert (tmp_path / "vocab" / "chars.json").is_file()
    (tmp_path / "other.txt").write_text("zyx" * 100)
    again = make_task(tmp_path / "other.txt")
    again.setup(tmp_path)
    assert again.vocab.chars == alphabet_task.vocab.chars


def test_invalid_utf8_is_replaced_with_a_warning(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"hello \xff\xfe world" * 10)
    text = read_local(str(tmp_path / "bad.txt"), 10**6)
    assert "\ufffd" in text and "hello" in text
    assert "invalid UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"   \n\n  "])
def test_an_empty_corpus_is_a_user_error(tmp_path, content):
    (tmp_path / "empty.txt").write_bytes(content)
    with pytest.raises(UserError, match="empty"):
        read_local(str(tmp_path / "empty.txt"), 100)


def test_a_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_local(str(tmp_path / "nope.txt"), 100)


def test_directories_and_globs_read_files_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("second ")
    (tmp_path / "a.txt").write_text("first ")
    assert read_local(str(tmp_path), 100) == "first second "
    assert read_local(str(tmp_path / "*.txt"), 100) == "first second "


def test_the_embedded_default_is_the_standard_library_deterministically():
    text = stdlib_source(200_000)
    assert len(text) == 200_000 and "def " in text and "import " in text
    assert stdlib_source(200_000) == text


def test_a_corpus_too_small_for_the_streams_is_a_user_error(tmp_path):
    (tmp_path / "tiny.txt").write_text("abcdefghij")
    task = make_task(tmp_path / "tiny.txt", batch_size=8, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(UserError, match="too small"):
        task.setup(tmp_path)
