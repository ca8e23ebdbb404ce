"""The special tokens every word and subword vocabulary starts with, and the character vocabulary (saved
with the run so decode and eval see the same ids).

    0 <pad>   1 <s> (BOS)   2 </s> (EOS)   3 <unk>      translation tokenizers, caption word vocabularies
"""

from __future__ import annotations

import json
from pathlib import Path

from seqtool.errors import UserError

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = range(4)


def saved_vocabulary(run_dir: Path, files: list[Path]) -> bool:
    """True when the run holds its vocabulary files (load them); False for a run not yet trained (build
    them). A run with checkpoints but without one of them is refused: a vocabulary rebuilt from the corpus
    may number the tokens otherwise than the weights learned them, and decoding would scramble silently."""
    missing = [path for path in files if not path.is_file()]
    if not missing:
        return True
    if not (Path(run_dir) / "checkpoints").is_dir():
        return False
    raise UserError(
        f"{missing[0]} is missing: this run's weights were trained with it and a vocabulary rebuilt from "
        f"the corpus may number the tokens differently; restore {Path(missing[0]).relative_to(run_dir)} "
        "from a copy of the run, or train a new run"
    )


class CharVocab:
    """Characters <-> ids, in sorted order of the training text's distinct characters."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = list(chars)
        self.index = {char: i for i, char in enumerate(self.chars)}

    @classmethod
    def build(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            shown = "".join(unknown[:10])
            raise UserError(f"characters not in the vocabulary: {shown!r}")
        return [self.index[char] for char in text]

    def encode_lossy(self, text: str) -> list[int]:
        """Ids of the characters the vocabulary knows, others dropped (val/test text unseen in train)."""
        return [self.index[char] for char in text if char in self.index]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: Path) -> CharVocab:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            chars = data["chars"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not a seqtool character vocabulary ({error})") from None
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise UserError(f"{path} is not a seqtool character vocabulary")
        return cls(chars)
