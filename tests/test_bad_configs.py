"""Bad configurations end in one clear line and exit 2 (issue 13, the config layer).

Every row of the tables below is a configuration `seqtool` must refuse: a value of the wrong type or
outside its range, a model that does not fit its task, two settings that contradict each other, two data
sources, a resume that changes what the checkpoint was trained with, a run directory whose saved config
was edited into something unbuildable. Each ends in exit status 2, exactly one stderr line that names the
key and the value, no traceback, and no run directory created or changed (tests/bad_inputs.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.bad_inputs import QUICK, assert_refused, outcome, run_overrides

pytestmark = pytest.mark.usefixtures("one_thread")

# (family whose tiny run the overrides modify, or None for the defaults; overrides; what the line says)
TRAIN_CASES = [
    # --- types, on every family ---------------------------------------------------------------------
    ("charlm", "seed=abc", r"seed='abc'.*int"),
    ("charlm", "trainer.optimizer.lr=fast", r"trainer\.optimizer\.lr='fast'.*float"),
    ("charlm", "trainer.optimizer.betas=[0.9]", r"trainer\.optimizer\.betas=\[0\.9\].*2"),
    ("charlm", "trainer.optimizer.betas=[0.9,0.99,0.999]", r"trainer\.optimizer\.betas"),
    ("charlm", "=5", r"bad override"),
    ("charlm", "model.forget_bias=abc", r"model\.forget_bias='abc'"),
    ("charlm", "trainer.precision=fp16", r"trainer\.precision='fp16'.*auto, fp32, bf16"),
    ("charlm", "trainer.on_nonfinite=ignore", r"trainer\.on_nonfinite='ignore'.*stop, skip"),
    ("charlm", "device=tpu", r"device='tpu'.*auto, cpu, cuda, mps"),
    ("charlm", "task.seq_len=[8]", r"task\.seq_len=\[8\].*int"),
    ("translation", "task.synthetic.alphabet=ten", r"task\.synthetic\.alphabet='ten'.*int"),
    ("translation", "task.tokenizer=sentencepiece", r"task\.tokenizer='sentencepiece'.*char, word, bpe"),
    ("captioning", "model.encoder_channels=[4,x]", r"model\.encoder_channels=\[4, 'x'\].*int"),
    ("video", "task.step_length=fast", r"task\.step_length='fast'.*float"),
    ("memory", "task.problem=sort", r"task\.problem='sort'"),
    # --- ranges: the trainer ------------------------------------------------------------------------
    ("charlm", "trainer.clip_norm=0", r"trainer\.clip_norm=0.*> 0"),
    ("charlm", "trainer.clip_norm=-1", r"trainer\.clip_norm=-1.*> 0"),
    ("charlm", "trainer.clip_value=0", r"trainer\.clip_value=0.*> 0"),
    ("charlm", "trainer.patience=-1", r"trainer\.patience=-1.*>= 1"),
    ("charlm", "trainer.patience=0", r"trainer\.patience=0.*>= 1"),
    ("charlm", "trainer.lr_schedule.warmup_steps=-5", r"trainer\.lr_schedule\.warmup_steps=-5.*>= 0"),
    ("charlm", "trainer.sample_every=-1", r"trainer\.sample_every=-1.*>= 0"),
    ("charlm", "trainer.max_steps=0", r"trainer\.max_steps=0.*>= 1"),
    ("charlm", "trainer.grad_accum=0", r"trainer\.grad_accum=0.*>= 1"),
    ("charlm", "trainer.eval_every=0", r"trainer\.eval_every=0.*>= 1"),
    ("charlm", "trainer.log_every=-2", r"trainer\.log_every=-2.*>= 1"),
    ("charlm", "trainer.keep_best=0", r"trainer\.keep_best=0.*>= 1"),
    ("charlm", "trainer.optimizer.lr=-0.1", r"trainer\.optimizer\.lr=-0\.1.*> 0"),
    ("charlm", "trainer.optimizer.lr=0", r"trainer\.optimizer\.lr=0.*> 0"),
    ("charlm", "trainer.optimizer.betas=[0.9,1.5]", r"trainer\.optimizer\.betas.*1\.5.*\[0, 1\)"),
    ("charlm", "trainer.optimizer.weight_decay=-1", r"trainer\.optimizer\.weight_decay=-1.*>= 0"),
    ("charlm", "trainer/optimizer=sgd trainer.optimizer.momentum=-0.5", r"optimizer\.momentum=-0\.5"),
    ("charlm", "trainer.lr_schedule.min_ratio=2", r"trainer\.lr_schedule\.min_ratio=2.*\[0, 1\]"),
    ("charlm", "trainer.lr_schedule.plateau_factor=0", r"trainer\.lr_schedule\.plateau_factor=0.*\(0, 1\]"),
    ("charlm", "trainer.lr_schedule.plateau_patience=0", r"trainer\.lr_schedule\.plateau_patience=0.*>= 1"),
    ("charlm", "trainer.curriculum.initial=1.5", r"trainer\.curriculum\.initial=1\.5.*\(0, 1\]"),
    ("charlm", "trainer.curriculum.steps=0", r"trainer\.curriculum\.steps=0.*>= 1"),
    ("charlm", "trainer.teacher_forcing.min_ratio=2", r"trainer\.teacher_forcing\.min_ratio=2.*\[0, 1\]"),
    ("charlm", "trainer.divergence.factor=1", r"trainer\.divergence\.factor=1.*> 1"),
    ("charlm", "trainer.divergence.window=0", r"trainer\.divergence\.window=0.*>= 1"),
    # --- ranges: models and tasks -------------------------------------------------------------------
    ("charlm", "model.hidden_size=0", r"model\.hidden_size=0.*>= 1"),
    ("charlm", "model.num_layers=0", r"model\.num_layers=0.*>= 1"),
    ("charlm", "model.dropout=1.5", r"model\.dropout=1\.5.*\[0, 1\)"),
    ("charlm", "model.dropout=-0.1", r"model\.dropout=-0\.1.*\[0, 1\)"),
    ("charlm", "task.batch_size=0", r"task\.batch_size=0.*>= 1"),
    ("charlm", "task.seq_len=0", r"task\.seq_len=0.*>= 1"),
    ("charlm", "task.val_fraction=1.5", r"task\.val_fraction=1\.5.*\[0, 1\)"),
    ("charlm", "task.max_chars=0", r"task\.max_chars=0.*>= 1"),
    ("translation", "task.synthetic.alphabet=0", r"task\.synthetic\.alphabet=0.*1 to 26"),
    ("translation", "task.synthetic.alphabet=27", r"task\.synthetic\.alphabet=27.*1 to 26"),
    ("translation", "task.synthetic.train_size=0", r"task\.synthetic\.train_size=0.*>= 1"),
    ("translation", "task.max_tokens=0", r"task\.max_tokens=0.*>= 1"),
    ("translation", "task.label_smoothing=1.0", r"task\.label_smoothing=1\.0.*\[0, 1\)"),
    ("translation", "task.eval_beam=0", r"task\.eval_beam=0.*>= 1"),
    ("translation", "task.eval_max_len_ratio=-1", r"task\.eval_max_len_ratio=-1.*>= 0"),
    ("translation", "model.local_window=-1", r"model\.local_window=-1"),
    ("captioning", "task.image_size=0", r"task\.image_size=0.*>= 1"),
    ("captioning", "task.shapes.max_objects=5", r"task\.shapes\.max_objects=5.*1 to 3"),
    ("captioning", "task.shapes.captions_per_image=0", r"task\.shapes\.captions_per_image=0.*>= 1"),
    ("captioning", "model.grid_size=0", r"model\.grid_size=0.*>= 1"),
    ("captioning", "model.doubly_stochastic=-1", r"model\.doubly_stochastic=-1.*>= 0"),
    ("captioning", "model.encoder_channels=[4,0]", r"model\.encoder_channels.*0.*>= 1"),
    ("video", "task.num_digits=0", r"task\.num_digits=0.*>= 1"),
    ("video", "task.input_frames=0", r"task\.input_frames=0.*>= 1"),
    ("video", "task.l1_weight=-1", r"task\.l1_weight=-1.*>= 0"),
    ("video", "model=predrnn model.decouple_beta=-1", r"model\.decouple_beta=-1.*>= 0"),
    ("memory", "task.lag=0", r"task\.lag=0.*>= 1"),
    ("memory", "task.val_size=0", r"task\.val_size=0.*>= 1"),
    # --- rules between keys -------------------------------------------------------------------------
    ("charlm", "task.min_seq_len=20 task.seq_len=8", r"task\.min_seq_len=20.*task\.seq_len=8"),
    ("charlm", "task.val_fraction=0.6 task.test_fraction=0.5", r"task\.val_fraction.*task\.test_fraction"),
    ("charlm", "model.tie_weights=true model.embedding_size=4", r"tie_weights.*embedding_size.*hidden_size"),
    ("charlm", "trainer.teacher_forcing.kind=exponential trainer.teacher_forcing.k=2",
     r"trainer\.teacher_forcing\.k=2.*< 1"),
    ("charlm", "trainer.teacher_forcing.kind=inverse_sigmoid trainer.teacher_forcing.k=0.5",
     r"trainer\.teacher_forcing\.k=0\.5.*>= 1"),
    (None, "model=transformer_lm model.heads=3", r"model\.heads=3.*model\.d_model=128"),
    (None, "model=transformer_lm task.seq_len=1024", r"task\.seq_len=1024.*model\.max_positions=512"),
    ("translation", "task.synthetic.min_length=9 task.synthetic.max_length=6",
     r"task\.synthetic\.min_length=9.*task\.synthetic\.max_length=6"),
    ("translation", "model.tie_embeddings=true model.embedding_size=6", r"tie_embeddings.*embedding_size"),
    (None, "task=translation model=transformer model.share_all_embeddings=true",
     r"model\.share_all_embeddings=true.*task\.joint_vocab=true"),
    (None, "task=translation model=transformer model.heads=5", r"model\.heads=5.*model\.d_model=256"),
    ("captioning", "task.image_size=20", r"task\.image_size=20.*task\.resize_size=16"),
    ("video", "task.digit_size=20", r"task\.digit_size=20.*task\.image_size=12"),
    ("video", "model.kernel_size=4", r"model\.kernel_size=4.*odd"),
    ("video", "model.patch_size=5", r"model\.patch_size=5 does not divide task\.image_size=12"),
    ("memory", "task.problem=ntm_copy task.min_length=30 task.length=20", r"min_length=30 is above"),
    # --- a model on a task it does not serve --------------------------------------------------------
    (None, "model=convlstm task=translation", r"model=convlstm does not fit task=translation.*task=video"),
    (None, "model=predrnn task=translation", r"model=predrnn does not fit task=translation.*task=video"),
    (None, "model=captioner task=charlm", r"model=captioner does not fit task=charlm.*task=captioning"),
    (None, "model=captioner task=translation", r"model=captioner does not fit task=translation"),
    (None, "model=char_rnn task=translation", r"model=char_rnn does not fit task=translation.*task=charlm"),
    (None, "model=seq2seq_attn task=video", r"model=seq2seq_attn does not fit task=video.*task=translation"),
    (None, "model=transformer task=charlm", r"model=transformer does not fit task=charlm.*task=translation"),
    (None, "model=convlstm task=charlm", r"model=convlstm does not fit task=charlm.*task=video"),
    (None, "model=char_rnn task=memory", r"model=char_rnn does not fit task=memory task\.problem=adding"),
    (None, "model=transformer_lm task=captioning", r"model=transformer_lm does not fit task=captioning"),
    (None, "model=recurrent task=video", r"model=recurrent does not fit task=video.*task=memory"),
    # --- data sources -------------------------------------------------------------------------------
    (None, "task=translation model=seq2seq_attn task.files.data_dir=DATA task.hub.name=bentrevett/multi30k",
     r"one data source.*task\.files\.data_dir.*task\.hub\.name"),
    (None, "experiment=multi30k_transformer task.files.data_dir=DATA task.hub.name=other/corpus",
     r"one data source.*task\.files\.data_dir.*task\.hub\.name"),
    (None, "task.path=CORPUS task.hf_name=karpathy/tiny_shakespeare", r"one data source.*path.*hf_name"),
    (None, "task=video task.mnist_path=DATA task.hf_name=ylecun/mnist",
     r"one data source.*task\.mnist_path.*task\.hf_name"),
]  # fmt: skip


def _argv(family: str | None, overrides: str, tmp_path: Path) -> tuple[list[str], Path]:
    """`train` with the family's tiny run (or the defaults) and then the case's overrides; the run
    directory the case must not create."""
    run_dir = tmp_path / "run"
    base = run_overrides(family, run_dir) if family else [f"run_dir={run_dir}", *QUICK]
    given = [item.replace("DATA", str(tmp_path)).replace("CORPUS", str(tmp_path / "c.txt"))
             for item in overrides.split()]  # fmt: skip
    return ["train", *base, *given], run_dir


@pytest.mark.parametrize(("family", "overrides", "match"), TRAIN_CASES, ids=[c[1] for c in TRAIN_CASES])
def test_a_bad_config_is_refused_before_training(family, overrides, match, tmp_path):
    argv, run_dir = _argv(family, overrides, tmp_path)
    assert_refused(argv, match=match, protect=[run_dir])


# ---------------------------------------------------------------------------- on a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A seconds-long char-LM run with checkpoints (tests/bad_inputs.py's tiny run)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = outcome(["train", *run_overrides("charlm", run_dir)])
    assert result.code == 0, result.stderr
    return run_dir


# `seqtool train --resume RUN OVERRIDE`: only the keys of seqtool.schema.RESUMABLE may change
RESUME_CASES = [
    ("model.hidden_size=16", r"cannot change model\.hidden_size \(8 -> 16\).*trainer\.max_steps"),
    ("task.batch_size=3", r"cannot change task\.batch_size \(2 -> 3\)"),
    ("model=transformer_lm", r"cannot change model \(CharRNN -> 'transformer_lm'\)"),
    ("seed=5", r"cannot change seed \(1234 -> 5\)"),
    ("trainer.optimizer.lr=0.5", r"cannot change trainer\.optimizer\.lr \(0\.006 -> 0\.5\)"),
    ("trainer.clip_norm=-1", r"cannot change trainer\.clip_norm \(5\.0 -> -1\)"),
    ("trainer.max_steps=abc", r"trainer\.max_steps='abc' should be int"),
    ("trainer.max_steps=0", r"trainer\.max_steps=0 is out of range; allowed >= 1"),
    ("trainer/optimizer=sgd", r"give key=value overrides; on resume only trainer\.max_steps"),
    ("+trainer.extra=1", r"give key=value overrides"),
    ("trainer.max_steps=[", r"bad override 'trainer\.max_steps=\[': while parsing"),
]


@pytest.mark.parametrize(("override", "match"), RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_a_resume_that_changes_what_the_run_was_trained_with_is_refused(trained, override, match):
    assert_refused(["train", "--resume", str(trained), override], match=match, protect=[trained])


# decode and eval rebuild from the saved config: one edited into something unbuildable is refused
SAVED_CASES = [
    ("decode", "model.hidden_size", -1, r"model\.hidden_size=-1 is out of range; allowed >= 1"),
    ("decode", "task.seq_len", "abc", r"task\.seq_len='abc' should be int"),
    ("decode", "seed", "x", r"seed='x' should be int"),
    ("eval", "trainer.clip_norm", 0, r"trainer\.clip_norm=0 is out of range"),
    ("eval", "task.min_seq_len", 100, r"task\.min_seq_len=100 is above task\.seq_len=8"),
    ("eval", "model", {"_target_": "seqtool.models.transformer.Transformer"},
     r"model=transformer does not fit task=charlm.*tasks that fit model=transformer: task=translation"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "key", "value", "match"), SAVED_CASES, ids=[c[1] for c in SAVED_CASES])
def test_a_run_whose_saved_config_is_bad_is_refused(trained, tmp_path, command, key, value, match):
    run = tmp_path / "edited"
    shutil.copytree(trained, run)
    cfg = OmegaConf.load(run / "config.yaml")
    OmegaConf.update(cfg, key, value, force_add=True, merge=False)
    OmegaConf.save(cfg, run / "config.yaml")
    extra = ["--prime", "the", "--max-len", "5"] if command == "decode" else []
    assert_refused([command, str(run), *extra], match=match, protect=[run])


# `seqtool train -m`: every job is composed and validated before the first one trains
SWEEP_CASES = [
    ("trainer.clip_norm=1,0", r"job clip_norm=0: trainer\.clip_norm=0 is out of range; allowed > 0"),
    ("seed=1,abc", r"job seed=abc: seed='abc' should be int"),
    ("model=char_rnn,convlstm", r"job model=convlstm: model=convlstm does not fit task=charlm"),
    ("task.synthetic.min_length=2,9", r"job min_length=9: task\.synthetic\.min_length=9 is above"),
]


@pytest.mark.parametrize(("sweep", "match"), SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_a_sweep_with_one_bad_job_is_refused_before_any_job_trains(sweep, match, tmp_path):
    family = "translation" if sweep.startswith("task.synthetic") else "charlm"
    argv, run_dir = _argv(family, sweep, tmp_path)
    if sweep.startswith("model="):  # the tiny run's model keys would not fit the other model
        argv = ["train", f"run_dir={run_dir}", *QUICK, sweep]
    assert_refused([argv[0], "-m", *argv[1:]], match=match, protect=[run_dir])
