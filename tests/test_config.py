import re
from importlib import resources

import pytest
from omegaconf import OmegaConf

from seqtool import schema
from seqtool.config import check_pairing, compose, load_run_config, save_config, validate
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
        (["task=translation", "model=seq2seq_attn", "task.synthetic.kind=copy", "task.synthetic.train_size=7",
          "task.hub.config=y"], {"synthetic": "copy", "synthetic_train_size": 7, "hf_config": "y"}),
        (["task=captioning", "model=captioner", "task.shapes.max_objects=2", "task.files.captions=c.txt",
          "task.hub.name=h"], {"shapes_max_objects": 2, "captions": "c.txt", "hf_name": "h"}),
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


# ------------------------------------------------------------------------ the schema (seqtool/schema.py)
# Configs that hold every key of the range table between them (a key of a model being added may have no
# config yet: its bound is skipped until it has one).
BASES = [
    [],
    ["trainer/optimizer=sgd"],
    ["model=transformer_lm"],
    ["task=translation", "model=seq2seq_attn"],
    ["task=translation", "model=transformer"],
    ["task=captioning", "model=captioner"],
    ["task=video", "model=convlstm"],
    ["task=video", "model=predrnn"],
    ["task=memory", "model=recurrent"],
    ["task=memory", "model=ntm", "task.problem=ntm_copy"],
    ["task=video", "model=e3d_lstm"],
]


@pytest.fixture(scope="module")
def base_configs():
    configs = []
    for overrides in BASES:
        try:
            configs.append(compose(overrides))
        except UserError:  # a model or key another change has not brought in yet
            continue
    return configs


def _holding(configs, path):
    return next((cfg for cfg in configs if OmegaConf.select(cfg, path, default="absent") != "absent"), None)


def _sides(bound: schema.Range, whole: bool) -> tuple[list[float], list[float]]:
    """(values just outside the bound, values on its inside edge), whole numbers for integer keys."""
    step = 1 if whole else 0.5
    outside, inside = [], []
    if bound.low is not None:
        outside.append(bound.low if bound.low_open else bound.low - step)
        inside.append(bound.low + step if bound.low_open else bound.low)
    if bound.high is not None:
        outside.append(bound.high if bound.high_open else bound.high + step)
        inside.append(bound.high - step if bound.high_open else bound.high)
    return outside, inside


@pytest.mark.parametrize("path", sorted(schema.RANGES))
def test_each_bound_refuses_just_outside_and_allows_its_edge(base_configs, path):
    key = path.removesuffix("[]")
    holder = _holding(base_configs, key)
    if holder is None:
        pytest.skip(f"no config has {key} yet")
    current = OmegaConf.select(holder, key)
    sample = current[0] if path.endswith("[]") else current
    whole = isinstance(sample, int) and not isinstance(sample, bool) or (sample is None and isinstance(
        schema.RANGES[path].low, int))  # fmt: skip
    outside, inside = _sides(schema.RANGES[path], whole)
    named = re.escape(f"{key}=") + ".*out of range"
    for number, refused in [(n, True) for n in outside] + [(n, False) for n in inside]:
        cfg = holder.copy()
        OmegaConf.update(cfg, key, [number, *current[1:]] if path.endswith("[]") else number)
        if refused:
            with pytest.raises(UserError, match=named):
                validate(cfg)
        else:  # another rule may refuse the edge value together with the rest; this bound may not
            try:
                validate(cfg)
            except UserError as error:
                assert not re.search(named, str(error)), error


def test_a_range_names_its_edges():
    assert str(schema.Range(low=1)) == ">= 1"
    assert str(schema.Range(low=0, low_open=True, note="null: off")) == "> 0 (null: off)"
    assert str(schema.Range(low=1, high=26)) == "1 to 26"
    assert str(schema.Range(low=0, high=1, high_open=True)) == "in [0, 1)"
    assert str(schema.Range(low=0.0, high=1.0)) == "in [0, 1]"
    assert 0.5 in schema.DROPOUT and 1 not in schema.DROPOUT and float("nan") not in schema.POSITIVE


# (base, overrides that break the rule, overrides that satisfy it, what the refusal says)
RULE_CASES = [
    (
        [],
        ["task.min_seq_len=20", "task.seq_len=10"],
        ["task.min_seq_len=10", "task.seq_len=10"],
        r"task\.min_seq_len=20 is above task\.seq_len=10",
    ),
    (
        ["model=transformer_lm"],
        ["task.seq_len=600"],
        ["task.seq_len=512"],
        r"task\.seq_len=600.*max_positions=512",
    ),
    (
        ["task=translation", "model=seq2seq_attn"],
        ["task.synthetic.min_length=5", "task.synthetic.max_length=4"],
        ["task.synthetic.min_length=4", "task.synthetic.max_length=4"],
        r"min_length=5 is above .*max_length=4",
    ),
    (
        ["task=memory", "model=ntm", "task.problem=ntm_copy"],
        ["task.min_length=30", "task.length=20"],
        ["task.min_length=20", "task.length=20"],
        r"task\.min_length=30 is above task\.length=20",
    ),
    (
        ["task=captioning", "model=captioner"],
        ["task.image_size=72"],
        ["task.image_size=64"],
        r"task\.image_size=72 is above task\.resize_size=64",
    ),
    (
        ["task=video", "model=convlstm"],
        ["task.digit_size=65"],
        ["task.digit_size=64"],
        r"digit_size=65 is above",
    ),
    (
        [],
        ["task.val_fraction=0.5", "task.test_fraction=0.5"],
        ["task.val_fraction=0.5", "task.test_fraction=0.4"],
        r"val_fraction=0\.5 \+ task\.test_fraction=0\.5",
    ),
    (
        ["model=transformer_lm"],
        ["model.heads=3"],
        ["model.heads=8"],
        r"model\.heads=3 does not divide model\.d_model=128",
    ),
    (
        ["task=video", "model=convlstm"],
        ["model.patch_size=3"],
        ["model.patch_size=8"],
        r"patch_size=3 does not divide",
    ),
    (
        ["task=video", "model=convlstm"],
        ["model.kernel_size=2"],
        ["model.kernel_size=5"],
        r"kernel_size=2 must be odd",
    ),
    (
        [],
        ["model.tie_weights=true"],
        ["model.tie_weights=true", "model.embedding_size=256"],
        r"model\.tie_weights=true.*\(got 64 and 256\)",
    ),
    (
        ["task=translation", "model=seq2seq_attn"],
        ["model.tie_embeddings=true", "model.embedding_size=128"],
        ["model.tie_embeddings=true"],
        r"model\.tie_embeddings=true.*\(got 128 and 256\)",
    ),
    (
        ["task=translation", "model=transformer"],
        ["model.share_all_embeddings=true"],
        ["model.share_all_embeddings=true", "task.joint_vocab=true"],
        r"share_all_embeddings=true needs task\.joint_vocab",
    ),
    (
        [],
        ["trainer.teacher_forcing.kind=exponential", "trainer.teacher_forcing.k=1.5"],
        ["trainer.teacher_forcing.kind=exponential", "trainer.teacher_forcing.k=0.999"],
        r"k=1\.5 must be < 1",
    ),
    (
        ["task=translation", "model=seq2seq_attn"],
        ["model.attention=local_p", "model.local_window=0"],
        ["model.attention=local_m", "model.local_window=0"],
        r"local_window=0 must be >= 1 for model\.attention=local_p",
    ),
    (
        ["task=memory", "model=ntm", "task.problem=ntm_copy"],
        ["model.shift_range=2", "model.memory_size=4"],
        ["model.shift_range=2", "model.memory_size=5"],
        r"shift_range=2 needs 2R \+ 1 <= model\.memory_size=4",
    ),
    (
        [],
        ["finetune.freeze_body=true"],
        ["finetune.freeze_body=true", "init_from=runs/pretrained"],
        r"finetune\.freeze_body=true applies to a pretrained body: give init_from=RUN",
    ),
    (  # BERT prepends a class position: 63 tokens + 1 fit 64 positions, 64 + 1 do not
        ["task=classify", "model=bert", "model.max_positions=64"],
        ["task.max_length=64"],
        ["task.max_length=63"],
        r"task\.max_length=64 and the class position need 65 positions, more than model\.max_positions=64",
    ),
    (  # GPT has no class position: 64 tokens fit 64 positions
        ["task=classify", "model=transformer_lm", "model.max_positions=64"],
        ["task.max_length=65"],
        ["task.max_length=64"],
        r"task\.max_length=65 need 65 positions, more than model\.max_positions=64",
    ),
]


def _composed_or_skip(overrides):
    try:
        return compose(overrides)
    except UserError as error:
        if "does not exist" in str(error) or "is not an option" in str(error):
            pytest.skip(f"not in this tree yet: {error}")
        raise


@pytest.mark.parametrize(
    ("base", "bad", "good", "match"), RULE_CASES, ids=[" ".join(c[1]) for c in RULE_CASES]
)
def test_each_rule_between_keys(base, bad, good, match):
    _composed_or_skip(base)
    with pytest.raises(UserError, match=match):
        check_pairing(compose([*base, *bad]))
    check_pairing(compose([*base, *good]))


def test_every_rule_has_a_case():
    """Each rule of schema.RULES and PAIRING_RULES is the one that refuses some row of RULE_CASES."""
    rules, fired = schema.RULES + schema.PAIRING_RULES, set()
    for base, bad, _, _ in RULE_CASES:
        cfg = compose(base)
        for item in bad:
            key, _, text = item.partition("=")
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={text}"]).v)
        plain = OmegaConf.to_container(cfg, resolve=True)
        fired |= {index for index, rule in enumerate(rules) if rule(plain)}
    assert fired == set(range(len(rules)))


def test_a_config_composed_for_its_task_alone_may_keep_the_default_model(tmp_path):
    """Tests and benchmarks compose task=video to build the task; training the pair is what is refused."""
    cfg = compose(["task=video", "model.hidden_size=8"])
    assert cfg.model._target_ == "seqtool.models.char_rnn.CharRNN"
    with pytest.raises(
        UserError, match=r"model=char_rnn does not fit task=video: .*tasks that fit model=char_rnn"
    ):
        save_config(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_unknown_keys_of_a_model_are_type_checked_from_its_annotations():
    """A model's keys need no entry in the range table to be type-checked, and a key without one is
    not range-checked: model.forget_bias has no range, and any float is taken."""
    assert "model.forget_bias" not in schema.RANGES
    assert compose(["model.forget_bias=-3.5"]).model.forget_bias == -3.5
    with pytest.raises(UserError, match=r"model\.forget_bias='high' should be float or null"):
        compose(["model.forget_bias=high"])


def test_a_value_of_a_list_is_typed_by_its_element_and_length():
    with pytest.raises(UserError, match=r"betas=\[0\.9\] should be a list of 2 values \(float, float\)"):
        compose(["trainer.optimizer.betas=[0.9]"])
    with pytest.raises(UserError, match=r"encoder_channels=\[8, 'x'\] should be a list of int"):
        compose(["task=captioning", "model=captioner", "model.encoder_channels=[8,x]"])
    assert compose(["trainer.optimizer.betas=[0.8,0.9]"]).trainer.optimizer.betas == [0.8, 0.9]


# --------------------------------------------------------------------------------- data sources
def test_a_source_on_the_command_line_replaces_the_experiments():
    cfg = compose(["experiment=multi30k_transformer", "task.files.data_dir=corpus"])
    assert (cfg.task.files.data_dir, cfg.task.hub.name, cfg.task.synthetic.kind) == ("corpus", None, "none")
    assert compose(["experiment=multi30k_transformer"]).task.hub.name == "bentrevett/multi30k"
    cfg = compose(["experiment=shakespeare_char", "task.path=input.txt"])
    assert (cfg.task.path, cfg.task.hf_name) == ("input.txt", None)
    cfg = compose(["task=translation", "model=seq2seq_attn", "task.files.train_tsv=train.tsv"])
    assert cfg.task.synthetic.kind == "none"  # the default synthetic task gives way too


def test_two_sources_on_the_command_line_stay_an_error():
    with pytest.raises(
        UserError, match=r"give exactly one data source, not task\.files\.data_dir and task\.hub\.name"
    ):
        compose(["experiment=multi30k_transformer", "task.files.data_dir=a", "task.hub.name=b"])
    # switching a source off is not giving one
    cfg = compose(["experiment=multi30k_transformer", "task.hub.name=null", "task.files.data_dir=a"])
    assert cfg.task.files.data_dir == "a"


def test_a_sweep_job_replaces_the_source_as_a_single_run_does(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from seqtool import sweep

    overrides = ["experiment=multi30k_transformer", "task.files.data_dir=corpus"]
    with initialize_config_module(config_module="seqtool.conf", version_base="1.3"):
        raw = hydra_compose(config_name="config", overrides=overrides)
    assert raw.task.hub.name == "bentrevett/multi30k"  # Hydra alone keeps both
    job = sweep._job_config(raw, overrides, tmp_path / "job")
    assert (job.task.hub.name, job.task.files.data_dir, job.run_dir) == (
        None,
        "corpus",
        str(tmp_path / "job"),
    )


# ------------------------------------------------------------------------------ resume policy
RESUMED = {
    "trainer.max_steps": 900, "trainer.max_epochs": 5, "trainer.eval_every": 30, "trainer.log_every": 5,
    "trainer.sample_every": 0, "trainer.patience": 4, "trainer.keep_best": 3, "trainer.on_nonfinite": "skip",
    "trainer.divergence.factor": 50.0, "trainer.divergence.window": 10, "trainer.precision": "fp32",
    "trainer.compile": True, "trainer.progress": False, "trainer.tensorboard": False, "device": "cpu",
}  # fmt: skip


@pytest.fixture
def saved_run(tmp_path):
    save_config(compose([]), tmp_path)
    return tmp_path


def test_every_resumable_key_may_change(saved_run):
    assert set(RESUMED) == set(schema.RESUMABLE)
    items = [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in RESUMED.items()
    ]
    cfg = load_run_config(saved_run, items)
    assert {key: OmegaConf.select(cfg, key) for key in RESUMED} == RESUMED
    assert cfg.model == compose([]).model


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.hidden_size=16", r"cannot change model\.hidden_size \(256 -> 16\)"),
        ("task.batch_size=3", r"cannot change task\.batch_size \(32 -> 3\)"),
        (
            "trainer.lr_schedule.kind=constant",
            r"cannot change trainer\.lr_schedule\.kind \('cosine' -> 'constant'\)",
        ),
        ("model=transformer_lm", r"cannot change model \(CharRNN -> 'transformer_lm'\)"),
        ("trainer.max_step=9", r"cannot change trainer\.max_step \(None -> 9\)"),
        ("trainer/optimizer=sgd", r"give key=value overrides"),
        ("trainer.max_steps=-1", r"trainer\.max_steps=-1 is out of range"),
    ],
)
def test_a_resume_keeps_what_shaped_the_checkpoint(saved_run, override, match):
    with pytest.raises(UserError, match=match):
        load_run_config(saved_run, [override])


def test_a_resume_may_repeat_a_saved_value(saved_run):
    assert load_run_config(saved_run, ["model.hidden_size=256", "seed=1234"]).model.hidden_size == 256
