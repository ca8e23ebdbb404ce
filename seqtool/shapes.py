"""Task shapes: which tasks a model can be trained on, read from the classes themselves.

    shape                        tasks                              loss on
    many-to-one                  the adding problem                 the last state
    one-to-many                  captioning                         every output token
    many-to-many synchronous     char LM, copy-memory               every position
    many-to-many asynchronous    translation, video prediction      the decoder's outputs

A task class says its shape: ``shape``, or ``shape_variants`` ({"task.problem=adding": shape, ...}) when
one of its keys picks it. A model class says which shapes it serves: ``task_shapes``. So `model=X task=Y`
that do not fit is one refusal naming the tasks of conf/task/ that do, with nothing kept by hand here.
"""

from __future__ import annotations

import inspect
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


def check_fits(model_target: str, task: Any) -> None:
    """Refuse a model that does not serve the task's shape, naming the tasks that fit it."""
    from seqtool.config import _resolve_target

    served = getattr(_resolve_target(model_target, "model"), "task_shapes", None)
    shape = getattr(task, "shape", None)
    if served is None or shape is None or shape in served:
        return
    model = _conf_name("model", model_target)
    task_name = _conf_name("task", f"{type(task).__module__}.{type(task).__qualname__}")
    variant = _current_variant(task)
    fitting = ", ".join(fitting_tasks(served)) or "none"
    raise UserError(
        f"model={model} does not fit task={task_name}{variant}: the task is {shape}, the model serves "
        f"{' and '.join(served)}; tasks that fit model={model}: {fitting}"
    )


def check_model_kwargs(model_target: str, kwargs: dict[str, Any]) -> None:
    """Refuse a model whose constructor does not take what the task gives it (vocab_size, channels, ...)."""
    from seqtool.config import _resolve_target

    parameters = inspect.signature(_resolve_target(model_target, "model")).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    foreign = sorted(set(kwargs) - set(parameters))
    if foreign:
        model = _conf_name("model", model_target)
        raise UserError(
            f"model={model} cannot be built for this task: it takes no {', '.join(foreign)} "
            "(pick a model made for the task; `seqtool info` lists them)"
        )


def fitting_tasks(served: tuple[str, ...]) -> list[str]:
    """The task configs (with the override that picks a variant) whose shape is one of `served`."""
    from seqtool.config import _resolve_target

    names = []
    for name, target in _conf_targets("task"):
        for override, shape in task_variants(_resolve_target(target, "task")).items():
            if shape in served:
                names.append(f"task={name}" + (f" {override}" if override else ""))
    return names


def _current_variant(task: Any) -> str:
    """' task.problem=adding' when the task's class has variants and its key says which; else ''."""
    for override in getattr(type(task), "shape_variants", {}) or {}:
        key, _, value = override.partition("=")
        if str(getattr(task, key.removeprefix("task."), None)) == value:
            return f" {override}"
    return ""


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
