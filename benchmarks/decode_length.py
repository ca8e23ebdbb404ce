"""Greedy decoding time per token against the output length: the key/value cache keeps a step's cost flat.

A randomly initialised Transformer of conf/model/transformer.yaml's size (its position table widened to
the longest length) decodes the same random sources greedily for exactly N new tokens (EOS forbidden
until then) for each N in --lengths. Each step feeds one token through the cached decoder, so a step
costs the same matmuls at every position plus attention over the t cached positions, which grows with t
but is small beside the matmuls at these sizes: ms/token should stay nearly flat, where recomputing the
prefix at every step would make it grow linearly. The lengths run in alternating rounds; medians count.
ratio = ms/token at the longest length / at the shortest.

    cd /work/main && .venv/bin/python benchmarks/decode_length.py [--device cuda] [--batch 8]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness import alternate, machine, print_result, rate
from seqtool.commands import resolve_device
from seqtool.config import compose, instantiate
from seqtool.decode.search import greedy

PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--batch", type=int, default=1, help="sentences decoded at once")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build(args: argparse.Namespace, device: torch.device) -> nn.Module:
    torch.manual_seed(args.seed)
    cfg = compose(["task=translation", "model=transformer", f"model.max_positions={max(args.lengths) + 1}"])
    sizes = {"src_vocab_size": args.vocab, "tgt_vocab_size": args.vocab, "pad_index": PAD, "bos_index": BOS}
    return instantiate(cfg.model, **sizes, eos_index=EOS).to(device).eval()


def sources(args: argparse.Namespace, device: torch.device) -> Tensor:
    """args.batch right-padded sources of 10-20 random words + EOS: [batch, S]."""
    generator = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(10, 21, (args.batch,), generator=generator).tolist()
    rows = [torch.cat([torch.randint(FIRST_WORD, args.vocab, (n,), generator=generator), torch.tensor([EOS])])
            for n in lengths]  # fmt: skip
    return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD).to(device)


def decode(model: nn.Module, src: Tensor, length: int) -> Callable[[], None]:
    """Greedy decoding of exactly `length` tokens per sentence."""

    def run() -> None:
        with torch.inference_mode():
            state = model.init_state(model.encode(src), src.size(0))
            first = torch.full((src.size(0),), BOS, device=src.device)
            greedy(model, state, first, max_len=length, min_len=length, eos=EOS)

    return run


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, src = build(args, device), sources(args, device)
    decode(model, src, 2)()  # warm up
    sides = {f"{n}": (lambda n=n: rate(decode(model, src, n), steps=1, items_per_step=n, device=device))
             for n in args.lengths}  # fmt: skip
    steps_per_s = alternate(sides, rounds=args.rounds, unit="steps/s")
    result: dict[str, object] = {**machine(device), "batch": args.batch, "rounds": args.rounds}
    ms = {n: 1000 / steps_per_s[f"{n}"] for n in args.lengths}
    result |= {f"ms_per_token_{n}": round(value, 3) for n, value in ms.items()}
    longest, shortest = max(args.lengths), min(args.lengths)
    result[f"ratio_{longest}_vs_{shortest}"] = round(ms[longest] / ms[shortest], 3)
    print_result(result)


if __name__ == "__main__":
    main()
