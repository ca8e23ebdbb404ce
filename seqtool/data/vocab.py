"""The special tokens every word and subword vocabulary starts with, and the character vocabulary (saved
with the run so decode and eval see the same ids).

    0 <pad>   1 <s> (BOS)   2 </s> (EOS)   3 <unk>      translation tokenizers, caption word vocabularies,
                                                        WordVocab (then a task's own specials, then words)

WordVocab is the vocabulary of text that is already cut into tokens by spaces (PTB, SST-2, ATIS): token i
of a line is token i of the model, so a tag sequence stays aligned with its words, and a corpus's own
`<unk>` is the special <unk>. Word-level tasks keep it at `vocab/words.json`, which is also what
`init_from=RUN` carries from a pretrained run into the run that fine-tunes it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from seqtool.errors import UserError

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = range(4)
WORDS_FILE = Path("vocab") / "words.json"  # a run's WordVocab, relative to its directory


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


class WordVocab:
    """Space-separated tokens <-> ids: SPECIALS, then a task's own specials (such as [MASK]), then the
    training tokens by falling frequency (ties in sorted order, so a rebuild numbers them the same)."""

    def __init__(self, tokens: list[str]) -> None:
        if tokens[: len(SPECIALS)] != SPECIALS or len(set(tokens)) != len(tokens):
            raise ValueError("a word vocabulary starts with the specials and lists each token once")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls,
        sentences: Iterable[list[str]],
        *,
        max_size: int | None = None,
        min_count: int = 1,
        specials: Iterable[str] = (),
    ) -> WordVocab:
        """The vocabulary of tokenised training sentences: at most max_size entries in all (specials
        included), each word seen at least min_count times; rarer words will read as <unk>."""
        head = SPECIALS + [s for s in specials if s not in SPECIALS]
        counts = Counter(token for sentence in sentences for token in sentence)
        for token in head:
            counts.pop(token, None)
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - len(head))]
        return cls(head + words)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: list[str]) -> list[int]:
        """Ids of tokens; a token outside the vocabulary is <unk>."""
        return [self.index.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"kind": "word", "tokens": self.tokens}, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: Path) -> WordVocab:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tokens = data["tokens"]
            if data.get("kind") != "word" or not all(isinstance(t, str) for t in tokens):
                raise ValueError("not a list of words")
            return cls(tokens)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path} is not a seqtool word vocabulary ({error})") from None
