"""Compose the config (conf/ + overrides), settle its data source, validate it, and make the run directory.

Models, tasks, optimizers and schedules are built the Hydra way, ``instantiate`` on a ``_target_``, with
one guard: only targets inside ``seqtool.`` and ``torch.optim.`` are allowed, so a config read from a run
directory can never make seqtool import or run foreign code. Before anything is built, ``validate`` holds
the whole config to seqtool/schema.py: every argument against its target's type hints, the model against
its task, every number against its range, the rules between keys; so ``model.hidden_size=abc``,
``trainer.clip_norm=0`` or ``model=convlstm task=translation`` is one clear error, not a crash or a
silently harmful run. The same check runs on a composed config, on each job of a sweep and on the
saved config of a run directory (decode, eval, resume, where only schema.RESUMABLE keys may change).
"""

from __future__ import annotations

import collections.abc
import datetime
import importlib
import inspect
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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
    """The root config with Hydra overrides applied, its data source settled and validated; a bad
    override is a UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException

    overrides = respell(list(overrides or []))
    try:
        _check_keys(overrides)
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"bad override: {_one_line(error)}") from None
    settle(cfg, overrides)
    return cfg


def settle(cfg: DictConfig, overrides: list[str]) -> None:
    """What composition leaves to seqtool: a data source given on the command line replaces the one the
    config (an experiment) chose; then the whole config is validated. Sweeps call it per job."""
    choose_source(cfg, overrides)
    validate(cfg)


def _check_keys(overrides: list[str]) -> None:
    """Hydra reads `=5` as a group override without a name and fails deep inside; say so here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for item, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if not parsed.key_or_group:
            raise UserError(f"bad override {item!r}: it needs a key (key=value, e.g. trainer.max_steps=5)")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


# ----------------------------------------------------------------------------------- data sources
# The data sources of a task, each {key under task: the value that means "not this source"}. A task
# reads exactly one; an experiment picks a default (multi30k_transformer: the hub), and a source given
# on the command line (task.files.data_dir=DIR) replaces it, as a user means it to.
_FILE_KEYS = ("data_dir", "train_src", "train_tgt", "val_src", "val_tgt", "test_src", "test_tgt",
              "train_tsv", "val_tsv", "test_tsv")  # fmt: skip
DATA_SOURCES: dict[str, list[dict[str, Any]]] = {
    "seqtool.tasks.translation.TranslationTask": [
        {"synthetic.kind": "none"},
        {f"files.{key}": None for key in _FILE_KEYS},
        {"hub.name": None},
    ],
    "seqtool.tasks.charlm.CharLMTask": [{"path": None}, {"hf_name": None}],
    "seqtool.tasks.video.VideoTask": [{"mnist_path": None}, {"hf_name": None}],
    "seqtool.tasks.lm.WordLMTask": [
        {"path": None},
        {"hf_name": None},
        {"data_dir": None},
        {"train_path": None, "val_path": None, "test_path": None},
    ],
    "seqtool.tasks.classify.ClassifyTask": [
        {"data_dir": None},
        {"train_path": None, "val_path": None, "test_path": None},
        {"hub": None},
    ],
    "seqtool.tasks.tagging.TaggingTask": [
        {"data_dir": None},
        {"train_path": None, "val_path": None, "test_path": None},
    ],
    "seqtool.tasks.mlm.MaskedLMTask": [{"path": None}, {"data_dir": None}, {"hf_name": None}],
}


def choose_source(cfg: DictConfig, overrides: list[str]) -> None:
    """Switch off every data source but the one the overrides give (in place); two given is an error."""
    sources = DATA_SOURCES.get(str(OmegaConf.select(cfg, "task._target_")), [])
    given_keys = {_override_key(item).removeprefix("task.") for item in overrides}
    chosen = [
        (source, keys)
        for source in sources
        if (keys := [key for key in source if key in given_keys and _source_value(cfg, key) != source[key]])
    ]
    if len(chosen) > 1:
        named = " and ".join(f"task.{keys[0]}" for _, keys in chosen)
        raise UserError(f"give exactly one data source, not {named}")
    if chosen:
        for source in sources:
            if source is not chosen[0][0]:
                for key, off in source.items():
                    OmegaConf.update(cfg, f"task.{key}", off)


def _override_key(item: str) -> str:
    return item.partition("=")[0].lstrip("+~")


def _source_value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, f"task.{key}", default=None)


# ------------------------------------------------------------------------------------- validation
def validate(cfg: DictConfig) -> None:
    """Refuse what seqtool/schema.py does not allow, first to last: a foreign target, a value of the
    wrong type (from the targets' annotations), a value out of its range, two keys that contradict each
    other. The first problem found is one UserError."""
    from seqtool import schema

    plain = _resolved(cfg)
    for key, hint in schema.ROOT_TYPES.items():
        if key in plain and not _matches(plain[key], hint):
            raise UserError(f"{key}={_show(plain[key])} should be {_describe(hint)}")
    for path, node in _target_nodes(plain, ""):
        _check_arguments(_resolve_target(str(node["_target_"]), path), node, path)
    _check_ranges(plain, "", schema.RANGES)
    for rule in schema.RULES:
        if problem := rule(plain):
            raise UserError(problem)


def check_pairing(cfg: DictConfig) -> None:
    """Refuse a model that does not fit its task (seqtool.shapes), naming the tasks that fit it, then the
    schema's rules between the two. Checked where a config is to be trained or rebuilt: before a run
    directory is written (save_config), for every job of a sweep before the first trains, and on a saved
    run; a config composed only to build its task (a test, a benchmark) may leave the default model
    beside any task."""
    from seqtool import schema, shapes

    plain = _resolved(cfg)
    if _has_target(plain, "model") and _has_target(plain, "task"):
        shapes.check_config_fits(plain)
    for rule in schema.PAIRING_RULES:
        if problem := rule(plain):
            raise UserError(problem)


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain Python values, interpolations resolved (${seed} and the like)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        raise UserError(f"cannot resolve the config: {_one_line(error)}") from None


def _has_target(plain: dict[str, Any], key: str) -> bool:
    return isinstance(plain.get(key), dict) and "_target_" in plain[key]


def _target_nodes(node: Any, path: str):
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, child in node.items():
            yield from _target_nodes(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
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


def _check_arguments(target: Any, node: dict[str, Any], path: str) -> None:
    """Compare each configured argument with the target's signature and type hints."""
    try:
        signature = inspect.signature(target)
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError, NameError):
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if key not in signature.parameters and not takes_any:
            raise UserError(f"{path}.{key} is not an option of {node['_target_']}")
        if key in hints and not _matches(value, hints[key]):
            raise UserError(f"{path}.{key}={_show(value)} should be {_describe(hints[key])}")


def _matches(value: Any, hint: Any) -> bool:
    """A runtime type check of what configs hold (numbers, strings, lists, null) against a hint:
    int, float, bool, str, Literal, Optional/Union, list[X], tuple[X, Y], tuple[X, ...]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is inspect.Parameter.empty:
        return True
    if isinstance(value, dict) and "_target_" in value:
        return True  # a nested config: checked as a node of its own
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
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
    if origin is tuple and args:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(_matches(item, arg) for item, arg in zip(value, args))
    if origin in (list, collections.abc.Sequence) and args:
        return isinstance(value, (list, tuple)) and all(_matches(item, args[0]) for item in value)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if (
        inspect.isclass(hint)
        and isinstance(value, (str, int, float, bool, list))
        and not issubclass(hint, Path)
    ):
        return isinstance(value, hint)  # a tensor, a module: no plain config value is one
    return True  # anything richer (callables, paths, nested objects) is checked by the target itself


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        plain = [a for a in args if not (inspect.isclass(a) and a.__module__.startswith("torch"))]
        return " or ".join(_describe(a) for a in plain or args)
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (list, collections.abc.Sequence) and args:
        return f"a list of {_describe(args[0])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    """A value as the refusal prints it: strings quoted, so `'abc'` reads as text."""
    return repr(value)


def _check_ranges(node: Any, path: str, ranges: dict[str, Any]) -> None:
    """Every number whose config path has a range (seqtool.schema.RANGES) must lie in it."""
    if isinstance(node, dict):
        for key, child in node.items():
            _check_ranges(child, f"{path}.{key}" if path else str(key), ranges)
        return
    if isinstance(node, list) and f"{path}[]" in ranges:
        bound = ranges[f"{path}[]"]
        for item in node:
            if _is_number(item) and item not in bound:
                raise UserError(f"{path}={_show(node)}: {item} is out of range; each allowed {bound}")
        return
    if path in ranges and _is_number(node) and node not in ranges[path]:
        raise UserError(f"{path}={_show(node)} is out of range; allowed {ranges[path]}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate behind the target guard; a constructor's ValueError is the user's."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    for path, target_node in _target_nodes(OmegaConf.to_container(node), ""):
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
    """RUN/config.yaml, the resolved config; a model that does not fit its task is refused before
    anything is written."""
    check_pairing(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """The saved config of a run directory, validated like a composed one. `overrides` are those of
    `seqtool train --resume RUN key=value`: only seqtool.schema.RESUMABLE keys may change."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} does not exist")
    if not path.is_file():
        raise UserError(f"{run_dir} is not a seqtool run directory (no {CONFIG_FILE})")
    try:
        cfg = OmegaConf.load(path)
    except Exception as error:  # noqa: BLE001 - yaml and omegaconf raise many kinds; all mean "malformed"
        raise UserError(f"cannot read {path}: {_one_line(error)}") from None
    if not isinstance(cfg, DictConfig) or not {"model", "task", "trainer"} <= set(cfg.keys()):
        raise UserError(f"{path} is not a seqtool config (needs model, task and trainer)")
    nest_flat_sources(cfg.task)
    for item in overrides or []:
        cfg = _resume_with(cfg, item, run_dir)
    validate(cfg)
    check_pairing(cfg)
    return cfg


def _resume_with(cfg: DictConfig, item: str, run_dir: Path) -> DictConfig:
    """The saved config with one resume override applied, if the policy lets it change that key."""
    from seqtool.schema import RESUMABLE

    key, equals, _ = item.partition("=")
    allowed = f"on resume only {', '.join(RESUMABLE)} may change"
    if not equals or not key or key[0] in "+~" or "/" in key:
        raise UserError(f"--resume {run_dir} {item}: give key=value overrides; {allowed}")
    try:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as error:  # a value it cannot parse or merge
        raise UserError(f"bad override {item!r}: {_one_line(error)}") from None
    old, new = OmegaConf.select(cfg, key), OmegaConf.select(merged, key)
    if key in RESUMABLE and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
        raise UserError(f"--resume {run_dir}: its config has no {key} (saved by an older seqtool)")
    if key not in RESUMABLE and _plain(old) != _plain(new):
        raise UserError(
            f"--resume cannot change {key} ({_brief(old)} -> {_brief(new)}): {run_dir} was trained with "
            f"{_brief(old)}; {allowed}"
        )
    return merged


_MISSING = object()


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _brief(node: Any) -> str:
    """A saved value as a refusal shows it: a config group by its target's class name."""
    value = _plain(node)
    if isinstance(value, dict):
        return str(value.get("_target_", "{...}")).rpartition(".")[2]
    return repr(value)


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
