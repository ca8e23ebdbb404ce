"""Word-level language modelling (task=lm): Penn Treebank and any text of space-separated words.

Each line is a sentence: its words, then the end-of-sentence token </s>, as Mikolov's and Zaremba's
PTB setups read it (their `<eos>`), so </s> is predicted and counted like any word::

    ptb.train.txt:   " no it was n't black monday \n"  ->  no it was n't black monday </s>

The words of a split, one after another, are cut into the char LM's contiguous streams
(seqtool.tasks.charlm.StreamLMTask: truncated BPTT, the state carried from segment to segment).
Perplexity per word is exp(mean nats per predicted token), </s> included.

With `task.tokenizer=bpe` the same lines are cut into byte-pair pieces (Hugging Face tokenizers, trained
on train, vocab/tokens.json) and the model predicts pieces; a line still ends in </s>. The loss is then
nats per piece, and `perplexity` stays per word: exp(the same total nats / the words predicted), a word
being a piece that starts one (SentencePiece's "▁" marker) or </s>, so it compares with a word model's.

Where the splits come from, one of:

    task.data_dir=DIR      DIR/ptb.{train,valid,test}.txt (or train.txt / valid.txt / test.txt, or
                           wikitext's wiki.{train,valid,test}.tokens), each maybe .gz; test optional
    task.train_path=FILE task.val_path=FILE [task.test_path=FILE]
    task.path=FILE|DIR|GLOB, task.hf_name=NAME, or the embedded default (the stdlib's source): one
                           text cut into [train | val | test] lines by task.val_fraction / test_fraction
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data.parallel import read_lines
from seqtool.data.text import hub_text, read_local, stdlib_source
from seqtool.data.tokenize import TextTokenizer
from seqtool.data.vocab import EOS, UNK, WORDS_FILE, WordVocab, saved_vocabulary
from seqtool.errors import UserError
from seqtool.tasks.charlm import StreamLMTask

END_OF_SENTENCE = "</s>"  # the vocabulary's EOS special, appended to every line
UNKNOWN = "<unk>"  # PTB writes its rare words so; the vocabulary's UNK special

# The file names of each split in a data_dir, first found wins (each may also end in .gz).
SPLIT_FILES = {
    "train": ("ptb.train.txt", "train.txt", "wiki.train.tokens"),
    "val": ("ptb.valid.txt", "valid.txt", "wiki.valid.tokens"),
    "test": ("ptb.test.txt", "test.txt", "wiki.test.tokens"),
}


TOKENS_FILE = Path("vocab") / "tokens.json"  # the BPE tokenizer of task.tokenizer=bpe


def words_of(lines: list[str]) -> list[str]:
    """The tokens of lines of space-separated words: each line's words, then </s>."""
    return [word for line in lines for word in [*line.split(), END_OF_SENTENCE]]


def sentences_of(words: list[str]) -> list[tuple[str, bool]]:
    """words_of's tokens back as lines: (a line, whether </s> ended it), a last line without </s> too."""
    found, line = [], []
    for word in words:
        if word == END_OF_SENTENCE:
            found.append((" ".join(line), True))
            line = []
        else:
            line.append(word)
    return [*found, (" ".join(line), False)] if line else found


class PieceVocab:
    """BPE pieces as the word LM's vocabulary, with WordVocab's interface over words_of's tokens:
    encode(words) gives each sentence's pieces then </s>; decode(ids) gives words back."""

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tokenizer = tokenizer
        pieces = tokenizer.tokens(list(range(len(tokenizer))))
        # which ids begin a word: "▁piece" (the word-start marker), </s> and <unk> (PTB's own <unk> is a word
        # of its own here; a character train never had also reads as <unk>, and then counts as one too)
        self.starts_word = torch.tensor([piece.startswith("▁") for piece in pieces])
        self.starts_word[[EOS, UNK]] = True

    @classmethod
    def build(cls, train_words: list[str], vocab_size: int) -> PieceVocab:
        lines = [line for line, _ in sentences_of([w for w in train_words if w != UNKNOWN])]
        return cls(TextTokenizer.train(lines, kind="bpe", vocab_size=vocab_size))

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, words: list[str]) -> list[int]:
        """Each run of words between two </s> or <unk> as its pieces; </s> and <unk> as themselves."""
        ids: list[int] = []
        run: list[str] = []
        for word in [*words, None]:
            if word is None or word in (END_OF_SENTENCE, UNKNOWN):
                ids += self.tokenizer.encode(" ".join(run)) if run else []
                ids += [] if word is None else [EOS if word == END_OF_SENTENCE else UNK]
                run = []
            else:
                run.append(word)
        return ids

    def decode(self, ids: list[int]) -> list[str]:
        words: list[str] = []
        run: list[int] = []
        for i in [*ids, None]:
            if i is None or i in (EOS, UNK):
                words += self.tokenizer.decode(run).split()
                words += [] if i is None else [END_OF_SENTENCE if i == EOS else UNKNOWN]
                run = []
            else:
                run.append(i)
        return words

    def save(self, path: Path) -> None:
        self.tokenizer.save(path)

    @classmethod
    def load(cls, path: Path) -> PieceVocab:
        return cls(TextTokenizer.load(path))


class WordLMTask(StreamLMTask):
    """Next-word prediction; metrics loss (nats per word) and perplexity."""

    unit, name = "words", "word LM"
    DEFAULT_LENGTH = 50  # words generated without --max-len
    PREVIEW_LENGTH = 60  # words of the sample written to samples/ as training goes

    def __init__(
        self,
        *,
        data_dir: str | None,
        train_path: str | None,
        val_path: str | None,
        test_path: str | None,
        path: str | None,
        hf_name: str | None,
        hf_column: str,
        hf_split: str,
        embedded_default: bool,
        max_chars: int,
        val_fraction: float,
        test_fraction: float,
        max_vocab: int | None,
        batch_size: int,
        seq_len: int,
        min_seq_len: int,
        eval_max_tokens: int | None,
        tokenizer: Literal["word", "bpe"] = "word",  # runs saved before the key are word runs
        bpe_vocab_size: int = 8000,
    ) -> None:
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError(
                "task.val_fraction and task.test_fraction must be in [0, 1) and leave room for train"
            )
        if tokenizer not in ("word", "bpe"):
            raise ValueError(f"task.tokenizer={tokenizer!r}: use word or bpe")
        if bpe_vocab_size < 16:
            raise ValueError(f"task.bpe_vocab_size={bpe_vocab_size} is too small: give at least 16")
        self.tokenizer, self.bpe_vocab_size = tokenizer, bpe_vocab_size
        self._init_streams(batch_size, seq_len, min_seq_len)
        self.data_dir, self.path, self.hf_name = data_dir, path, hf_name
        self.files = {"train": train_path, "val": val_path, "test": test_path}
        self.hf_column, self.hf_split, self.embedded_default = hf_column, hf_split, embedded_default
        self.max_chars, self.max_vocab, self.eval_max_tokens = max_chars, max_vocab, eval_max_tokens
        self.fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read the splits, build the vocabulary from train (or load the run's own), cut the streams."""
        self.device = device or torch.device("cpu")
        words = self._read_splits()
        kind = PieceVocab if self.tokenizer == "bpe" else WordVocab
        vocab_path = Path(run_dir) / (TOKENS_FILE if self.tokenizer == "bpe" else WORDS_FILE)
        if saved_vocabulary(run_dir, [vocab_path]):
            self.vocab = kind.load(vocab_path)
        else:
            if self.tokenizer == "bpe":
                self.vocab = PieceVocab.build(words["train"], self.bpe_vocab_size)
            else:
                self.vocab = WordVocab.build([words["train"]], max_size=self.max_vocab)
            if rank == 0:
                self.vocab.save(vocab_path)
        # Words outside the vocabulary (rarer than max_vocab allows, or unseen in train) read as <unk>.
        self.splits = {
            split: torch.tensor(self.vocab.encode(tokens), dtype=torch.long)
            for split, tokens in words.items()
        }
        self._set_train_rows(self.splits["train"], rank, world_size)

    def _read_splits(self) -> dict[str, list[str]]:
        """{split: its tokens} for train, val and (where there is one) test."""
        given = {
            "task.data_dir": self.data_dir,
            "task.train_path": self.files["train"] or self.files["val"] or self.files["test"],
            "task.path": self.path,
            "task.hf_name": self.hf_name,
        }
        named = [key for key, value in given.items() if value]
        if len(named) > 1:
            raise UserError(f"give one data source, not {' and '.join(named)}")
        if self.data_dir:
            return self._split_files(_files_in(Path(self.data_dir).expanduser()))
        if named == ["task.train_path"]:
            return self._split_files(self._given_files())
        if not named and not self.embedded_default:
            raise UserError(
                "this experiment reads a corpus from files: give task.data_dir=DIR (a folder with "
                "ptb.train.txt and ptb.valid.txt; ptb.test.txt optional) or task.train_path=FILE "
                "task.val_path=FILE"
            )
        return self._cut_one_text()

    def _given_files(self) -> dict[str, Path]:
        for split in ("train", "val"):
            if not self.files[split]:
                raise UserError(
                    f"task.{split}_path is missing: give both task.train_path and task.val_path "
                    "(task.test_path is optional), or task.data_dir=DIR"
                )
        return {split: Path(file) for split, file in self.files.items() if file}

    def _split_files(self, files: dict[str, Path]) -> dict[str, list[str]]:
        words = {split: words_of(read_lines(file)) for split, file in files.items()}
        for split, tokens in words.items():
            if len(tokens) == tokens.count(END_OF_SENTENCE):
                raise UserError(f"{files[split]} holds no words (the {split} split is empty)")
        return words

    def _cut_one_text(self) -> dict[str, list[str]]:
        """One text's words cut into contiguous [train | val | test] by the fractions (as the char LM
        cuts its characters: a text of one long line splits too)."""
        if self.path:
            text = read_local(self.path, self.max_chars)
        elif self.hf_name:
            text = hub_text(self.hf_name, self.hf_column, self.hf_split, self.max_chars)
        else:
            text = stdlib_source(self.max_chars)
        words = words_of(text.splitlines())
        cut_val = int(len(words) * self.fractions[0])
        cut_test = int(len(words) * (self.fractions[0] + self.fractions[1]))
        parts = {"train": words[:cut_val], "val": words[cut_val:cut_test], "test": words[cut_test:]}
        return {split: part for split, part in parts.items() if part or split != "test"}

    def _eval_rows(self, split: str) -> Tensor:
        if split not in self.splits:
            raise UserError(
                f"this run has no {split} split (no {SPLIT_FILES[split][0]}[.gz] in its task.data_dir, "
                f"no task.{split}_path, or task.{split}_fraction=0): use --split val"
            )
        ids = self.splits[split][: self.eval_max_tokens]
        if len(ids) < 2:
            raise UserError(f"the {split} split is empty (see task.val_fraction / task.test_fraction)")
        return self._rows(ids, self._eval_streams(len(ids)))

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab)}

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss (nats per word, </s> counted; bpe: per piece) and perplexity per word over (a capped
        prefix of) a split."""
        if by_length is not None:
            refuse_by_length(f"the {self.name}")
        loss = self.nats_per_token(model, split)
        if self.tokenizer != "bpe":
            return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
        predicted = self._eval_rows(split)[:, 1:]  # the pieces nats_per_token scored
        words = int(self.vocab.starts_word[predicted.cpu()].sum())
        per_word = loss * predicted.numel() / max(1, words)
        return {"loss": loss, "perplexity": math.exp(min(per_word, 700.0)),
                "piece_perplexity": math.exp(min(loss, 700.0))}  # fmt: skip

    # ------------------------------------------------------------------------------------ decode
    def _encode_prime(self, text: str) -> list[int]:
        """</s>, then the prime's words (a line end in it is </s> too): a prime starts a sentence, as
        every sentence of the training text follows one. Words outside the vocabulary read as <unk>."""
        return [EOS, *self.vocab.encode(words_of(text.splitlines())[:-1])]

    def _join(self, prime: str, tokens: list[int]) -> str:
        """The prime, then the sampled words, a line per sentence (</s> ends one)."""
        words = ["\n" if word == END_OF_SENTENCE else word for word in self.vocab.decode(tokens)]
        return re.sub(r" ?\n ?", "\n", " ".join([prime, *words] if prime else words))

    def _start_id(self) -> int:
        return EOS  # an unprimed sample starts as a new sentence


def _files_in(directory: Path) -> dict[str, Path]:
    """The split files of a data_dir: train and val must be there, test may be."""
    if not directory.is_dir():
        what = "a file, not a directory" if directory.exists() else "no such directory"
        raise UserError(f"task.data_dir={directory}: {what}")
    found = {}
    for split, names in SPLIT_FILES.items():
        candidates = [directory / f"{name}{suffix}" for name in names for suffix in ("", ".gz")]
        file = next((path for path in candidates if path.is_file()), None)
        if file is not None:
            found[split] = file
        elif split != "test":
            raise UserError(
                f"task.data_dir={directory} has no {names[0]} (nor {', '.join(names[1:])}; .gz too): "
                "a word LM needs its train and valid splits there"
            )
    return found
