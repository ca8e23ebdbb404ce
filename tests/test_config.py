from importlib import resources

import pytest
from omegaconf import OmegaConf

from seqtool.config import compose, load_run_config
from seqtool.errors import UserError


def test_default_composes_a_char_rnn_on_the_embedded_corpus():
    cfg = compose([])
    assert cfg.model._target_ == "seqtool.models.char_rnn.CharRNN"
    assert cfg.task._target_ == "seqtool.tasks.charlm.CharLMTask"
    assert cfg.task.path is None and cfg.task.hf_name is None


def test_overrides_reach_the_config():
    cfg = compose(["model.cell=gru", "trainer.max_steps=500", "task.path=corpus.txt"])
    assert (cfg.model.cell, cfg.trainer.max_steps, cfg.task.path) == ("gru", 500, "corpus.txt")


def test_experiment_overrides_only_what_changes():
    cfg = compose(["experiment=shakespeare_char"])
    assert cfg.name == "shakespeare_char" and cfg.model.hidden_size == 512
    assert cfg.model.cell == "lstm"  # untouched default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=nope", "model/nope"),
        ("model.nope=1", "nope"),
        ("model.hidden_size=abc", "should be int"),
        ("model.cell=transformer", "one of rnn, lstm, gru"),
        ("trainer.eval_mode=sideways", "one of min, max"),
        ("trainer.max_steps=1.5", "should be int"),
        ("model.cell=[", "bad override"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        compose([override])


def test_a_foreign_target_in_a_run_config_is_refused_before_import(tmp_path):
    cfg = compose([])
    cfg.model._target_ = "os.system"
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(UserError, match="not allowed"):
        load_run_config(tmp_path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="not a seqtool run directory"):
        load_run_config(tmp_path)
    (tmp_path / "config.yaml").write_text("just: [a, list")
    with pytest.raises(UserError, match="cannot read"):
        load_run_config(tmp_path)


EXPERIMENTS = sorted(
    f.name.removesuffix(".yaml")
    for f in resources.files("seqtool.conf").joinpath("experiment").iterdir()
    if f.name.endswith(".yaml")
)


def test_there_are_experiments():
    assert "shakespeare_char" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_with_the_smoke_trainer(name):
    cfg = compose([f"experiment={name}", "debug=smoke"])
    assert cfg.trainer.max_steps <= 10


def test_an_experiment_carries_its_trainer_and_debug_smoke_overrides_it():
    assert compose(["experiment=dates_attention"]).trainer.max_steps == 1500
    assert compose(["experiment=dates_attention"]).trainer.eval_metric == "exact_match"
    smoke = compose(["experiment=dates_attention", "debug=smoke"])
    assert smoke.trainer.max_steps == 6 and smoke.trainer.eval_metric == "exact_match"
    assert compose(["experiment=dates_attention", "trainer=smoke"]) == smoke  # the old spelling
    assert compose(["debug=smoke", "trainer.max_steps=9"]).trainer.max_steps == 9  # a key override wins


def test_a_run_saved_with_the_flat_source_keys_still_loads(tmp_path):
    """Runs saved before the data sources became nested configs keep decoding and evaluating."""
    from omegaconf import OmegaConf

    from seqtool.config import load_run_config

    for overrides, flat in [
        (["task=translation", "task.synthetic.kind=copy", "task.synthetic.train_size=7", "task.hub.config=y"],
         {"synthetic": "copy", "synthetic_train_size": 7, "hf_config": "y"}),
        (["task=captioning", "task.shapes.max_objects=2", "task.files.captions=c.txt", "task.hub.name=h"],
         {"shapes_max_objects": 2, "captions": "c.txt", "hf_name": "h"}),
    ]:  # fmt: skip
        cfg = compose(overrides)
        task = OmegaConf.to_container(cfg.task)
        old = {key: value for key, value in task.items() if not isinstance(value, dict)}
        for group in ("synthetic", "files", "hub", "shapes"):
            for key, value in task.get(group, {}).items():
                if key != "_target_":
                    old[_flat_name(group, key)] = value
        assert flat.items() <= old.items()
        cfg.task = old
        run = tmp_path / task["_target_"]
        run.mkdir()
        OmegaConf.save(cfg, run / "config.yaml")
        assert load_run_config(run) == compose(overrides)


def _flat_name(group: str, key: str) -> str:
    """The key's name before the grouping (see seqtool.config._SOURCE_GROUPS)."""
    if group == "synthetic":
        return "synthetic" if key == "kind" else f"synthetic_{key}"
    return {"files": key, "hub": f"hf_{key}", "shapes": f"shapes_{key}"}[group]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_smoke_runs(name, tmp_path):
    """Each experiment with debug=smoke trains end to end; hub corpora are swapped for a local file, and
    parallel corpora (hub or files) for the built-in reverse task."""
    from seqtool import commands
    from tests.helpers import tiny_corpus

    overrides = [f"experiment={name}", "debug=smoke", f"run_dir={tmp_path / 'run'}", "device=cpu"]
    task = compose([f"experiment={name}"]).task
    if "path" in task:
        overrides += [f"task.path={tiny_corpus(tmp_path)}", "task.hf_name=null", "task.val_fraction=0.1"]
    if "synthetic" in task and task.synthetic.kind == "none":  # a hub corpus or files a recipe names: the
        # built-in reverse task instead (offline, nothing on disk)
        overrides += ["task.hub.name=null", "task.synthetic.kind=reverse", "task.synthetic.train_size=200"]
    if task._target_ == "seqtool.tasks.video.VideoTask":
        overrides += [
            "task.image_size=16",
            "task.digit_size=8",
            "task.input_frames=3",
            "task.target_frames=2",
            "task.batch_size=2",
            "task.eval_sequences=4",
            "model.hidden_channels=4",
            "model.patch_size=2",
        ]
    if task._target_ == "seqtool.tasks.captioning.CaptioningTask":
        overrides += [  # the generated shapes stand in for an image folder
            "task.data=shapes",
            "task.image_size=32",
            "task.resize_size=32",
            "task.shapes.train_size=16",
            "task.shapes.val_size=4",
            "task.batch_size=4",
            "model.encoder_channels=[4,8]",
            "model.grid_size=4",
            "model.embedding_size=8",
            "model.hidden_size=16",
            "model.attention_size=8",
        ]
    run_dir, metrics = commands.train(compose(overrides))
    assert metrics and (run_dir / "checkpoints" / "best" / "meta.json").is_file()
