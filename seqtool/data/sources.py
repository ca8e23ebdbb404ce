"""Where a translation task's sentence pairs come from: exactly one of five sources.

synthetic   a built-in task (seqtool.data.synthetic), generated from the seed
data_dir    <dir>/<prefix>.<lang>[.gz] per split (Multi30k's naming)
files       explicit source and target files per split
tsv         one `source<TAB>target` file per split
hf_name     a Hugging Face dataset (needs network)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqtool.data import synthetic as synthetic_tasks
from seqtool.data.parallel import Pair, hub_parallel, read_parallel, read_tsv, split_file
from seqtool.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sources:
    """The data options of conf/task/translation.yaml, grouped; `read` returns the splits present."""

    synthetic: str
    synthetic_sizes: dict[str, int]
    synthetic_lengths: tuple[int, int]
    synthetic_alphabet: int
    data_dir: str | None
    langs: tuple[str, str]  # (source, target): file suffixes, or the hub's column/translation keys
    prefixes: dict[str, str | None]
    files: dict[str, tuple[str | None, str | None]]
    tsv: dict[str, str | None]
    hf_name: str | None
    hf_config: str | None
    hf_splits: dict[str, str | None]

    def read(self, seed: int) -> dict[str, list[Pair]]:
        """The pairs of each split the chosen source has (train and val at least)."""
        self._check_one_source()
        if self.synthetic != "none":
            low, high = self.synthetic_lengths
            splits = synthetic_tasks.synthetic_splits(
                self.synthetic, self.synthetic_sizes, seed=seed, min_length=low, max_length=high,
                alphabet=self.synthetic_alphabet,
            )  # fmt: skip
        elif self.hf_name:
            splits = {
                split: hub_parallel(self.hf_name, self.hf_config, name, *self.langs)
                for split, name in self.hf_splits.items()
                if name
            }
        else:
            splits = {split: pairs for split in SPLITS if (pairs := self._local(split)) is not None}
        for split in ("train", "val"):
            if not splits.get(split):
                raise UserError(f"the data has no {split} split; give one (see docs/translation.md)")
        return splits

    def _check_one_source(self) -> None:
        given = {
            "task.synthetic": self.synthetic != "none",
            "task.data_dir": bool(self.data_dir),
            "task.train_src/train_tgt": any(self.files["train"]),
            "task.train_tsv": bool(self.tsv["train"]),
            "task.hf_name": bool(self.hf_name),
        }
        names = [name for name, present in given.items() if present]
        if len(names) != 1:
            raise UserError(
                f"give exactly one data source, not {' and '.join(names) or 'none'} "
                "(data files need task.synthetic=none)"
            )

    def _local(self, split: str) -> list[Pair] | None:
        """One split from the directory, the explicit files or the TSV; None when not given."""
        src, tgt = self.files[split]
        if self.data_dir and self.prefixes[split]:
            paths = [split_file(Path(self.data_dir), self.prefixes[split], lang) for lang in self.langs]
            return read_parallel(*paths)
        if src or tgt:
            if not (src and tgt):
                raise UserError(f"task.{split}_src and task.{split}_tgt go together; give both")
            return read_parallel(Path(src), Path(tgt))
        if self.tsv[split]:
            return read_tsv(Path(self.tsv[split]))
        return None
