"""Decoding for the translation task: batched search over many sources, and `seqtool decode`'s input,
output and attention plots.

    sources (ids) -> length-sorted batches -> encode, init_state -> greedy / sample / beam_search
                  -> n-best per source, back in input order

`seqtool decode` prints one hypothesis per input line, or, when there are several per input (--nbest N
with beam search, --num N with sampling), one line per hypothesis: ``LINE<TAB>SCORE<TAB>TEXT``, LINE the
1-based input line and SCORE the ranking score (the log-probability, length-penalised with --alpha).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

from seqtool.data import batching
from seqtool.data.parallel import decode_line, read_lines
from seqtool.data.tokenize import BOS, EOS, PAD
from seqtool.decode.search import Hypotheses, beam_search, greedy, sample
from seqtool.decode.settings import DecodeOptions, SearchSettings, check_nbest
from seqtool.errors import UserError
from seqtool.progress import warn

CHUNK = 256  # input lines translated (and written) together


@dataclass
class Translation:
    """The hypotheses of one source, best first."""

    tokens: list[list[int]]  # [n-best][length], without BOS and EOS
    scores: list[float]  # [n-best]
    attention: list[Tensor] | None  # [n-best] -> [output length (EOS included), source length + EOS]


def limits(model: nn.Module) -> tuple[int | None, int | None]:
    """The longest source and target (EOS / BOS included) the model takes; None: any length.

    Read from `max_source_positions` / `max_target_positions` (the wrapped model's under DDP)."""
    model = getattr(model, "module", model)
    return getattr(model, "max_source_positions", None), getattr(model, "max_target_positions", None)


def check_fits(model: nn.Module, length: int, what: str, *, side: int = 0) -> None:
    """Refuse a source (side 0) or target (side 1) of `length` tokens + EOS the model cannot take."""
    limit = limits(model)[side]
    if limit is not None and length + 1 > limit:
        raise UserError(
            f"{what} has {length} tokens, more than this model takes ({limit - 1} + the end token)"
        )


def translate(
    model: nn.Module,
    sources: list[list[int]],
    search: SearchSettings,
    *,
    max_len: Callable[[int], int],
    max_tokens: int,
    device: torch.device,
) -> list[Translation]:
    """Search each source (ids without EOS) in length-sorted batches; `max_len(source length)` caps the
    output. Results come back in input order."""
    results: list[Any] = [None] * len(sources)
    sizes = [len(source) + 1 for source in sources]
    budget = max(1, max_tokens // search.beam_size) if search.strategy == "beam" else max_tokens
    generator = torch.Generator(device=device).manual_seed(search.seed)
    target_limit = limits(model)[1] or 2**31  # generating n tokens takes n target positions
    for index in batching.sorted_batches(sizes, budget):
        src = batching.pad([sources[i] + [EOS] for i in index], PAD).to(device)  # shape: [B, S]
        caps = [min(max_len(len(sources[i])), target_limit) for i in index]
        found = _search(model, src, torch.tensor(caps, device=device), search, generator)  # caps: [B]
        for row, i in enumerate(index):
            attention = None
            if found.attention is not None:  # cut the batch's padding columns off
                attention = [weights[:, : sizes[i]].float().cpu() for weights in found.attention[row]]
            results[i] = Translation(found.tokens[row], found.scores[row], attention)
    return results


def _search(
    model: nn.Module, src: Tensor, caps: Tensor, search: SearchSettings, generator: torch.Generator
) -> Hypotheses:
    with torch.inference_mode():
        state = model.init_state(model.encode(src), src.size(0))
        first = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)  # shape: [B]
        if search.strategy == "beam":
            return beam_search(
                model, state, first, beam_size=search.beam_size, max_len=caps, eos=EOS,
                nbest=search.nbest, alpha=search.alpha,
            )  # fmt: skip
        if search.strategy == "sample":
            return sample(
                model, state, first, max_len=caps, eos=EOS, temperature=search.temperature,
                top_k=search.top_k, top_p=search.top_p, generator=generator,
            )  # fmt: skip
        return greedy(model, state, first, max_len=caps, eos=EOS)


# --------------------------------------------------------------------------------- seqtool decode


def run_decode(task: Any, model: nn.Module, options: DecodeOptions) -> None:
    """Translate --input (a file, or - for stdin line by line) or --prime; write as the module says."""
    search = options.search if options.search.strategy else replace(options.search, strategy="beam")
    check_nbest(search)
    copies = options.num if search.strategy == "sample" else 1
    several = copies > 1 or (search.strategy == "beam" and search.nbest > 1)
    plotted = 0
    with _open_output(options.output) as out:
        for chunk in _input_chunks(task, model, options):
            numbers, sources = zip(*chunk)
            found = task.decode(model, [ids for ids in sources for _ in range(copies)], search)
            for n, (number, ids) in enumerate(zip(numbers, sources)):
                results = found[n * copies : (n + 1) * copies]
                out.write(_format(task, number, results, several))
                if options.plot_dir is not None:
                    plotted += _plot(task, ids, results[0], options.plot_dir / f"attention_{number:04d}.png")
            out.flush()
    if options.plot_dir is not None and not plotted:
        warn("this model reports no attention weights, so --plot-attention wrote nothing")


def _input_chunks(
    task: Any, model: nn.Module, options: DecodeOptions
) -> Iterator[list[tuple[int, list[int]]]]:
    """(line number, source ids) in chunks: standard input one line at a time (so a pipe gets each
    answer at once), a file in chunks after every line has been read and checked."""
    if options.input == "-":
        for number, raw in enumerate(iter(sys.stdin.buffer.readline, b""), start=1):
            yield [(number, _source(task, model, decode_line(raw, "standard input", number), number))]
        return
    if options.input is not None:
        if not Path(options.input).is_file():
            raise UserError(f"--input {options.input}: no such file")
        lines = read_lines(Path(options.input))
    elif options.prime:
        lines = [options.prime]
    else:
        raise UserError("translation decodes sentences: give --input FILE (or - for stdin) or --prime TEXT")
    numbered = [(n, _source(task, model, line, n)) for n, line in enumerate(lines, start=1)]
    for start in range(0, len(numbered), CHUNK):
        yield numbered[start : start + CHUNK]


def _source(task: Any, model: nn.Module, text: str, number: int) -> list[int]:
    ids = task.src_tokenizer.encode(text)
    check_fits(model, len(ids), f"input line {number}")
    return ids


def _format(task: Any, number: int, results: list[Translation], several: bool) -> str:
    if not several:
        return task.tgt_tokenizer.decode(results[0].tokens[0]) + "\n"
    lines = []
    for result in results:
        for tokens, score in zip(result.tokens, result.scores):
            lines.append(f"{number}\t{score:.4f}\t{task.tgt_tokenizer.decode(tokens)}\n")
    return "".join(lines)


def _plot(task: Any, source: list[int], result: Translation, path: Path) -> int:
    """The best hypothesis's attention map as a PNG; 0 when the model reports none."""
    if result.attention is None:
        return 0
    from seqtool.plots import plot_attention

    weights = result.attention[0]  # shape: [output length, source length + 1]
    outputs = task.tgt_tokenizer.tokens(result.tokens[0])
    outputs += ["</s>"] * (weights.shape[0] - len(outputs))  # the EOS step has a row of its own
    plot_attention(task.src_tokenizer.tokens(source) + ["</s>"], outputs, weights, path)
    return 1


@contextlib.contextmanager
def _open_output(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as file:
        yield file
