"""Task shapes: which tasks a model can be trained on, read from the classes themselves.

    shape                        tasks                              loss on
    many-to-one                  the adding problem                 the last state
    one-to-many                  captioning                         every output token
    many-to-many synchronous     char LM, copy-memory               every position
    many-to-many asynchronous    translation, video prediction      the decoder's outputs

A task class says its shape: ``shape``, or ``shape_variants`` ({"task.problem=adding": shape, ...}) when
one of its keys picks it. A model class says which shapes it serves: ``task_shapes``. Within a shape, the
model must also take what the task hands it (`model_kwargs()`: vocab_size, or channels and image_size):
ConvLSTM and the Transformer both serve many-to-many asynchronous, but only one of them takes frames.
So `model=X task=Y` that do not fit is one refusal, before a run directory is written
(seqtool.config.check_pairing), naming the tasks of conf/task/ that do, with nothing kept by hand here.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Iterable
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from seqtool.errors import UserError

SHAPES = ("many-to-one", "one-to-many", "many-to-many synchronous", "many-to-many asynchronous")


def task_variants(task_class: type) -> dict[str, str]:
    """{the override that picks a variant ('' when there is one): its shape} of a task class."""
    variants = getattr(task_class, "shape_variants", None)
    if variants:
        return dict(variants)
    shape = getattr(task_class, "shape", None)
    return {"": shape} if isinstance(shape, str) else {}


def check_config_fits(cfg: dict[str, Any]) -> None:
    """Refuse a model that does not fit the task of a resolved config (seqtool.config.check_pairing)."""
    task_class = _target_class(str(cfg["task"]["_target_"]), "task")
    variant = next((o for o in task_variants(task_class) if o and _picks(o, cfg["task"])), "")
    _refuse_misfit(str(cfg["model"]["_target_"]), task_class, variant)


def check_fits(model_target: str, task: Any) -> None:
    """The same refusal for a built task, before its setup reads any data."""
    _refuse_misfit(model_target, type(task), _current_variant(task))


def _refuse_misfit(model_target: str, task_class: type, variant: str) -> None:
    model_class = _target_class(model_target, "model")
    reason = misfit(model_class, task_class, variant)
    if reason is None:
        return
    model = _conf_name("model", model_target)
    task = _conf_name("task", f"{task_class.__module__}.{task_class.__qualname__}")
    fitting = ", ".join(fitting_tasks(model_class)) or "none"
    raise UserError(
        f"model={model} does not fit task={task}{f' {variant}' if variant else ''}: {reason}; "
        f"tasks that fit model={model}: {fitting}"
    )


def misfit(model_class: type, task_class: type, variant: str) -> str | None:
    """Why the model cannot be trained on the task's variant ('' when it has one), or None when it can
    (or when the classes do not say)."""
    shape = task_variants(task_class).get(variant)
    served = getattr(model_class, "task_shapes", None)
    if served is None or shape is None:
        return None
    if shape not in served:
        return f"the task is {shape}, the model serves {' and '.join(served)}"
    given = given_kwargs(task_class) or {}
    foreign = _foreign(model_class, given.get(variant, given.get("", frozenset())))
    return f"the task hands the model {', '.join(foreign)}, which it does not take" if foreign else None


def _foreign(model_class: type, kwargs: Iterable[str]) -> list[str]:
    """The keywords the model's constructor does not take (none when it takes **kwargs)."""
    parameters = inspect.signature(model_class).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return []
    return sorted(set(kwargs) - set(parameters))


@functools.cache
def given_kwargs(task_class: type) -> dict[str, frozenset[str]] | None:
    """The keywords a task's model_kwargs() hands the model, per variant, read from its source: each
    `return {"key": ...}`, under `if self.problem == "adding":` for the variant task.problem=adding, or
    for every other variant ('') when no such test is above it. None where the source says no more:
    the check after the task's setup (check_model_kwargs) still applies then."""
    try:
        function = ast.parse(textwrap.dedent(inspect.getsource(task_class.model_kwargs))).body[0]
    except (OSError, TypeError, AttributeError, SyntaxError):
        return None
    given: dict[str, frozenset[str]] = {}

    def visit(statements: list[ast.stmt], variant: str) -> bool:
        for node in statements:
            if isinstance(node, ast.If):
                if not (
                    visit(node.body, _variant_test(node.test) or variant) and visit(node.orelse, variant)
                ):
                    return False
            elif isinstance(node, ast.Return):
                keys = getattr(node.value, "keys", None)
                if not isinstance(node.value, ast.Dict) or not all(isinstance(k, ast.Constant) for k in keys):
                    return False  # not a literal dict: unknown
                given.setdefault(variant, frozenset(str(key.value) for key in keys))
        return True

    return given if visit(function.body, "") and given else None


def _variant_test(test: ast.expr) -> str | None:
    """'task.problem=adding' for the test `self.problem == "adding"`, else None."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    left, right = test.left, test.comparators[0]
    if isinstance(left, ast.Attribute) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return f"task.{left.attr}={right.value}"
    return None


def check_model_kwargs(model_target: str, kwargs: dict[str, Any]) -> None:
    """After the task's setup: refuse a model whose constructor does not take what the task gives it
    (the source of model_kwargs() did not say it at composition)."""
    if foreign := _foreign(_target_class(model_target, "model"), kwargs):
        model = _conf_name("model", model_target)
        fitting = ", ".join(fitting_tasks(_target_class(model_target, "model"))) or "none"
        raise UserError(
            f"model={model} cannot be built for this task: it takes no {', '.join(foreign)}; "
            f"tasks that fit model={model}: {fitting}"
        )


def fitting_tasks(model_class: type) -> list[str]:
    """The task configs (with the override that picks a variant) the model fits."""
    names = []
    for name, target in _conf_targets("task"):
        task_class = _target_class(target, "task")
        for override in task_variants(task_class):
            if misfit(model_class, task_class, override) is None:
                names.append(f"task={name}" + (f" {override}" if override else ""))
    return names


def _picks(override: str, task: dict[str, Any]) -> bool:
    """Whether a resolved task config is the variant `task.problem=adding` names."""
    key, _, value = override.removeprefix("task.").partition("=")
    return str(task.get(key)) == value


def _current_variant(task: Any) -> str:
    """'task.problem=adding' when the task's class has variants and its key says which; else ''."""
    for override in getattr(type(task), "shape_variants", {}) or {}:
        key, _, value = override.partition("=")
        if str(getattr(task, key.removeprefix("task."), None)) == value:
            return override
    return ""


def _target_class(target: str, group: str) -> type:
    from seqtool.config import _resolve_target

    return _resolve_target(target, group)


def _conf_targets(group: str) -> list[tuple[str, str]]:
    """(name, _target_) of every YAML file of a config group, sorted by name."""
    root = resources.files("seqtool.conf").joinpath(group)
    entries = []
    for file in sorted(root.iterdir(), key=lambda f: f.name):
        if file.name.endswith(".yaml"):
            target = OmegaConf.create(file.read_text(encoding="utf-8")).get("_target_")
            if target:
                entries.append((file.name.removesuffix(".yaml"), str(target)))
    return entries


def _conf_name(group: str, target: str) -> str:
    """The config name of a target (char_rnn for seqtool.models.char_rnn.CharRNN), else the target."""
    return next((name for name, t in _conf_targets(group) if t == target), target)
