"""Atomic checkpoints: weights as safetensors, trainer state loadable with weights_only=True, meta.json.

A checkpoint is a directory, written whole into a hidden sibling and then swapped in:

    <dir>/model.safetensors   model.state_dict() (tied tensors stored once, re-aliased on load)
    <dir>/trainer_state.pt    torch.save of plain types and tensors only (optimizer, scheduler, RNG, step)
    <dir>/meta.json           {"format": "seqtool-checkpoint/1", "model": ..., "step": ..., "metric": ...}

    save:  .<name>.tmp-<pid>/  ──fsync──►  <name> → .<name>.old-<pid>  ──►  tmp → <name>  ──►  rm old
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import random
import re
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_weights
from torch import Tensor, nn

from seqtool import __version__
from seqtool.data.io import DISK_ERRORS, disk_full
from seqtool.errors import UserError

FORMAT = "seqtool-checkpoint/1"
WEIGHTS, TRAINER_STATE, META = "model.safetensors", "trainer_state.pt", "meta.json"
_ALIASES_KEY = "seqtool.aliases"  # safetensors metadata: {dropped tied name: stored name}
_PLAIN = (Tensor, int, float, str, bool, type(None))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What meta.json must hold, checked on load: decode and eval read the step and the model's class path.
META_FIELDS = {
    "step": (lambda v: _is_number(v) and isinstance(v, int) and v >= 0, "an integer ≥ 0"),
    "model": (lambda v: isinstance(v, str), "text (the model's class path)"),
    "metric": (lambda v: v is None or _is_number(v), "a number or null"),
}


@dataclass
class Checkpoint:
    """What load_checkpoint returns; model_state has every key of the saved state_dict, ties included."""

    model_state: dict[str, Tensor]
    trainer_state: dict[str, Any]
    meta: dict[str, Any]
    directory: Path | None = None


# ---------------------------------------------------------------------------------------------- saving


def save_checkpoint(directory: Path, *, model: nn.Module, trainer_state: dict, meta: dict) -> None:
    """Write model weights, trainer state and meta into `directory`, atomically replacing what was there.

    meta must hold an int "step"; "model" defaults to the model's class path, "metric" to None.
    """
    directory = Path(directory)
    full_meta = _full_meta(model, meta)
    _check_plain(trainer_state, "trainer_state")
    # Serialised in memory, then written with plain file writes: a full disk is then an OSError with its
    # errno (torch.save and safetensors' save_file report it as their own RuntimeError / SafetensorError).
    files = {WEIGHTS: _weights_bytes(model), TRAINER_STATE: _torch_bytes(trainer_state),
             META: (json.dumps(full_meta, indent=2) + "\n").encode("utf-8")}  # fmt: skip
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    writing = directory
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, data in files.items():
            writing = directory / name
            (tmp / name).write_bytes(data)
        for name in files:
            _fsync(tmp / name)
        _fsync(tmp)
        _swap_in(tmp, directory)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        kept = f"; {directory} keeps the previous checkpoint" if (directory / META).is_file() else ""
        raise disk_full(writing, error, kept=kept) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale_siblings(directory)


def _full_meta(model: nn.Module, meta: dict) -> dict[str, Any]:
    """The caller's meta over the defaults; the format tag always wins."""
    cls = type(model)
    full = {"model": f"{cls.__module__}.{cls.__qualname__}", "metric": None, "seqtool_version": __version__}
    full.update(meta)
    full["format"] = FORMAT
    if isinstance(full.get("step"), bool) or not isinstance(full.get("step"), int):
        raise ValueError(f"checkpoint meta needs an int 'step', got {full.get('step')!r}")
    return full


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless `value` is tensors and plain values all the way down (weights_only loads it)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"{where} is a {type(value).__name__}; trainer state holds only plain types")


def _weights_bytes(model: nn.Module) -> bytes:
    """The safetensors file of the state dict, each tied tensor stored once; the aliases ride in the
    metadata."""
    stored: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape, tensor.stride())
        if tensor.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        # clone() also separates tensors that overlap without being identical, which safetensors refuses
        stored[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return save_weights(stored, metadata={_ALIASES_KEY: json.dumps(aliases)})


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _swap_in(tmp: Path, directory: Path) -> None:
    """Rename `directory` aside, `tmp` into its place, then delete the old one."""
    old = directory.parent / f".{directory.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:
        if old.exists() and not directory.exists():
            os.replace(old, directory)
        raise
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_siblings(directory: Path) -> None:
    """Delete .<name>.tmp-* and .<name>.old-* left by a crashed save; the new checkpoint supersedes them."""
    for stale in _siblings(directory, "tmp") + _siblings(directory, "old"):
        shutil.rmtree(stale, ignore_errors=True)


def _siblings(directory: Path, kind: Literal["tmp", "old"]) -> list[Path]:
    """The hidden siblings a save of `directory` creates, newest first."""
    if not directory.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.{kind}-\d+")
    found = [p for p in directory.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk (directories only where the OS allows it)."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- loading


def load_checkpoint(directory: Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint directory; every failure is a one-line UserError naming the path."""
    directory = _existing_checkpoint(Path(directory))
    meta = _read_meta(directory / META)
    model_state = _read_weights(directory / WEIGHTS, map_location)
    trainer_state = _read_trainer_state(directory / TRAINER_STATE, map_location)
    return Checkpoint(model_state, trainer_state, meta, directory)


def find_checkpoint(directory: Path) -> Path | None:
    """`directory` itself, or the old copy a save set aside just before it crashed mid-swap; None when
    neither holds a checkpoint."""
    directory = Path(directory)
    if (directory / META).is_file():
        return directory
    return next((old for old in _siblings(directory, "old") if (old / META).is_file()), None)


def _existing_checkpoint(directory: Path) -> Path:
    """find_checkpoint's answer, or a UserError saying what is there instead."""
    found = find_checkpoint(directory)
    if found is not None:
        return found
    if not directory.exists():
        raise UserError(f"{directory} does not exist, so it is not a seqtool checkpoint (no meta.json)")
    raise UserError(
        f"{directory} is not a seqtool checkpoint (no meta.json); point at a run's checkpoints/last or best"
    )


def _read_meta(path: Path) -> dict[str, Any]:
    """Parse meta.json and check its format tag."""
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise UserError(
            f"{path} is malformed ({error}); the checkpoint is damaged, use another one"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise UserError(f"{path} has format {found!r}, expected {FORMAT!r}; it is not a seqtool checkpoint")
    for key, (check, wanted) in META_FIELDS.items():
        if not check(meta.get(key)):
            raise UserError(
                f"{path}: {key!r} is {meta.get(key)!r}, not {wanted}; the checkpoint is damaged, use another "
                "one (--checkpoint last or best) or restore it from a copy of the run"
            )
    return meta


def _read_weights(path: Path, map_location: str | torch.device) -> dict[str, Tensor]:
    """load_file the weights and restore the tied names that were stored once."""
    if not path.is_file():
        raise UserError(f"{path} is missing; the checkpoint is incomplete, use another one")
    try:
        with safe_open(str(path), framework="pt") as reader:
            aliases = json.loads((reader.metadata() or {}).get(_ALIASES_KEY, "{}"))
        state = load_file(str(path), device=str(map_location))
        for alias, stored_name in aliases.items():
            state[alias] = state[stored_name]
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, AttributeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is corrupt or truncated: {message}; use another checkpoint") from None
    return state


def _read_trainer_state(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain values only, never arbitrary objects."""
    if not path.is_file():
        raise UserError(f"{path} is missing; the checkpoint is incomplete, use another one")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} holds more than tensors and plain values; seqtool refuses to unpickle arbitrary "
            "objects, so only load checkpoints that seqtool wrote"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is corrupt or truncated: {message}; use another checkpoint") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a trainer-state dict")
    return state


def load_model_weights(
    model: nn.Module, checkpoint: Checkpoint, *, expected_model: str | None = None
) -> None:
    """Copy the checkpoint's weights into `model` (strict); a foreign checkpoint is a UserError."""
    where = checkpoint.directory or "checkpoint"
    found = checkpoint.meta.get("model")
    if expected_model is not None and found != expected_model:
        raise UserError(f"checkpoint {where} holds a {found}, not a {expected_model}")
    problems = _fit_problems(model.state_dict(), checkpoint.model_state)
    if problems:
        raise UserError(f"checkpoint {where} does not fit this model: {'; '.join(problems)}")
    model.load_state_dict(checkpoint.model_state, strict=True)


def _fit_problems(wanted: dict[str, Tensor], given: dict[str, Tensor], shown: int = 3) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches, a few of each."""

    def few(names: list[str]) -> str:
        more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(wanted[k].shape)}"
        for k in sorted(set(wanted) & set(given))
        if given[k].shape != wanted[k].shape
    ]
    labelled = [("missing", missing), ("unexpected", unexpected), ("shape (checkpoint vs model)", shapes)]
    return [f"{label} {few(names)}" for label, names in labelled if names]


# ------------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """The torch (CPU and every CUDA device), numpy and python RNG states, as plain types and tensors."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state returned; CUDA states are skipped where CUDA is absent."""
    torch.set_rng_state(state["torch"].cpu())
    numpy = state["numpy"]
    keys = numpy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"][: torch.cuda.device_count()]]
        torch.cuda.set_rng_state_all(cuda_states)


# --------------------------------------------------------------------------------------------- best-k


class BestKeeper:
    """Keeps checkpoints/best (the best so far) and, when keep > 1, the k best under checkpoints/top/step_<N>.

    Ties: a metric equal to the best is not better; NaN is never better and never kept.
    """

    def __init__(self, root: Path, *, keep: int, mode: Literal["min", "max"]) -> None:
        if keep < 1 or mode not in ("min", "max"):
            raise ValueError(f"BestKeeper needs keep >= 1 and mode 'min' or 'max', got {keep}, {mode!r}")
        self.root, self.keep, self.mode = Path(root), keep, mode
        self.entries: list[tuple[float, int]] = []  # (metric, step), best first

    def is_better(self, metric: float) -> bool:
        """True if `metric` strictly beats the best so far (or there is none yet); never for NaN."""
        metric = float(metric)
        return not math.isnan(metric) and (not self.entries or self._beats(metric, self.entries[0][0]))

    def offer(self, metric: float, step: int, *, model: nn.Module, trainer_state: dict, meta: dict) -> bool:
        """Save the checkpoint if it is among the k best; True if it became the new best (best/ rewritten)."""
        metric = float(metric)
        entries = [e for e in self.entries if e[1] != step]
        if math.isnan(metric) or (len(entries) >= self.keep and not self._beats(metric, entries[-1][0])):
            return False
        new_best = not entries or self._beats(metric, entries[0][0])
        rank = sum(1 for m, _ in entries if not self._beats(metric, m))  # after every entry it does not beat
        self.entries = (entries[:rank] + [(metric, step)] + entries[rank:])[: self.keep]
        saved = dict(model=model, trainer_state=trainer_state, meta={**meta, "metric": metric, "step": step})
        if new_best:
            save_checkpoint(self.root / "best", **saved)
        if self.keep > 1:
            save_checkpoint(self.root / "top" / f"step_{step}", **saved)
            self._prune_top()
        return new_best

    def _beats(self, metric: float, other: float) -> bool:
        """Strictly better under the mode; False for NaN."""
        return metric < other if self.mode == "min" else metric > other

    def _prune_top(self) -> None:
        """Delete top/step_<N> directories that are no longer among the k best."""
        kept = {f"step_{step}" for _, step in self.entries}
        for child in (self.root / "top").iterdir():
            if re.fullmatch(r"step_\d+", child.name) and child.name not in kept:
                shutil.rmtree(child, ignore_errors=True)

    def state_dict(self) -> dict[str, Any]:
        """Plain types, for the trainer state, so a resumed run keeps its best-k list."""
        return {"mode": self.mode, "keep": self.keep, "entries": [[m, s] for m, s in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the (metric, step) list; a different mode than the saved one is a UserError."""
        if state["mode"] != self.mode:
            raise UserError(
                f"the run being resumed kept its best checkpoints with mode={state['mode']}, not {self.mode}"
            )
        self.entries = [(float(m), int(s)) for m, s in state["entries"]][: self.keep]
