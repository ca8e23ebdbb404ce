"""Where a translation task's sentence pairs come from: exactly one of three sources, each its own nested
config under the task (conf/task/translation.yaml).

task.synthetic   a built-in task (seqtool.data.synthetic), generated from the seed   (kind != none)
task.files       local files: a directory <data_dir>/<prefix>.<lang>[.gz] per split (Multi30k's naming),
                 or explicit source and target files per split, or one `source<TAB>target` TSV per split
task.hub         a Hugging Face dataset (needs network)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seqtool.data import synthetic as synthetic_tasks
from seqtool.data.parallel import Pair, hub_parallel, read_parallel, read_tsv, split_file
from seqtool.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticSource:
    """task.synthetic: pairs generated from the seed; val/test sources never occur in train."""

    kind: Literal["none", "copy", "reverse", "sort", "addition", "dates"]
    train_size: int
    val_size: int
    test_size: int
    min_length: int  # symbols per string (addition: digits per operand; dates: unused)
    max_length: int
    alphabet: int  # copy/reverse/sort draw from the first N lowercase letters

    def read(self, seed: int) -> dict[str, list[Pair]]:
        sizes = {"train": self.train_size, "val": self.val_size, "test": self.test_size}
        return synthetic_tasks.synthetic_splits(
            self.kind, sizes, seed=seed, min_length=self.min_length, max_length=self.max_length,
            alphabet=self.alphabet,
        )  # fmt: skip


@dataclass(frozen=True)
class LocalFiles:
    """task.files: line-aligned parallel files, by directory and prefix, by name, or as TSV."""

    data_dir: str | None
    train_prefix: str
    val_prefix: str
    test_prefix: str | None
    train_src: str | None
    train_tgt: str | None
    val_src: str | None
    val_tgt: str | None
    test_src: str | None
    test_tgt: str | None
    train_tsv: str | None
    val_tsv: str | None
    test_tsv: str | None

    def given(self) -> list[str]:
        """The kinds of local source configured (at most one is allowed)."""
        kinds = {"task.files.data_dir": bool(self.data_dir),
                 "task.files.train_src/train_tgt": bool(self.train_src or self.train_tgt),
                 "task.files.train_tsv": bool(self.train_tsv)}  # fmt: skip
        return [name for name, present in kinds.items() if present]

    def read(self, split: str, langs: tuple[str, str]) -> list[Pair] | None:
        """One split from the directory, the explicit files or the TSV; None when not given."""
        prefix = getattr(self, f"{split}_prefix")
        src, tgt, tsv = (getattr(self, f"{split}_{side}") for side in ("src", "tgt", "tsv"))
        if self.data_dir and prefix:
            return read_parallel(*(split_file(Path(self.data_dir), prefix, lang) for lang in langs))
        if src or tgt:
            if not (src and tgt):
                raise UserError(f"task.files.{split}_src and task.files.{split}_tgt go together; give both")
            return read_parallel(Path(src), Path(tgt))
        return read_tsv(Path(tsv)) if tsv else None


@dataclass(frozen=True)
class HubSource:
    """task.hub: a Hugging Face dataset with src_lang/tgt_lang columns or a `translation` column."""

    name: str | None
    config: str | None  # e.g. de-en for wmt14
    train_split: str
    val_split: str
    test_split: str | None

    def read(self, langs: tuple[str, str]) -> dict[str, list[Pair]]:
        splits = {"train": self.train_split, "val": self.val_split, "test": self.test_split}
        return {
            split: hub_parallel(self.name, self.config, name, *langs)
            for split, name in splits.items()
            if name
        }


@dataclass(frozen=True)
class Sources:
    """The three sources of a translation task and the language pair; `read` returns the splits present."""

    synthetic: SyntheticSource
    files: LocalFiles
    hub: HubSource
    langs: tuple[str, str]  # (source, target): file suffixes, or the hub's column/translation keys

    def read(self, seed: int) -> dict[str, list[Pair]]:
        """The pairs of each split the chosen source has (train and val at least)."""
        self._check_one_source()
        if self.synthetic.kind != "none":
            splits = self.synthetic.read(seed)
        elif self.hub.name:
            splits = self.hub.read(self.langs)
        else:
            splits = {
                split: pairs for split in SPLITS if (pairs := self.files.read(split, self.langs)) is not None
            }
        for split in ("train", "val"):
            if not splits.get(split):
                raise UserError(f"the data has no {split} split; give one (see docs/translation.md)")
        return splits

    def _check_one_source(self) -> None:
        names = (["task.synthetic.kind"] if self.synthetic.kind != "none" else []) + self.files.given()
        names += ["task.hub.name"] if self.hub.name else []
        if len(names) != 1:
            raise UserError(
                f"give exactly one data source, not {' and '.join(names) or 'none'} "
                "(data files need task.synthetic.kind=none)"
            )
