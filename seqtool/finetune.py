"""Fine-tuning: start a new run from the body of a trained one (`seqtool train init_from=RUN ...`).

::

    init_from=RUN            RUN/checkpoints/best (else last), or the checkpoint directory named
      │                      (RUN/checkpoints/last); read through seqtool.checkpoint: safetensors only,
      │                      meta.json checked, nothing unpickled
      ├─► RUN/vocab/words.json (chars.json for a char LM) copied into the new run before the task's
      │   setup, so the new task numbers its tokens as the pretrained embedding does (its own label
      │   files are built from its train split: the head is new)
      ├─► the new model is built as usual (seeded: its head starts as a scratch run's would)
      ├─► the body is copied: every tensor whose name AND shape the checkpoint holds
      └─► NEW_RUN/init_from.json   the source run, checkpoint and step; the copied, new and left-behind names

    finetune.freeze_body=true      the body's parameters get no gradient and no optimizer slot
    finetune.body_lr_scale=s       the body learns at s × trainer.optimizer.lr, the head at the lr itself

What may differ between the two models (the rule; a breach is one line naming the tensors, exit 2):

- The model class must be the same (a GPT body cannot become a BERT): the checkpoint's meta says which.
- The body is made of whole top-level modules (``embedding``, ``blocks``, ``norm``, ``encoder``...): the
  modules in which at least one tensor is copied. Inside them every tensor must be in both models with
  one shape: a layer that would start untrained inside a pretrained stack (``blocks.2`` when RUN had two
  layers), or a pretrained layer the new model drops, or another width, is refused.
- Outside the body, names only in the new model are its new head (``classifier``, ``tagger``...), and
  names only in the checkpoint are the pretraining head left behind (BERT's masked-LM head when the new
  model has none): both are expected, and listed in init_from.json.

`--resume` of a fine-tuned run loads its own checkpoint: the pretrained run is not read again; the body's
names come from init_from.json, so freezing and the body's learning rate hold after a resume too.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from seqtool.checkpoint import find_checkpoint, load_checkpoint
from seqtool.config import CONFIG_FILE, instantiate
from seqtool.data.vocab import WORDS_FILE
from seqtool.errors import UserError
from seqtool.tasks.charlm import VOCAB_FILE as CHARS_FILE

INIT_FROM_FILE = "init_from.json"  # in the new run directory
# the files that number the rows of the pretrained embedding (word-level tasks; the char LM); a task's
# label files are not carried: they number the rows of the head, which is new
CARRIED_VOCABULARY = (WORDS_FILE, CHARS_FILE)


@dataclass(frozen=True)
class FineTuning:
    """How the pretrained body trains (conf/config.yaml `finetune:`)."""

    freeze_body: bool = False  # the body keeps its pretrained weights; only the head learns
    body_lr_scale: float = 1.0  # the body's lr as a fraction of the head's (trainer.optimizer.lr)


@dataclass(frozen=True)
class Source:
    """The pretrained run and the checkpoint of it that init_from names."""

    run_dir: Path
    checkpoint_dir: Path


@dataclass(frozen=True)
class Transfer:
    """What copying the body did, by state_dict name."""

    copied: list[str]  # the body: in both models, one shape, copied
    new: list[str]  # only in the new model: its head, as a scratch run initialises it
    left_behind: list[str]  # only in the checkpoint: the pretraining head


# ----------------------------------------------------------------------------------------- the source
def find_source(init_from: str | Path) -> Source:
    """The run and checkpoint `init_from` names: a run directory (its best checkpoint, else its last) or
    one of its checkpoint directories; anything else is a UserError."""
    path = Path(init_from)
    if not path.exists():
        raise UserError(f"init_from={init_from} does not exist; give a run directory seqtool train made")
    if find_checkpoint(path) is not None:  # RUN/checkpoints/last, best or top/step_N: RUN holds config.yaml
        run_dir = next((p for p in path.parents if (p / CONFIG_FILE).is_file()), path.parent.parent)
        return Source(run_dir=run_dir, checkpoint_dir=path)
    for name in ("best", "last"):
        if find_checkpoint(path / "checkpoints" / name) is not None:
            return Source(run_dir=path, checkpoint_dir=path / "checkpoints" / name)
    raise UserError(
        f"init_from={init_from} holds no checkpoint (no checkpoints/best or checkpoints/last); give a run "
        "directory that trained, or one of its checkpoints (RUN/checkpoints/last)"
    )


def carry_vocabulary(source: Source, run_dir: Path) -> None:
    """Copy the pretrained run's token vocabulary into the new run, where the task's setup loads it."""
    carried = [relative for relative in CARRIED_VOCABULARY if (source.run_dir / relative).is_file()]
    if not carried:
        raise UserError(
            f"init_from: {source.run_dir} has no {' or '.join(map(str, CARRIED_VOCABULARY))}, so its "
            "embedding rows cannot be matched to tokens; give the run directory itself (not a copy of its "
            "checkpoint alone)"
        )
    for relative in carried:
        target = Path(run_dir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(source.run_dir / relative, partial)
        os.replace(partial, target)  # atomic: a rank reading it never sees half a file


# --------------------------------------------------------------------------------- copying the body
def plan_transfer(wanted: dict[str, Tensor], pretrained: dict[str, Tensor], where: str) -> Transfer:
    """Which tensors of `pretrained` go into a model whose state_dict is `wanted` (the rule in the module
    docstring); a breach is a UserError naming the tensors."""
    mismatched = [
        f"{name} {tuple(pretrained[name].shape)} vs {tuple(wanted[name].shape)}"
        for name in sorted(set(wanted) & set(pretrained))
        if wanted[name].shape != pretrained[name].shape
    ]
    if mismatched:
        raise UserError(f"init_from: {where} does not fit this model (pretrained vs new shape): "
                        f"{_few(mismatched)}; build it with the pretrained run's model sizes")  # fmt: skip
    copied = sorted(set(wanted) & set(pretrained))
    if not copied:
        raise UserError(f"init_from: {where} shares no tensor name with this model; nothing to copy")
    body_modules = {_module(name) for name in copied}
    new = sorted(set(wanted) - set(pretrained))
    left_behind = sorted(set(pretrained) - set(wanted))
    untrained = [name for name in new if _module(name) in body_modules]
    dropped = [name for name in left_behind if _module(name) in body_modules]
    if untrained or dropped:
        problems = [f"new in the body, would start untrained: {_few(untrained)}"] if untrained else []
        problems += [f"in the pretrained body, absent here: {_few(dropped)}"] if dropped else []
        raise UserError(f"init_from: {where} does not fit this model: {'; '.join(problems)}; build it "
                        "with the pretrained run's model sizes (num_layers, ...)")  # fmt: skip
    return Transfer(copied=copied, new=new, left_behind=left_behind)


def _module(name: str) -> str:
    """The top-level module a state_dict name belongs to: blocks.0.ffn.weight -> blocks."""
    return name.partition(".")[0]


def _few(names: list[str], shown: int = 4) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_body(model: nn.Module, source: Source, *, model_target: str) -> tuple[Transfer, int]:
    """Copy the pretrained body into `model` (in place); returns what was copied and the checkpoint's
    step. The checkpoint must hold the same model class."""
    checkpoint = load_checkpoint(source.checkpoint_dir, map_location="cpu")
    found = checkpoint.meta["model"]
    if found != model_target:
        raise UserError(
            f"init_from: {source.checkpoint_dir} holds a {found}, this run builds a {model_target}; "
            f"fine-tune with the model it was pretrained as ({_model_option(found)})"
        )
    transfer = plan_transfer(model.state_dict(), checkpoint.model_state, str(source.checkpoint_dir))
    model.load_state_dict({name: checkpoint.model_state[name] for name in transfer.copied}, strict=False)
    return transfer, int(checkpoint.meta["step"])


def _model_option(target: str) -> str:
    from seqtool.shapes import _conf_name

    return f"model={_conf_name('model', target)}"


# ------------------------------------------------------------------------------------ the new run
@dataclass
class InitFrom:
    """A run that starts from a pretrained body: `source` for a new run, None when it is resumed (the
    body's names are then read back from its init_from.json)."""

    run_dir: Path
    source: Source | None
    fine_tuning: FineTuning

    @classmethod
    def of(cls, cfg: DictConfig, run_dir: Path, *, resuming: bool) -> InitFrom | None:
        """None unless the config has init_from; a new run's source is found (or refused) here, before
        anything is written."""
        init_from = OmegaConf.select(cfg, "init_from", default=None)  # runs saved before it have none
        if not init_from:
            return None
        source = None if resuming else find_source(init_from)
        return cls(run_dir=Path(run_dir), source=source, fine_tuning=instantiate(cfg.finetune))

    def carry_vocabulary(self) -> None:
        """A new run gets the pretrained run's vocabulary before its task's setup (a resumed one has it)."""
        if self.source is not None:
            carry_vocabulary(self.source, self.run_dir)

    def parameter_groups(self, model: nn.Module, *, model_target: str, record: bool) -> list[dict[str, Any]]:
        """Copy the body into `model` (a new run; `record` writes init_from.json), then the optimizer's
        parameter groups: the head at the optimizer's lr, the body scaled or frozen."""
        if self.source is None:
            body = set(read_record(self.run_dir)["copied"])
        else:
            transfer, step = load_body(model, self.source, model_target=model_target)
            body = set(transfer.copied)
            if record:
                write_record(self.run_dir, self.source, step, transfer)
        return parameter_groups(model, body, self.fine_tuning)


def parameter_groups(model: nn.Module, body: set[str], fine_tuning: FineTuning) -> list[dict[str, Any]]:
    """[head group, body group] for the optimizer; a frozen body gets requires_grad=False and no group.
    Each group's lr_scale multiplies the optimizer's lr (seqtool.train.Trainer)."""
    head_parameters, body_parameters = [], []
    for name, parameter in model.named_parameters():  # a tied weight appears once, under its first name
        (body_parameters if name in body else head_parameters).append(parameter)
    if fine_tuning.freeze_body:
        for parameter in body_parameters:
            parameter.requires_grad_(False)
        if not head_parameters:
            raise UserError("finetune.freeze_body=true leaves nothing to train: every parameter of this "
                            "model was copied from init_from; add a task head or unfreeze")  # fmt: skip
        return [{"params": head_parameters, "name": "head", "lr_scale": 1.0}]
    groups = [
        {"params": head_parameters, "name": "head", "lr_scale": 1.0},
        {"params": body_parameters, "name": "body", "lr_scale": fine_tuning.body_lr_scale},
    ]
    return [group for group in groups if group["params"]]


def write_record(run_dir: Path, source: Source, step: int, transfer: Transfer) -> None:
    """NEW_RUN/init_from.json: which run and checkpoint the body came from, and what was copied."""
    record = {
        "run": str(source.run_dir.resolve()),
        "checkpoint": str(source.checkpoint_dir.resolve()),
        "step": step,
        "counts": {
            "copied": len(transfer.copied),
            "new": len(transfer.new),
            "left_behind": len(transfer.left_behind),
        },  # fmt: skip
        "copied": transfer.copied,
        "new": transfer.new,
        "left_behind": transfer.left_behind,
    }
    (Path(run_dir) / INIT_FROM_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_record(run_dir: Path) -> dict[str, Any]:
    """A fine-tuned run's init_from.json (for --resume); missing or malformed is a UserError."""
    path = Path(run_dir) / INIT_FROM_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not all(isinstance(n, str) for n in record["copied"]):
            raise ValueError("no list of copied names")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{path} is missing or malformed ({error}): this run was started with init_from and --resume "
            "needs it to know its pretrained body; restore it from a copy of the run"
        ) from None
    return record
