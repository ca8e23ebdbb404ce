"""Tokenizers for translation: characters, words or BPE, all Hugging Face `tokenizers` pipelines.

Every vocabulary starts with the same four specials, so source and target agree on them::

    0 <pad>   1 <s> (BOS)   2 </s> (EOS)   3 <unk>

Spaces become the marker "▁" (as in SentencePiece), so decoding needs no guesswork about where the
spaces were: "Two young, men" -> word: ▁Two ▁young , ▁men   bpe: ▁Two ▁you ng , ▁men   char: T w o ▁ y ...
and detokenising gives back the original text (whitespace runs included) for in-vocabulary text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from seqtool.data.vocab import BOS, EOS, PAD, SPECIALS, UNK  # noqa: F401 - the one set, re-exported
from seqtool.errors import UserError

Kind = Literal["char", "word", "bpe"]


class TextTokenizer:
    """Text <-> ids for one side (or both, when the vocabulary is joint)."""

    def __init__(self, backend) -> None:
        self.backend = backend  # a tokenizers.Tokenizer

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        kind: Kind,
        vocab_size: int,
        min_frequency: int = 1,
        lowercase: bool = False,
    ) -> TextTokenizer:
        """Learn a vocabulary from `texts` (the train split); `vocab_size` caps word/char vocabularies too."""
        from tokenizers import Tokenizer, models, normalizers, trainers

        model = models.BPE(unk_token="<unk>") if kind == "bpe" else models.WordLevel(unk_token="<unk>")
        backend = Tokenizer(model)
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer, backend.decoder = _pipeline(kind)
        options = {"vocab_size": vocab_size, "min_frequency": min_frequency, "special_tokens": SPECIALS}
        trainer = trainers.BpeTrainer(**options) if kind == "bpe" else trainers.WordLevelTrainer(**options)
        trainer.show_progress = False
        backend.train_from_iterator(texts, trainer)
        return cls(backend)

    def __len__(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of one sentence, without BOS/EOS; unknown pieces become <unk>."""
        return self.backend.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        """Detokenised text; the specials (<pad>, <s>, </s>, <unk>) are left out."""
        return self.backend.decode(ids, skip_special_tokens=True)

    def tokens(self, ids: list[int]) -> list[str]:
        """The pieces themselves, for attention plots."""
        return [self.backend.id_to_token(i) or "<?>" for i in ids]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path))

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as error:  # noqa: BLE001 - the Rust side raises a plain Exception for bad JSON
            raise UserError(f"{path} is not a tokenizer file ({error}); delete it to rebuild") from None
        if [backend.id_to_token(i) for i in range(len(SPECIALS))] != SPECIALS:
            raise UserError(f"{path} does not start with the specials {SPECIALS}; delete it to rebuild")
        return cls(backend)


def _pipeline(kind: Kind):
    """The pre-tokenizer (how text is cut before the model) and the matching decoder."""
    from tokenizers import Regex, decoders, pre_tokenizers

    if kind == "char":  # every character is a token; a space is "▁"
        cut = pre_tokenizers.Split(Regex("."), behavior="isolated")
        return pre_tokenizers.Sequence([pre_tokenizers.Metaspace(prepend_scheme="never"), cut]), (
            decoders.Metaspace(prepend_scheme="never")
        )
    metaspace = pre_tokenizers.Metaspace(
        prepend_scheme="always"
    )  # "▁word": a word start, as in SentencePiece
    if kind == "word":  # words, with punctuation split off: "bushes." -> ▁bushes .
        return pre_tokenizers.Sequence([metaspace, pre_tokenizers.Punctuation()]), (
            decoders.Metaspace(prepend_scheme="always")
        )
    return metaspace, decoders.Metaspace(prepend_scheme="always")


def vocab_files(run_dir: Path, joint: bool) -> dict[str, Path]:
    """Where a run keeps its tokenizers: one file for a joint vocabulary, one per side otherwise."""
    vocab = Path(run_dir) / "vocab"
    if joint:
        return {"src": vocab / "joint.json", "tgt": vocab / "joint.json"}
    return {"src": vocab / "src.json", "tgt": vocab / "tgt.json"}


def build_or_load(
    run_dir: Path,
    train: list[tuple[str, str]],
    *,
    kind: Kind,
    joint: bool,
    vocab_size: int,
    min_frequency: int,
    lowercase: bool,
    save: bool = True,
) -> tuple[TextTokenizer, TextTokenizer]:
    """The run's (source, target) tokenizers: loaded from run_dir/vocab/ when there, else trained on
    the train pairs (and saved when `save`)."""
    files = vocab_files(run_dir, joint)
    if all(path.is_file() for path in files.values()):
        return TextTokenizer.load(files["src"]), TextTokenizer.load(files["tgt"])
    options = {"kind": kind, "vocab_size": vocab_size, "min_frequency": min_frequency, "lowercase": lowercase}
    if joint:
        both = TextTokenizer.train([text for pair in train for text in pair], **options)
        sides = {"src": both, "tgt": both}
    else:
        sides = {side: TextTokenizer.train([p[i] for p in train], **options) for i, side in enumerate(files)}
    if save:
        for side, path in files.items():
            sides[side].save(path)
    return sides["src"], sides["tgt"]
