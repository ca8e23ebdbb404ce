"""Fused attention vs the explicit softmax: what scaled_dot_product_attention buys the Transformers.

The same randomly initialised models of their YAML sizes, each attention either through torch's
``scaled_dot_product_attention`` ("fused", the default) or through the explicit softmax(QKᵀ/√d)V that
``need_weights`` takes ("explicit", forced here for every attention):

(1) Transformer training: target tokens/s of forward + cross-entropy + backward + AdamW step.
(2) Transformer greedy decoding with the key/value cache: sentences/s, 32 new tokens per sentence.
(3) Transformer LM training (char vocabulary, block 128): tokens/s.

Sides alternate in rounds; the median counts. ratio = fused / explicit.

    cd /work/main && .venv/bin/python benchmarks/attention.py --threads 1 [--device cuda]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from harness import alternate, machine, print_result, rate
from seqtool.commands import resolve_device
from seqtool.config import compose, instantiate
from seqtool.decode.search import greedy
from seqtool.models.attention import MultiHeadAttention

PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--vocab", type=int, default=4000, help="translation vocabulary (both sides)")
    parser.add_argument("--train-batch", type=int, default=16, help="sentence pairs per training step")
    parser.add_argument("--train-len", type=int, default=24, help="source and target length in training")
    parser.add_argument("--sentences", type=int, default=32, help="sources decoded at once")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens per sentence (no EOS)")
    parser.add_argument("--lm-batch", type=int, default=32)
    parser.add_argument("--lm-block", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed calls per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


@contextmanager
def explicit_attention():
    """Every MultiHeadAttention through its explicit path (weights computed, then dropped if not asked)."""
    fused = MultiHeadAttention.attend

    def explicit(self, *args, need_weights: bool = False, **kwargs):
        out, weights = fused(self, *args, need_weights=True, **kwargs)
        return out, weights if need_weights else None

    MultiHeadAttention.attend = explicit
    try:
        yield
    finally:
        MultiHeadAttention.attend = fused


def sides(run: Callable[[], object]) -> dict[str, Callable[[], object]]:
    """The same call, fused and explicit."""

    def explicit() -> object:
        with explicit_attention():
            return run()

    return {"fused": run, "explicit": explicit}


def measure(
    name: str, calls: dict[str, Callable[[], object]], items: float, args, device
) -> dict[str, float]:
    """Warm up, alternate rounds; {name_fused, name_explicit, name_ratio}, items per second."""
    for call in calls.values():
        call()
    timed = {
        side: (lambda call=call: rate(call, steps=args.steps, items_per_step=items, device=device))
        for side, call in calls.items()
    }
    medians = alternate(timed, rounds=args.rounds, unit="/s")
    ratio = medians["fused"] / medians["explicit"]
    return {
        f"{name}_fused": round(medians["fused"], 1),
        f"{name}_explicit": round(medians["explicit"], 1),
    } | {f"{name}_ratio": round(ratio, 3)}


def training_step(model: nn.Module, inputs: tuple, targets: torch.Tensor) -> Callable[[], None]:
    """forward + cross-entropy + backward + AdamW; the model returns logits (or (logits, state))."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(*inputs)
        logits = logits[0] if isinstance(logits, tuple) else logits
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        optimizer.step()

    return step


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    result: dict[str, object] = machine(device)

    torch.manual_seed(args.seed)
    sizes = {"src_vocab_size": args.vocab, "tgt_vocab_size": args.vocab, "pad_index": PAD, "bos_index": BOS}
    cfg = compose(["task=translation", "model=transformer"]).model
    model = instantiate(cfg, **sizes, eos_index=EOS).to(device)
    shape = (args.train_batch, args.train_len)
    src, tgt = (torch.randint(FIRST_WORD, args.vocab, shape, generator=generator).to(device) for _ in "st")
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)
    print(f"(1) Transformer training, batch {args.train_batch} x {args.train_len}")
    result |= measure(
        "train_tok_per_s", sides(training_step(model, (src, tgt_in), tgt)), tgt.numel(), args, device
    )

    lengths = torch.randint(10, 21, (args.sentences,), generator=generator)
    sources = torch.randint(FIRST_WORD, args.vocab, (args.sentences, 21), generator=generator)
    sources[torch.arange(21) >= lengths[:, None]] = PAD
    sources, model = sources.to(device), model.eval()

    def decode() -> None:
        with torch.inference_mode():
            state = model.init_state(model.encode(sources), args.sentences)
            greedy(model, state, torch.full((args.sentences,), BOS, device=device), max_len=args.new_tokens)

    print(f"(2) Transformer greedy, {args.sentences} sentences x {args.new_tokens} tokens")
    result |= measure("greedy_sent_per_s", sides(decode), args.sentences, args, device)

    torch.manual_seed(args.seed)
    lm = instantiate(compose(["model=transformer_lm"]).model, vocab_size=65).to(device)
    tokens = torch.randint(65, (args.lm_batch, args.lm_block + 1), generator=generator).to(device)
    print(f"(3) Transformer LM training, batch {args.lm_batch} x {args.lm_block}")
    step = training_step(lm, (tokens[:, :-1],), tokens[:, 1:])
    result |= measure("lm_train_tok_per_s", sides(step), args.lm_batch * args.lm_block, args, device)
    print_result(result)


if __name__ == "__main__":
    main()
