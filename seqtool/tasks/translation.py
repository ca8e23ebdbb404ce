"""Translation and the synthetic transduction tasks: parallel data, tokenizers, token-budget batches,
teacher-forced cross-entropy, and BLEU / chrF / exact match by decoding.

What the model sees of one pair (ids of tokens t1..tn, u1..um)::

    src      t1 t2 ... tn </s> <pad> ...      [B, S]  right-padded
    tgt_in   <s> u1 u2 ... um <pad> ...       [B, T]  BOS + target
    tgt_out  u1 u2 ... um </s> <pad> ...      [B, T]  target + EOS: what each position predicts

Batches hold up to task.max_tokens padded tokens of similar-length pairs; the endless train stream
(seqtool.data.batching.TrainStream) is fully determined by (seed, epoch, cursor), so a resume is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool import by_length as bucketing
from seqtool import distributed
from seqtool.by_length import ByLength
from seqtool.data import batching, parallel
from seqtool.data.sources import HubSource, LocalFiles, Sources, SyntheticSource
from seqtool.data.tokenize import BOS, EOS, PAD, build_or_load, vocab_files
from seqtool.data.vocab import saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput, Start, check_fits, decode_batched, limits
from seqtool.decode.output import Text
from seqtool.decode.settings import Beam, DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.metrics import perplexity, translation_metrics
from seqtool.tasks.base import Competence, Loss

Pair = tuple[str, str]


@dataclass
class PairBatch:
    src: Tensor  # shape: [B, S] source ids + EOS, right-padded with PAD
    tgt_in: Tensor  # shape: [B, T] BOS + target ids
    tgt_out: Tensor  # shape: [B, T] target ids + EOS
    index: list[int]  # the pairs of the split in this batch, row by row


class TranslationTask:
    """Sequence-to-sequence transduction; see conf/task/translation.yaml for every option."""

    shape = "many-to-many asynchronous"  # a source in, a target of its own length out (seqtool.shapes)

    def __init__(
        self,
        *,
        synthetic: SyntheticSource,
        files: LocalFiles,
        hub: HubSource,
        src_lang: str,
        tgt_lang: str,
        tokenizer: Literal["char", "word", "bpe"],
        vocab_size: int,
        min_frequency: int,
        joint_vocab: bool,
        lowercase: bool,
        max_source_length: int | None,
        max_target_length: int | None,
        max_tokens: int,
        bucket_size: int,
        label_smoothing: float,
        eval_beam: int,
        eval_alpha: float,
        eval_max_len_ratio: float,
        eval_max_len_offset: int,
        eval_max_sentences: int | None,
        preview_sentences: int,
        seed: int,
    ) -> None:
        if max_tokens < 1 or bucket_size < 1 or eval_beam < 1 or vocab_size < 5:
            raise ValueError("task.max_tokens, bucket_size and eval_beam must be ≥ 1, task.vocab_size ≥ 5")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing={label_smoothing} must be in [0, 1)")
        self.sources = Sources(synthetic, files, hub, langs=(src_lang, tgt_lang))
        self.tokenizer_options = dict(
            kind=tokenizer,
            joint=joint_vocab,
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            lowercase=lowercase,
        )
        self.lowercase = lowercase
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.max_tokens, self.bucket_size, self.label_smoothing = max_tokens, bucket_size, label_smoothing
        self.eval_search = SearchSettings(
            Beam(size=eval_beam, alpha=eval_alpha) if eval_beam > 1 else Greedy()
        )
        self.eval_max_len = (eval_max_len_ratio, eval_max_len_offset)
        self.eval_max_sentences, self.preview_sentences = eval_max_sentences, preview_sentences
        self.seed = seed
        self.device, self.rank, self.world_size = torch.device("cpu"), 0, 1

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Load the run's tokenizers, or read the data and train them. A run that has its vocabulary
        reads the data only when a split is asked for, so decoding needs no data (nor network)."""
        self.run_dir, self.rank, self.world_size = Path(run_dir), rank, world_size
        self.device = device or torch.device("cpu")
        self.pairs: dict[str, list[Pair]] = {}
        self.ids: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
        self.stream: batching.TrainStream | None = None
        files = vocab_files(run_dir, self.tokenizer_options["joint"])
        if not saved_vocabulary(run_dir, list(files.values())):
            self.pairs = self.sources.read(self.seed)
        self.src_tokenizer, self.tgt_tokenizer = self._tokenizers(run_dir, rank)

    def _tokenizers(self, run_dir: Path, rank: int):
        options = self.tokenizer_options | {"save": rank == 0}
        if rank == 0:
            tokenizers = build_or_load(run_dir, self.pairs.get("train", []), **options)
        distributed.broadcast(None)  # the other ranks wait for rank 0's files, then load them
        if rank != 0:
            tokenizers = build_or_load(run_dir, self.pairs.get("train", []), **options)
        return tokenizers

    def _data(self) -> None:
        """Read (once) and tokenize the train/val/test splits; filter train and plan its stream."""
        if self.stream is not None:
            return
        if "train" not in self.pairs:
            self.pairs = self.sources.read(self.seed) | self.pairs  # keeps splits added by add_split
        self.ids |= {
            split: self._encode(pairs) for split, pairs in self.pairs.items() if split not in self.ids
        }
        self._filter_train()

    def _encode(self, pairs: list[Pair]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of both sides, without BOS/EOS."""
        sources = self.src_tokenizer.encode_batch([src for src, _ in pairs])
        return sources, self.tgt_tokenizer.encode_batch([tgt for _, tgt in pairs])

    def _filter_train(self) -> None:
        """Drop the train pairs over the length limits; order them by difficulty for the curriculum."""
        sources, targets = self.ids["train"]
        lengths = [len(s) for s in sources], [len(t) for t in targets]
        keep = parallel.within_lengths(*lengths, self.max_source_length, self.max_target_length)
        if not keep:
            raise UserError("no train pair is within task.max_source_length / max_target_length")
        self.pairs["train"] = [self.pairs["train"][i] for i in keep]
        self.ids["train"] = ([sources[i] for i in keep], [targets[i] for i in keep])
        examples = list(zip(*self.ids["train"]))
        sizes = [max(len(s), len(t)) + 1 for s, t in examples]  # + EOS (or BOS): the padded length
        easiest_first = sorted(range(len(examples)), key=lambda i: self.difficulty(examples[i]))
        self.stream = batching.TrainStream(
            sizes, easiest_first, max_tokens=self.max_tokens, bucket_size=self.bucket_size, seed=self.seed,
            rank=self.rank, world_size=self.world_size,
        )  # fmt: skip

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        """Register parallel files (validated) as a split, e.g. for `seqtool eval --src --ref`."""
        self.pairs[name] = parallel.read_parallel(Path(src), Path(ref))
        self.ids[name] = self._encode(self.pairs[name])
        return name

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "src_vocab_size": len(self.src_tokenizer),
            "tgt_vocab_size": len(self.tgt_tokenizer),
            "pad_index": PAD,
            "bos_index": BOS,
            "eos_index": EOS,
        }

    def difficulty(self, example: tuple[list[int], list[int]]) -> float:
        """Source length in tokens (the competence-based curriculum of Platanios et al. 2019)."""
        return float(len(example[0]))

    # ----------------------------------------------------------------------------------- batches
    def batches(self, split: str, *, train: bool, competence: Competence | None = None):
        """The endless, resumable train stream, or one pass over a split in length order."""
        if not train:
            return (self._collate(split, index) for index in self._eval_order(split, self._size(split)))
        self._data()
        return self._train_stream(competence or (lambda: 1.0))

    def _train_stream(self, competence: Competence):
        while True:
            yield self._collate("train", self.stream.next(competence()))

    def _size(self, split: str, limit: int | None = None) -> int:
        """Pairs in a split, at most `limit`."""
        if split not in self.ids:
            self._data()
        if split not in self.ids:
            raise UserError(f"the task has no {split} split (it has {', '.join(self.ids)})")
        return len(self.ids[split][0]) if limit is None else min(limit, len(self.ids[split][0]))

    def _eval_order(self, split: str, count: int) -> list[list[int]]:
        """The first `count` pairs of a split in length-sorted batches (little padding)."""
        sources, targets = self.ids[split]
        sizes = [max(len(sources[i]), len(targets[i])) + 1 for i in range(count)]
        return batching.sorted_batches(sizes, self.max_tokens)

    def _collate(self, split: str, index: list[int]) -> PairBatch:
        sources, targets = self.ids[split]
        src = batching.pad([sources[i] + [EOS] for i in index], PAD)
        tgt_in = batching.pad([[BOS] + targets[i] for i in index], PAD)
        tgt_out = batching.pad([targets[i] + [EOS] for i in index], PAD)
        return PairBatch(src.to(self.device), tgt_in.to(self.device), tgt_out.to(self.device), index)

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: PairBatch) -> Loss:
        """Token-level cross-entropy (label-smoothed) summed over the non-pad target tokens."""
        # A Transformer's position table bounds both sides: say which option fixes it, not an index error.
        check_fits(model, batch.src.size(1) - 1, "a train source (set task.max_source_length)")
        check_fits(model, batch.tgt_in.size(1) - 1, "a train target (set task.max_target_length)", side=1)
        return self._cross_entropy(model, batch, self.label_smoothing)

    @staticmethod
    def _cross_entropy(model: nn.Module, batch: PairBatch, label_smoothing: float = 0.0) -> Loss:
        """Cross-entropy summed over the batch's non-pad target tokens, and their number."""
        logits = model(batch.src, batch.tgt_in)  # shape: [B, T, V]
        targets = batch.tgt_out.flatten()  # shape: [B*T]
        total = F.cross_entropy(
            logits.flatten(0, 1).float(),
            targets,
            ignore_index=PAD,
            reduction="sum",
            label_smoothing=label_smoothing,
        )
        return Loss(total=total, count=int((targets != PAD).sum()))

    def evaluate(
        self,
        model: nn.Module,
        split: str,
        search: SearchSettings | None = None,
        by_length: ByLength | None = None,
    ) -> dict[str, Any]:
        """loss and perplexity by teacher forcing, then bleu, chrf, exact_match (0-100) and the BLEU
        signature by decoding. search None (training) caps the split at task.eval_max_sentences and
        decodes with task.eval_beam; `seqtool eval` passes its search and scores the whole split.
        by_length: the same hypotheses scored per source-length bucket as well ("by_length", a list,
        also written to RUN/eval/by_length_<split>.json; seqtool.by_length)."""
        size = self._size(split, self.eval_max_sentences if search is None else None)
        search = self.eval_search if search is None else search.with_default(self.eval_search.strategy)
        self._check_lengths(model, split, size)
        total, count = 0.0, 0
        with torch.no_grad():
            for index in self._eval_order(split, size):
                loss = self._cross_entropy(model, self._collate(split, index))  # unsmoothed: the true NLL
                total, count = total + float(loss.total), count + loss.count
        hypotheses = self.translate(model, self.ids[split][0][:size], search)
        references = [target for _, target in self.pairs[split][:size]]
        self._write_hypotheses(split, hypotheses)
        mean = total / max(count, 1)
        metrics = {"loss": mean, "perplexity": perplexity(mean),
                   **translation_metrics(hypotheses, references, lowercase=self.lowercase)}  # fmt: skip
        if by_length is None:
            return metrics
        lengths = [len(ids) for ids in self.ids[split][0][:size]]  # source tokens, EOS not counted
        buckets = self._buckets(lengths, by_length)
        rows = bucketing.score(lengths, hypotheses, references, buckets, self.lowercase)
        tokens = self.tokenizer_options["kind"]
        bucketing.write(self.run_dir, split, tokens=tokens, metrics=metrics, rows=rows)
        return metrics | {"by_length": rows}

    def _buckets(self, lengths: list[int], by_length: ByLength) -> list[bucketing.Bucket]:
        """The edges given, else one bucket per length on the synthetic tasks, else default_edges()."""
        if by_length.edges is not None:
            return bucketing.from_edges(by_length.edges)
        if self.sources.synthetic.kind != "none":
            return bucketing.per_length(lengths)
        return bucketing.from_edges(self.default_edges())

    def default_edges(self) -> tuple[int, ...]:
        """Bucket edges of real text: 10..60 words or BPE pieces (Bahdanau et al.'s range), 50..300 chars."""
        step = 50 if self.tokenizer_options["kind"] == "char" else 10
        return tuple(step * k for k in range(1, 7))

    def _check_lengths(self, model: nn.Module, split: str, size: int) -> None:
        """Refuse, by line, a source or reference the model cannot take (a Transformer's positions)."""
        for side, name in enumerate(("source", "target")):
            for i, ids in enumerate(self.ids[split][side][:size]):
                check_fits(model, len(ids), f"line {i + 1} of the {split} {name}", side=side)

    def _write_hypotheses(self, split: str, hypotheses: list[str]) -> None:
        path = self.run_dir / "hypotheses" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in hypotheses), encoding="utf-8")

    # ------------------------------------------------------------------------------------ decode
    decode_output = Text(labelled=False, reads_prime=True)  # one line per input line
    default_strategy = Beam(size=5)
    end_token = EOS

    def translate(self, model: nn.Module, sources: list[list[int]], search: SearchSettings) -> list[str]:
        """The best detokenised hypothesis of each source (token ids without EOS)."""
        inputs = [DecodeInput(str(n), ids, len(ids) + 1, n) for n, ids in enumerate(sources)]
        return [
            self.render(item, found.tokens[0])
            for item, found in zip(inputs, self.decode(model, inputs, search))
        ]

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """The lines of --input (a file, or - for stdin line by line) or --prime, as source ids; a file's
        lines are all read and checked before the first is translated."""
        copies = search.strategy.copies(options.num)
        chunks = (
            [DecodeInput(str(number), ids, len(ids) + 1, number, copy)
             for number, ids in self._sources(model, chunk) for copy in range(copies)]
            for chunk in parallel.numbered_lines(options.input, options.prime)
        )  # fmt: skip
        return chunks if options.input == "-" else iter(list(chunks))

    def _sources(self, model: nn.Module, lines: list[tuple[int, str]]) -> list[tuple[int, list[int]]]:
        numbered = [(number, self.src_tokenizer.encode(text)) for number, text in lines]
        for number, ids in numbered:
            check_fits(model, len(ids), f"input line {number}")
        return numbered

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> list[Decoded]:
        """n-best hypotheses (tokens, scores, attention) of each source, in input order."""
        return decode_batched(model, inputs, search, start=self._start, budget=self.max_tokens)

    def _start(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> Start:
        """Encode the sources (+ EOS); each output starts at BOS and is capped by _max_len."""
        src = batching.pad([item.value + [EOS] for item in inputs], PAD).to(self.device)  # shape: [B, S]
        target_limit = limits(model)[1] or 2**31  # generating n tokens takes n target positions
        caps = [min(self._max_len(search, len(item.value)), target_limit) for item in inputs]
        first = torch.full((src.size(0),), BOS, dtype=torch.long, device=self.device)  # shape: [B]
        state = model.init_state(model.encode(src), src.size(0))
        return Start(
            state, first, torch.tensor(caps, device=self.device), EOS, [item.size for item in inputs]
        )

    def _max_len(self, search: SearchSettings, source_length: int) -> int:
        """Output cap of one source: --max-len when given, else ratio x length + offset."""
        ratio, offset = self.eval_max_len
        return search.max_len if search.max_len is not None else math.ceil(ratio * source_length) + offset

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        return self.tgt_tokenizer.decode(tokens)

    def plot_attention(self, item: DecodeInput, decoded: Decoded, directory: Path) -> int:
        """The best hypothesis's attention map as attention_<line>.png; 0 when the model reports none."""
        if decoded.attention is None:
            return 0
        from seqtool.plots import plot_attention

        weights = decoded.attention[0]  # shape: [output length, source length + 1]
        outputs = self.tgt_tokenizer.tokens(decoded.tokens[0])
        outputs += ["</s>"] * (weights.shape[0] - len(outputs))  # the EOS step has a row of its own
        sources = self.src_tokenizer.tokens(item.value) + ["</s>"]
        plot_attention(sources, outputs, weights, directory / f"attention_{item.index:04d}.png")
        return 1

    def preview(self, model: nn.Module) -> str:
        """A few val sentences as `source → hypothesis (reference)` lines."""
        self._data()
        count = min(self.preview_sentences, len(self.pairs["val"]))
        hypotheses = self.translate(model, self.ids["val"][0][:count], self.eval_search)
        return "".join(f"{s} → {h} ({r})\n" for (s, r), h in zip(self.pairs["val"][:count], hypotheses))

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        self._data()
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._data()
        self.stream.load_state_dict(state)
