"""Checkpoints: round trip with tied weights, atomic replacement, exact RNG restore, refusal of
malicious pickles and damaged files, foreign-model errors, and best-k bookkeeping."""

import json
import os
import pathlib
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from seqtool import checkpoint as ckpt
from seqtool.checkpoint import (
    BestKeeper,
    load_checkpoint,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from seqtool.errors import UserError


class TiedLM(nn.Module):
    """Embedding -> GRU -> Linear whose weight is the embedding's (tied), plus a buffer."""

    def __init__(self, vocab: int = 7, hidden: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        self.out.weight = self.embed.weight
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))


class Other(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)


def trained_state(model: nn.Module) -> dict:
    """A trainer state like the trainer's: optimizer after a step, RNG, nested lists and tuples."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    return {
        "step": 12,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "nested": [1, (2.5, "x", None), {"a": [True, False]}, torch.arange(3)],
        "best": {"mode": "min", "entries": [[1.5, 10]]},
    }


def save(directory: pathlib.Path, net: nn.Module, step: int = 12, **meta) -> dict:
    state = trained_state(net)
    save_checkpoint(directory, model=net, trainer_state=state, meta={"step": step, **meta})
    return state


def assert_same(a, b) -> None:
    """Recursive equality for nested containers holding tensors."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_keeps_tied_weights_trainer_state_and_meta(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    state = save(tmp_path / "last", model, metric=1.25, config={"model": {"hidden": 5}})

    loaded = load_checkpoint(tmp_path / "last")
    assert sorted(os.listdir(tmp_path)) == ["last"]  # no temp or old directory left behind
    assert loaded.model_state.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model_state[name], tensor), name
    assert_same(loaded.trainer_state, state)
    direct = torch.load(tmp_path / "last" / "trainer_state.pt", weights_only=True)
    assert_same(direct, state)
    assert loaded.meta["format"] == "seqtool-checkpoint/1"
    assert loaded.meta["model"] == f"{__name__}.TiedLM"
    assert (loaded.meta["step"], loaded.meta["metric"]) == (12, 1.25)
    assert loaded.meta["config"] == {"model": {"hidden": 5}}
    assert "seqtool_version" in loaded.meta

    fresh = TiedLM()
    load_model_weights(fresh, loaded, expected_model=f"{__name__}.TiedLM")
    assert fresh.out.weight is fresh.embed.weight  # still tied after loading
    assert torch.equal(fresh.out.weight, model.embed.weight)
    assert torch.equal(fresh.rnn.weight_hh_l0, model.rnn.weight_hh_l0)


def test_save_refuses_non_plain_trainer_state_and_meta_without_step(tmp_path):
    with pytest.raises(TypeError, match=r"trainer_state\['obj'\] is a object"):
        save_checkpoint(tmp_path / "c", model=Other(), trainer_state={"obj": object()}, meta={"step": 1})
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path / "c", model=Other(), trainer_state={}, meta={})
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------------------- atomicity


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    directory = tmp_path / "last"
    first = Other()
    save(directory, first, step=1)

    write_bytes = pathlib.Path.write_bytes

    def crash(path: pathlib.Path, data: bytes) -> int:
        if path.name == ckpt.TRAINER_STATE:  # the weights are already written into the temp dir
            raise OSError("the writer died")
        return write_bytes(path, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", crash)
    with pytest.raises(OSError, match="the writer died"):
        save(directory, Other(), step=2)

    loaded = load_checkpoint(directory)
    assert loaded.meta["step"] == 1
    assert torch.equal(loaded.model_state["proj.weight"], first.proj.weight)
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_crash_during_the_swap_rolls_back(tmp_path, monkeypatch):
    directory = tmp_path / "last"
    save(directory, Other(), step=1)
    real_replace = os.replace

    def replace(src, dst):
        if ".tmp-" in str(src):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(OSError, match="power cut"):
        save(directory, Other(), step=2)
    assert load_checkpoint(directory).meta["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_a_process_killed_mid_swap_leaves_a_loadable_checkpoint(tmp_path):
    """Killed between 'rename old aside' and 'rename new in': the aside copy is found and loaded,
    the half-written temp dir is never taken for the checkpoint, and the next save cleans up."""
    directory = tmp_path / "best"
    save(directory, Other(), step=1)
    os.replace(directory, tmp_path / ".best.old-4242")
    (tmp_path / ".best.tmp-4242").mkdir()
    (tmp_path / ".best.tmp-4242" / "model.safetensors").write_bytes(b"half")

    assert load_checkpoint(directory).meta["step"] == 1
    save(directory, Other(), step=2)
    assert load_checkpoint(directory).meta["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_saving_over_a_checkpoint_replaces_it_fully(tmp_path):
    directory = tmp_path / "last"
    save(directory, TiedLM(), step=1)
    (directory / "stray.txt").write_text("from the old checkpoint")
    second = Other()
    save(directory, second, step=2)

    assert sorted(os.listdir(directory)) == ["meta.json", "model.safetensors", "trainer_state.pt"]
    loaded = load_checkpoint(directory)
    assert loaded.meta["step"] == 2 and loaded.model_state.keys() == second.state_dict().keys()


# ----------------------------------------------------------------------------------------------- RNG


def draw() -> tuple:
    python = [random.random() for _ in range(3)] + [random.gauss(0, 1) for _ in range(3)]
    return torch.rand(4), np.random.rand(4), np.random.randn(3), python


def test_set_rng_state_restores_the_next_numbers_exactly(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn(1)  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in python's
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = draw()
    draw()  # move every generator on

    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = draw()
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3] == expected[3]


# ---------------------------------------------------------------------------------- hostile and damaged


class Payload:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle"])
def test_malicious_trainer_state_is_refused_and_never_runs(tmp_path, how):
    directory = tmp_path / "last"
    save(directory, Other())
    marker = tmp_path / "pwned"
    target = directory / "trainer_state.pt"
    if how == "torch_save":
        torch.save({"step": 1, "evil": Payload(marker)}, target)
    else:
        target.write_bytes(pickle.dumps({"evil": Payload(marker)}, protocol=2))

    with pytest.raises(UserError, match="refuses to unpickle arbitrary objects") as error:
        load_checkpoint(directory)
    assert str(target) in str(error.value)
    assert not marker.exists()


def test_truncated_weights_are_a_user_error(tmp_path):
    directory = tmp_path / "last"
    save(directory, TiedLM())
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or truncated") as error:
        load_checkpoint(directory)
    assert str(weights) in str(error.value) and "\n" not in str(error.value)


def test_truncated_trainer_state_is_a_user_error(tmp_path):
    directory = tmp_path / "last"
    save(directory, Other())
    state = directory / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(directory)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "malformed"),
        ('["a list"]', "format"),
        (json.dumps({"format": "other/9", "step": 1}), "format 'other/9'"),
    ],
)
def test_bad_meta_is_a_user_error(tmp_path, text, match):
    directory = tmp_path / "last"
    save(directory, Other())
    (directory / "meta.json").write_text(text)
    with pytest.raises(UserError, match=match):
        load_checkpoint(directory)


def test_missing_or_foreign_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"is not a seqtool checkpoint \(no meta.json\)"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty is not a seqtool checkpoint \(no meta.json\)"):
        load_checkpoint(tmp_path / "empty")


def test_missing_weights_file_is_a_user_error(tmp_path):
    save(tmp_path / "last", Other())
    (tmp_path / "last" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="missing"):
        load_checkpoint(tmp_path / "last")


# ---------------------------------------------------------------------------------- load_model_weights


def test_weights_of_another_architecture_are_a_user_error(tmp_path):
    save(tmp_path / "last", TiedLM())
    loaded = load_checkpoint(tmp_path / "last")
    with pytest.raises(
        UserError, match="does not fit this model: missing proj.bias, proj.weight; unexpected"
    ):
        load_model_weights(Other(), loaded)
    with pytest.raises(UserError, match=r"shape \(checkpoint vs model\) embed.weight \(7, 5\) vs \(9, 5\)"):
        load_model_weights(TiedLM(vocab=9), loaded)


def test_expected_model_mismatch_is_a_user_error(tmp_path):
    save(tmp_path / "last", Other(), model="seqtool.models.char_rnn.CharRNN")
    loaded = load_checkpoint(tmp_path / "last")
    with pytest.raises(UserError, match="holds a seqtool.models.char_rnn.CharRNN, not a seqtool.models.x.Y"):
        load_model_weights(Other(), loaded, expected_model="seqtool.models.x.Y")
    load_model_weights(Other(), loaded, expected_model="seqtool.models.char_rnn.CharRNN")


# ---------------------------------------------------------------------------------------------- best-k


def offer_all(keeper: BestKeeper, metrics: list[float]) -> list[bool]:
    return [keeper.offer(m, step, model=Other(), trainer_state={}, meta={}) for step, m in enumerate(metrics)]


def top_steps(root: pathlib.Path) -> list[str]:
    return sorted(os.listdir(root / "top"))


def test_best_keeper_min_keeps_best_and_top_k(tmp_path):
    keeper = BestKeeper(tmp_path, keep=2, mode="min")
    assert offer_all(keeper, [3, 1, 2, 0.5]) == [True, True, False, True]
    best = load_checkpoint(tmp_path / "best").meta
    assert (best["step"], best["metric"]) == (3, 0.5)
    assert top_steps(tmp_path) == ["step_1", "step_3"]
    assert load_checkpoint(tmp_path / "top" / "step_1").meta["metric"] == 1.0
    assert keeper.entries == [(0.5, 3), (1.0, 1)]


def test_best_keeper_max_ties_and_nan(tmp_path):
    keeper = BestKeeper(tmp_path, keep=3, mode="max")
    assert keeper.is_better(-1e9) and not keeper.is_better(float("nan"))
    assert offer_all(keeper, [0.2, 0.9, float("nan"), 0.9, 0.5, 0.1]) == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert load_checkpoint(tmp_path / "best").meta["step"] == 1  # the tie at step 3 is not better
    assert top_steps(tmp_path) == ["step_1", "step_3", "step_4"]
    assert not keeper.is_better(0.9) and not keeper.is_better(float("nan")) and keeper.is_better(0.95)


def test_best_keeper_keep_one_writes_only_best(tmp_path):
    keeper = BestKeeper(tmp_path, keep=1, mode="min")
    assert offer_all(keeper, [2, 3, 1]) == [True, False, True]
    assert sorted(os.listdir(tmp_path)) == ["best"]
    assert load_checkpoint(tmp_path / "best").meta["step"] == 2


def test_best_keeper_state_dict_round_trip(tmp_path):
    keeper = BestKeeper(tmp_path, keep=2, mode="min")
    offer_all(keeper, [3, 1, 2])
    torch.save({"best": keeper.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)["best"]

    resumed = BestKeeper(tmp_path, keep=2, mode="min")
    resumed.load_state_dict(state)
    assert resumed.entries == keeper.entries == [(1.0, 1), (2.0, 2)]
    assert not resumed.is_better(1.0) and resumed.is_better(0.9)
    assert resumed.offer(1.5, 5, model=Other(), trainer_state={}, meta={}) is False
    assert top_steps(tmp_path) == ["step_1", "step_5"]
    with pytest.raises(UserError, match="mode=min"):
        BestKeeper(tmp_path, keep=2, mode="max").load_state_dict(state)


# ------------------------------------------------------------------------------- a full disk, a crash


def test_a_full_disk_during_a_save_is_a_user_error_and_the_old_checkpoint_survives(tmp_path, monkeypatch):
    net = TiedLM()
    save(tmp_path / "last", net, step=3)
    before = {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()}
    written = []

    def full_disk(path: pathlib.Path, data: bytes) -> int:
        written.append(path.name)
        if path.name == ckpt.TRAINER_STATE:  # the weights fitted; the trainer state does not
            raise OSError(28, "No space left on device")
        return original(path, data)

    original = pathlib.Path.write_bytes
    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    with pytest.raises(UserError, match=r"cannot write .*trainer_state\.pt: No space left on device.*keeps"):
        save(tmp_path / "last", TiedLM(), step=9)
    monkeypatch.undo()
    assert written == [ckpt.WEIGHTS, ckpt.TRAINER_STATE]
    assert {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["last"]  # no half-written sibling left behind
    assert load_checkpoint(tmp_path / "last").meta["step"] == 3


def test_an_error_that_is_not_the_disk_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(path: pathlib.Path, data: bytes) -> int:
        raise OSError(5 if path.name == ckpt.META else 0, "a bug, or a dying disk: not the user's to fix")

    monkeypatch.setattr(pathlib.Path, "write_bytes", broken)
    with pytest.raises(OSError, match="not the user's"):
        save(tmp_path / "last", TiedLM())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("step", "3", r"'step' is '3', not an integer"), ("step", -1, "'step' is -1"),
     ("step", True, "'step' is True"), ("model", 7, "'model' is 7, not text"),
     ("metric", "low", "'metric' is 'low', not a number")],
)  # fmt: skip
def test_meta_fields_of_the_wrong_type_are_refused(tmp_path, key, value, message):
    save(tmp_path / "ck", TiedLM())
    meta = json.loads((tmp_path / "ck" / ckpt.META).read_text()) | {key: value}
    (tmp_path / "ck" / ckpt.META).write_text(json.dumps(meta))
    with pytest.raises(UserError, match=message):
        load_checkpoint(tmp_path / "ck")


CRASH_SCRIPT = """
import os, pathlib, signal, sys
from seqtool import checkpoint, commands
from seqtool.config import compose

where, overrides = sys.argv[1], sys.argv[2:]
if where == "renaming":  # SIGKILL between the two renames: last is set aside, its successor not yet in place
    replace = os.replace
    def dying_replace(src, dst):
        replace(src, dst)
        if pathlib.Path(src).name == "last":
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.os.replace = dying_replace
else:  # SIGKILL halfway through writing the trainer state of the second save of last
    write_bytes, saves = pathlib.Path.write_bytes, []
    def dying_write(path, data):
        if path.name == checkpoint.TRAINER_STATE and path.parent.name.startswith(".last.tmp"):
            saves.append(path)
            if len(saves) == 2:
                write_bytes(path, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return write_bytes(path, data)
    pathlib.Path.write_bytes = dying_write
commands.train(compose(overrides))
"""


@pytest.mark.parametrize("where", ["writing", "renaming"])
def test_a_run_killed_inside_a_checkpoint_write_resumes_exactly(tmp_path, where):
    """SIGKILL inside the save of checkpoints/last at step 8 (of 12, saved every 4): the step-4 checkpoint
    survives (in place, or set aside as .last.old-PID), and --resume from it gives the uninterrupted run's
    loss at every step and its final weights."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from seqtool import commands
    from seqtool.config import compose
    from tests.helpers import ROOT, tiny_corpus, tiny_run

    corpus = tiny_corpus(tmp_path)
    common = ["trainer.eval_every=4", "model.dropout=0.3", "trainer.lr_schedule.kind=constant"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    commands.train(compose(tiny_run(corpus, straight, *common, steps=12)))
    argv = [sys.executable, "-c", CRASH_SCRIPT, where, *tiny_run(corpus, killed, *common, steps=12)]
    crash = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert crash.returncode == -9, crash.stderr
    survivor = ckpt.find_checkpoint(killed / "checkpoints" / "last")
    assert survivor is not None and load_checkpoint(survivor).meta["step"] == 4
    assert (survivor.name == "last") == (where == "writing")
    commands.train(commands.resume_config(killed, []), resume=killed)

    def losses(run_dir: pathlib.Path) -> dict[int, float]:
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in records if "loss" in r}  # steps 5-8 twice: the resumed ones win

    assert sorted(losses(killed)) == list(range(1, 13)) and losses(killed) == losses(straight)
    final = [load_file(run / "checkpoints" / "last" / ckpt.WEIGHTS) for run in (straight, killed)]
    assert final[0].keys() == final[1].keys() and all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    assert sorted(os.listdir(killed / "checkpoints")) == ["best", "last"]  # the crash's leftovers removed
