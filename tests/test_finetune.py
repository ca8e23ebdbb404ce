"""init_from=RUN (seqtool/finetune.py), the fine-tuning heads of the Transformer LM (GPT), freezing, the
body's learning rate and the auxiliary LM loss; and a tiny task on which pretraining must help."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqtool import commands
from seqtool.checkpoint import save_checkpoint
from seqtool.config import compose, instantiate
from seqtool.data.vocab import PAD, WORDS_FILE, WordVocab
from seqtool.errors import UserError
from seqtool.finetune import INIT_FROM_FILE, FineTuning, InitFrom, find_source, parameter_groups
from seqtool.models.transformer_lm import TransformerLM
from seqtool.tasks.base import Loss
from tests.helpers import assert_user_error, quick_trainer, seqtool, tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

GPT = "seqtool.models.transformer_lm.TransformerLM"
WORDS = [f"w{i}" for i in range(40)]  # ids 4..43 after the four specials


def tiny_gpt(seed: int = 0, **sizes) -> TransformerLM:
    """A two-layer GPT on a 44-word vocabulary; `sizes` overrides the sizes or adds a task head."""
    torch.manual_seed(seed)
    options = dict(vocab_size=44, d_model=16, heads=2, num_layers=2, ffn_size=32, dropout=0.0,
                   positions="learned", max_positions=16, norm_first=True, tie_embeddings=True,
                   activation="gelu")  # fmt: skip
    return TransformerLM(**(options | sizes))


def pretrained_run(directory, model: TransformerLM, step: int = 7):
    """A run directory as seqtool train leaves it: config.yaml, vocab/words.json, checkpoints/best."""
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text("name: pretrained\n")
    WordVocab(["<pad>", "<s>", "</s>", "<unk>", *WORDS]).save(directory / WORDS_FILE)
    for name in ("best", "last"):
        save_checkpoint(directory / "checkpoints" / name, model=model, trainer_state={},
                        meta={"step": step, "model": GPT})  # fmt: skip
    return directory


def start_from(run, new_run, model, fine_tuning=FineTuning()):
    """What seqtool train does with init_from=run before training: vocabulary, body, groups, record."""
    init_from = InitFrom(run_dir=new_run, source=find_source(run), fine_tuning=fine_tuning)
    init_from.carry_vocabulary()
    return init_from.parameter_groups(model, model_target=GPT, record=True)


# ------------------------------------------------------------------------------------- init_from
def test_init_from_copies_exactly_the_body_and_nothing_else(tmp_path):
    pretrained = tiny_gpt(seed=1)
    with torch.no_grad():  # as after training: every tensor away from its initial value (biases from 0)
        for parameter in pretrained.parameters():
            parameter.add_(torch.rand_like(parameter) + 0.5)
    run = pretrained_run(tmp_path / "lm", pretrained)
    model, scratch = tiny_gpt(seed=2, num_classes=3), tiny_gpt(seed=2, num_classes=3)
    start_from(run, tmp_path / "new", model)
    body = pretrained.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("classifier."):  # the new head: as the same seed's scratch model has it
            assert torch.equal(tensor, scratch.state_dict()[name]), name
        else:  # the body: the pretrained tensor, which the scratch model does not have
            assert torch.equal(tensor, body[name]), name
            assert not torch.equal(tensor, scratch.state_dict()[name]), name
    record = json.loads((tmp_path / "new" / INIT_FROM_FILE).read_text())
    assert record["copied"] == sorted(body) and record["new"] == ["classifier.bias", "classifier.weight"]
    assert record["left_behind"] == [] and record["step"] == 7 and record["run"] == str(run.resolve())
    assert record["checkpoint"] == str((run / "checkpoints" / "best").resolve())
    assert (tmp_path / "new" / WORDS_FILE).read_bytes() == (run / WORDS_FILE).read_bytes()


def test_a_checkpoint_directory_is_a_source_and_a_run_without_one_is_refused(tmp_path):
    run = pretrained_run(tmp_path / "lm", tiny_gpt())
    source = find_source(run / "checkpoints" / "last")
    assert source.run_dir == run and source.checkpoint_dir == run / "checkpoints" / "last"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no checkpoint"):
        find_source(tmp_path / "empty")


@pytest.mark.parametrize(
    ("new_sizes", "named"),
    [
        ({"d_model": 32}, r"blocks\.0\.feed_forward\.0\.weight \(32, 16\) vs \(32, 32\)"),
        ({"num_layers": 3}, r"new in the body, would start untrained: blocks\.2\."),
        ({"num_layers": 1}, r"in the pretrained body, absent here: blocks\.1\."),
    ],
)
def test_a_body_that_does_not_fit_is_refused_naming_its_tensors(tmp_path, new_sizes, named):
    run = pretrained_run(tmp_path / "lm", tiny_gpt())
    with pytest.raises(UserError, match=named):
        start_from(run, tmp_path / "new", tiny_gpt(num_classes=2, **new_sizes))


def test_the_pretraining_head_outside_the_body_is_left_behind(tmp_path):
    """A tagger fine-tuned from a run that tagged: its tag and intent heads stay behind, the new ones are
    new, and the record lists both."""
    run = pretrained_run(tmp_path / "tagger", tiny_gpt(num_tags=5, num_intents=3))
    model = tiny_gpt(num_classes=2)
    start_from(run, tmp_path / "new", model)
    record = json.loads((tmp_path / "new" / INIT_FROM_FILE).read_text())
    assert record["left_behind"] == ["intent_classifier.bias", "intent_classifier.weight", "tagger.bias",
                                     "tagger.weight"]  # fmt: skip
    assert record["new"] == ["classifier.bias", "classifier.weight"]


# ----------------------------------------------------------------------------------- GPT heads
def test_the_classifier_reads_the_last_real_token_and_ignores_padding():
    model = tiny_gpt(num_classes=3).eval()
    tokens = torch.tensor([[5, 6, 7, 8], [9, 10, PAD, PAD]])
    logits, weights = model(tokens)
    alone, _ = model(tokens[1:, :2])
    assert weights is None and logits.shape == (2, 3)
    assert torch.allclose(logits[1], alone[0], atol=1e-6)  # padding after the sentence changes nothing
    h = model.hidden(tokens)
    assert torch.allclose(logits, model.classifier(torch.stack([h[0, 3], h[1, 1]])), atol=1e-6)


def test_the_tagger_tags_every_token_and_reads_the_intent_at_the_last():
    model = tiny_gpt(num_tags=5, num_intents=3).eval()
    tokens = torch.tensor([[5, 6, 7], [9, 10, PAD]])
    tags, intents = model(tokens)
    h = model.hidden(tokens)
    assert torch.allclose(tags, model.tagger(h)) and tags.shape == (2, 3, 5)
    assert torch.allclose(intents, model.intent_classifier(torch.stack([h[0, 2], h[1, 1]])), atol=1e-6)
    assert tiny_gpt(num_tags=5)(tokens)[1] is None


def test_aux_lm_loss_is_the_causal_lm_loss_against_a_plain_loop():
    """Mean over predicted tokens of -log p(token t+1 | tokens 0..t), each prefix run on its own (so the
    loop also checks that nothing leaks from the right); padding is never a target."""
    model = tiny_gpt(num_classes=2).eval()
    tokens = torch.tensor([[5, 6, 7, 8], [9, 10, 11, PAD]])
    nats, count = 0.0, 0
    for row in tokens.tolist():
        for t in range(len(row) - 1):
            if row[t + 1] == PAD:
                continue
            prefix = torch.tensor([row[: t + 1]])
            log_p = F.log_softmax(model.output(model.hidden(prefix))[0, -1], dim=-1)
            nats, count = nats - log_p[row[t + 1]].item(), count + 1
    assert model.aux_lm_loss(tokens).item() == pytest.approx(nats / count, rel=1e-5)
    one_word = model.aux_lm_loss(torch.tensor([[5, PAD], [7, PAD]]))  # nothing to predict: 0, never NaN
    assert one_word.item() == 0.0


def test_a_language_model_keeps_its_state_dict_names():
    """Checkpoints of Transformer LMs trained before the heads existed still load: no new names."""
    names = set(tiny_gpt().state_dict())
    assert not any(n.startswith(("classifier", "tagger", "intent")) for n in names)
    with pytest.raises(ValueError, match="not both"):
        tiny_gpt(num_classes=2, num_tags=3)


# ------------------------------------------------------------------- freezing and the body's lr
class ClassifyStub:
    """Two fixed batches of sentences and labels, the classify task's loss (a summed cross-entropy), and
    its aux_lm_weight hook: mean CE + λ · mean LM loss, as the interface of issue 17 states it."""

    aux_lm_weight = 0.0

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(4, 44, (8, 6), generator=generator)
        self.labels = torch.randint(0, 2, (8,), generator=generator)

    def batches(self, split, *, train, competence=None):
        while True:
            yield self.tokens, self.labels

    def loss(self, model, batch):
        tokens, labels = batch
        logits, _ = model(tokens)
        total = F.cross_entropy(logits, labels, reduction="sum")
        if self.aux_lm_weight > 0:
            total = total + self.aux_lm_weight * len(labels) * model.aux_lm_loss(tokens)
        return Loss(total=total, count=len(labels))


def stub_trainer(tmp_path, model, groups, *overrides):
    cfg = compose(["trainer.progress=false", "trainer.tensorboard=false", "trainer.lr_schedule.kind=constant",
                   "trainer.lr_schedule.warmup_steps=0", "trainer.clip_norm=null", *overrides])  # fmt: skip
    return instantiate(cfg.trainer, task=ClassifyStub(), model=model, run_dir=tmp_path,
                       device=torch.device("cpu"), model_target=GPT, parameter_groups=groups)  # fmt: skip


def test_a_frozen_body_stays_as_pretrained_while_the_head_learns(tmp_path):
    model = tiny_gpt(num_classes=2)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    body = set(before) - {"classifier.weight", "classifier.bias"}
    trainer = stub_trainer(tmp_path, model, parameter_groups(model, body, FineTuning(freeze_body=True)))
    batches = trainer.task.batches("train", train=True)
    for _ in range(3):
        trainer.train_step(batches)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(model.classifier.weight), id(model.classifier.bias)}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]) == (name in body), name


def test_the_body_learns_at_its_scaled_lr(tmp_path):
    """With plain SGD, one step moves a head weight by lr · g and a body weight by scale · lr · g."""
    model = tiny_gpt(num_classes=2)
    body = {name for name, _ in model.named_parameters() if not name.startswith("classifier")}
    groups = parameter_groups(model, body, FineTuning(body_lr_scale=0.25))
    trainer = stub_trainer(tmp_path, model, groups, "trainer/optimizer=sgd", "trainer.optimizer.lr=0.5")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    logits, _ = model(trainer.task.tokens)
    F.cross_entropy(logits, trainer.task.labels).backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    trainer.train_step(trainer.task.batches("train", train=True))
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.5, 0.125]
    for name, parameter in model.named_parameters():
        lr = 0.125 if name in body else 0.5
        assert torch.allclose(parameter, before[name] - lr * gradients[name], atol=1e-6), name


def test_the_trainer_hands_the_aux_weight_to_the_task_and_the_loss_is_the_weighted_sum(tmp_path):
    model = tiny_gpt(num_classes=2)
    trainer = stub_trainer(tmp_path, model, None, "trainer.aux_lm_weight=0.3")
    task = trainer.task
    assert task.aux_lm_weight == 0.3
    loss = task.loss(model, (task.tokens, task.labels))
    logits, _ = model(task.tokens)
    by_hand = F.cross_entropy(logits, task.labels) + 0.3 * model.aux_lm_loss(task.tokens)
    assert (loss.total / loss.count).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_an_aux_weight_for_a_task_without_the_hook_is_refused(tmp_path):
    cfg = compose(["trainer.aux_lm_weight=0.5", "trainer.progress=false"])
    no_hook = object()  # a task without aux_lm_weight (the char LM, translation, ...)
    with pytest.raises(UserError, match=r"trainer.aux_lm_weight=0.5 .* this task has none"):
        instantiate(cfg.trainer, task=no_hook, model=tiny_gpt(num_classes=2), run_dir=tmp_path,
                    device=torch.device("cpu"), model_target=GPT)  # fmt: skip


# ------------------------------------------------------------------------------- must beat scratch
def topic_sentences(count: int, words_per_topic: range, generator: torch.Generator):
    """Sentences of 8 words from one of two topics (ids 4..23 and 24..43), drawn within `words_per_topic`
    (offsets into a topic's 20 words); the label is the topic."""
    labels = torch.randint(0, 2, (count,), generator=generator)
    offsets = torch.tensor(list(words_per_topic))
    picks = offsets[torch.randint(0, len(offsets), (count, 8), generator=generator)]
    return 4 + 20 * labels[:, None] + picks, labels


def accuracy(model, tokens, labels) -> float:
    with torch.no_grad():
        return float((model(tokens)[0].argmax(-1) == labels).float().mean())


def test_a_pretrained_body_beats_the_same_model_from_scratch_when_labels_are_few(tmp_path):
    """Which topic a sentence is on can be learned from unlabelled text (words of a topic occur together,
    so a language model must track it to predict the next word), but not from 8 labelled sentences that
    use 5 of each topic's 20 words: the test sentences use only the other 15, which a model from scratch
    has never seen (their embeddings stay random: chance), while the pretrained body has."""
    generator = torch.Generator().manual_seed(0)
    unlabelled, _ = topic_sentences(2000, range(20), generator)
    train_tokens, train_labels = topic_sentences(8, range(5), generator)
    test_tokens, test_labels = topic_sentences(400, range(5, 20), generator)

    lm = tiny_gpt(seed=0, num_layers=1)
    optimizer = torch.optim.Adam(lm.parameters(), lr=3e-3)
    for step in range(150):
        batch = unlabelled[(step * 64) % 2000 :][:64]
        optimizer.zero_grad()
        lm.aux_lm_loss(batch).backward()  # the causal LM loss
        optimizer.step()
    run = pretrained_run(tmp_path / "lm", lm)

    def fine_tuned(pretrained: bool) -> float:
        model = tiny_gpt(seed=1, num_layers=1, num_classes=2)  # the same head either way
        if pretrained:
            start_from(run, tmp_path / "new", model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(100):
            optimizer.zero_grad()
            F.cross_entropy(model(train_tokens)[0], train_labels).backward()
            optimizer.step()
        return accuracy(model.eval(), test_tokens, test_labels)

    scratch, pretrained = fine_tuned(pretrained=False), fine_tuned(pretrained=True)
    assert pretrained >= 0.9 and pretrained - scratch >= 0.25, (scratch, pretrained)


# ------------------------------------------------------------------------------ through seqtool train
@pytest.mark.slow
def test_seqtool_train_init_from_a_char_lm_run_and_a_misfit_exits_2(tmp_path):
    """A Transformer LM pretrained on one text continues on another: its vocabulary and body carry over,
    the run records where it came from, it resumes, decode works; another width is one line, exit 2."""
    corpus = tiny_corpus(tmp_path)
    sizes = ["model=transformer_lm", "model.d_model=16", "model.heads=2", "model.num_layers=1",
             "model.ffn_size=32", f"task.path={corpus}", "task.batch_size=4", "task.seq_len=16",
             "task.min_seq_len=4", *quick_trainer(3)]  # fmt: skip
    pretrained, _ = commands.train(compose([*sizes, f"run_dir={tmp_path / 'lm'}"]))
    fine_tuning = [f"run_dir={tmp_path / 'tuned'}", f"init_from={pretrained}", "finetune.body_lr_scale=0.5"]
    tuned, metrics = commands.train(compose([*sizes, *fine_tuning]))
    record = json.loads((tuned / INIT_FROM_FILE).read_text())
    assert record["run"] == str(pretrained.resolve()) and record["step"] == 3 and record["new"] == []
    assert (tuned / "vocab" / "chars.json").read_bytes() == (pretrained / "vocab" / "chars.json").read_bytes()
    assert f"init_from: {pretrained}" in (tuned / "config.yaml").read_text()
    assert math.isfinite(metrics["loss"])
    decoded = seqtool("decode", str(tuned), "--prime", "the ", "--max-len", "5", "--greedy")
    assert decoded.returncode == 0, decoded.stderr
    result = seqtool(
        "train", *sizes, "model.d_model=32", f"run_dir={tmp_path / 'wide'}", f"init_from={pretrained}"
    )
    assert_user_error(result, "blocks.0.feed_forward.0.weight (32, 16) vs (32, 32)")
    assert len(result.stderr.strip().splitlines()) == 1
    # --resume knows the body from init_from.json, without the pretrained run (which may be gone by then),
    # and the body keeps its lr: 0.5 x the optimizer's lr x the schedule, at the resumed step 4 of 4
    (pretrained / "checkpoints" / "best" / "model.safetensors").unlink()
    cfg = commands.resume_config(tuned, ["trainer.max_steps=4"])
    commands.train(cfg, resume=tuned)
    assert json.loads((tuned / INIT_FROM_FILE).read_text()) == record
    logged = [json.loads(line) for line in (tuned / "metrics.jsonl").read_text().splitlines()]
    body_lr = next(r["lr"] for r in logged if r["step"] == 4 and "lr" in r)
    schedule = instantiate(cfg.trainer.lr_schedule)
    assert body_lr == pytest.approx(0.5 * cfg.trainer.optimizer.lr * schedule(3, 4, None))
