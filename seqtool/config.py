"""Compose the config (conf/ + overrides), guard what it may instantiate, and make the run directory.

Models, tasks, optimizers and schedules are built the Hydra way, ``instantiate`` on a ``_target_``, with
one guard: only targets inside ``seqtool.`` and ``torch.optim.`` are allowed, so a config read from a run
directory can never make seqtool import or run foreign code. Before instantiating, every argument is
checked against the target's type hints, so ``model.hidden_size=abc`` is a clear error, not a crash.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import types
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from seqtool.errors import UserError

CONFIG_MODULE = "seqtool.conf"
ALLOWED_TARGET_PREFIXES = ("seqtool.", "torch.optim.")
CONFIG_FILE = "config.yaml"


# Config options that moved, as the user may still spell them: trainer=smoke became the debug group's
# smoke (applied after an experiment, which now carries its own trainer settings).
RESPELLED = {"trainer=smoke": "debug=smoke"}


def respell(overrides: list[str]) -> list[str]:
    """The overrides with moved options in their new spelling (see RESPELLED)."""
    return [RESPELLED.get(item, item) for item in overrides]


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The root config with Hydra overrides applied; a bad override is a UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=respell(list(overrides or [])))
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"bad override: {_one_line(error)}") from None
    validate(cfg)
    return cfg


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


def validate(cfg: DictConfig) -> None:
    """Refuse foreign targets and arguments of the wrong type anywhere in the config."""
    for path, node in _target_nodes(cfg, ""):
        target = _resolve_target(str(node["_target_"]), path)
        _check_arguments(target, node, path)


def _target_nodes(node: Any, path: str):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            yield from _target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            yield from _target_nodes(item, f"{path}[{index}]")


def _resolve_target(name: str, path: str) -> Any:
    """Import a target, but only from the allowed packages."""
    if not name.startswith(ALLOWED_TARGET_PREFIXES):
        raise UserError(
            f"{path}._target_={name!r} is not allowed: only seqtool.* and torch.optim.* are built"
        )
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):  # the target's own module is missing
            raise UserError(f"{path}._target_={name!r} does not exist") from None
        raise  # a module that exists failed to import: an internal error, keep the traceback
    if not hasattr(module, attribute):
        raise UserError(f"{path}._target_={name!r} does not exist")
    return getattr(module, attribute)


def _check_arguments(target: Any, node: DictConfig, path: str) -> None:
    """Compare each configured argument with the target's signature and type hints."""
    try:
        signature = inspect.signature(target)
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError, NameError):
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key in node:
        if str(key).startswith("_"):
            continue
        if key not in signature.parameters and not takes_any:
            raise UserError(f"{path}.{key} is not an option of {node['_target_']}")
        value = OmegaConf.to_container(node, resolve=True)[key]
        if key in hints and not _matches(value, hints[key]):
            raise UserError(f"{path}.{key}={value!r} should be {_describe(hints[key])}")


def _matches(value: Any, hint: Any) -> bool:
    """A small runtime type check for what configs hold: int, float, bool, str, Literal, Optional, list."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is inspect.Parameter.empty:
        return True
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (int, str):
        return isinstance(value, hint) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    return True  # anything richer (tensors, callables, nested targets) is checked by the target itself


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate behind the target guard; a constructor's ValueError is the user's."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    for path, target_node in _target_nodes(node, ""):
        _resolve_target(str(target_node["_target_"]), path or str(node["_target_"]))
    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (ValueError, UserError)):
            raise UserError(str(cause)) from None
        raise


def new_run_dir(cfg: DictConfig) -> Path:
    """run_dir when given, else runs/<name>/<timestamp>."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / str(cfg.name) / stamp


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """The saved config of a run directory (plus overrides), validated like a composed one."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} does not exist")
    if not path.is_file():
        raise UserError(f"{run_dir} is not a seqtool run directory (no {CONFIG_FILE})")
    try:
        cfg = OmegaConf.load(path)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except Exception as error:  # noqa: BLE001 - yaml and omegaconf raise many kinds; all mean "malformed"
        raise UserError(f"cannot read {path}: {_one_line(error)}") from None
    if not isinstance(cfg, DictConfig) or not {"model", "task", "trainer"} <= set(cfg.keys()):
        raise UserError(f"{path} is not a seqtool config (needs model, task and trainer)")
    nest_flat_sources(cfg.task)
    validate(cfg)
    return cfg


# The data sources of translation and captioning were flat task keys until they became nested configs
# (task.synthetic_train_size -> task.synthetic.train_size). A run saved before keeps decoding and
# evaluating: its saved task is nested here, group by group: (group, its target, {old key: new key}).
_SOURCE_GROUPS = {
    "seqtool.tasks.translation.TranslationTask": [
        ("synthetic", "seqtool.data.sources.SyntheticSource",
         {"synthetic": "kind"} | {f"synthetic_{k}": k for k in ("train_size", "val_size", "test_size",
                                                                 "min_length", "max_length", "alphabet")}),
        ("files", "seqtool.data.sources.LocalFiles",
         {k: k for k in ("data_dir", "train_prefix", "val_prefix", "test_prefix", "train_src", "train_tgt",
                         "val_src", "val_tgt", "test_src", "test_tgt", "train_tsv", "val_tsv", "test_tsv")}),
        ("hub", "seqtool.data.sources.HubSource",
         {f"hf_{k}": k for k in ("name", "config", "train_split", "val_split", "test_split")}),
    ],
    "seqtool.tasks.captioning.CaptioningTask": [
        ("files", "seqtool.data.captions.CaptionFiles",
         {k: k for k in ("image_dir", "captions", "splits_dir")}),
        ("hub", "seqtool.data.captions.CaptionHub",
         {f"hf_{k}": k for k in ("name", "image_column", "captions_column", "train_split", "val_split",
                                 "test_split")}),
        ("shapes", "seqtool.data.shapes.ShapesSource",
         {f"shapes_{k}": k for k in ("train_size", "val_size", "test_size", "max_objects",
                                     "captions_per_image")}),
    ],
}  # fmt: skip


def nest_flat_sources(task: DictConfig) -> None:
    """Move a saved task's flat data-source keys into their nested configs (in place); a task already
    nested, or of another kind, is left as it is."""
    for group, target, renames in _SOURCE_GROUPS.get(str(task.get("_target_")), []):
        if isinstance(task.get(group), DictConfig) or not all(old in task for old in renames):
            continue
        values = {new: task[old] for old, new in renames.items()}
        for old in renames:
            del task[old]
        task[group] = {"_target_": target, **values}
