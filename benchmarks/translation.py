"""Translation models: batched beam search vs one sentence at a time, and Transformer training vs torch's.

(1) sentences/s of `beam_search` (beam 5) over a batch of random sources (10-20 tokens, output capped at
    1.5 x source length) against decoding the same sentences one at a time, for randomly initialised
    `transformer` and `seq2seq_attn` models of their YAML sizes. Goal: batched >= 10x on a GPU.
(2) training tokens/s (target tokens) of seqtool's Transformer beside a plain `torch.nn.Transformer` of
    the same shape (d_model, heads, layers, ffn, dropout, pre/post-LN), same vocabulary and batch:
    forward + cross-entropy + backward + AdamW step. ratio = seqtool / plain (goal: >= 0.9).

Each pair runs in alternating rounds (A B, B A, ...) so machine noise hits both; the median counts.

    cd /work/main && .venv/bin/python benchmarks/translation.py [--device cuda] [--precision bf16]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import alternate, autocast, comparison, machine, measure_steps, print_result, rate
from seqtool.commands import resolve_device
from seqtool.config import compose, instantiate
from seqtool.decode.search import beam_search
from seqtool.models.transformer import sinusoids

PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--vocab", type=int, default=4000, help="source and target vocabulary size")
    parser.add_argument("--sentences", type=int, default=32, help="sources decoded per round (GPU: 64+)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--decode-rounds", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=16, help="sentence pairs per training step")
    parser.add_argument("--train-len", type=int, default=24, help="source and target length in training")
    parser.add_argument("--train-steps", type=int, default=3, help="timed steps per round and side")
    parser.add_argument("--train-rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side before round 1")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build(name: str, vocab: int, device: torch.device, seed: int) -> nn.Module:
    """The model of conf/model/NAME.yaml, as the translation task would build it, randomly initialised."""
    torch.manual_seed(seed)
    sizes = {"src_vocab_size": vocab, "tgt_vocab_size": vocab, "pad_index": PAD, "bos_index": BOS}
    cfg = compose(["task=translation", f"model={name}"]).model
    return instantiate(cfg, **sizes, eos_index=EOS).to(device)


# ------------------------------------------------------------------------------------ (1) beam search
def random_sources(args: argparse.Namespace, device: torch.device) -> list[Tensor]:
    generator = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(10, 21, (args.sentences,), generator=generator).tolist()
    words = [torch.randint(FIRST_WORD, args.vocab, (n,), generator=generator) for n in lengths]
    return [torch.cat([w, torch.tensor([EOS])]).to(device) for w in words]  # each [n + 1]


def decode(model: nn.Module, sources: list[Tensor], beam: int, dtype) -> list[list[int]]:
    """Beam-search a list of sources as one right-padded batch; the best hypothesis of each."""
    src = nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD)  # [B, S]
    limits = torch.tensor([int(1.5 * (len(s) - 1)) for s in sources], device=src.device)  # [B]
    with torch.inference_mode(), autocast(src.device, dtype):
        state = model.init_state(model.encode(src), src.size(0))
        first = torch.full((src.size(0),), BOS, device=src.device)
        found = beam_search(model, state, first, beam_size=beam, max_len=limits, eos=EOS)
    return [hyps[0] for hyps in found.tokens]


def beam_throughput(model: nn.Module, args, device, dtype) -> tuple[dict[str, float], float]:
    """Medians of sentences/s batched and one at a time; the fraction of identical best hypotheses."""
    model.eval()
    sources = random_sources(args, device)
    decode(model, sources[:2], args.beam, dtype)  # warm up
    outputs: dict[str, list[list[int]]] = {}

    def timed(name: str, run: Callable[[], list[list[int]]]) -> Callable[[], float]:
        def keep() -> None:
            outputs[name] = run()

        return lambda: rate(keep, steps=1, items_per_step=len(sources), device=device)

    def one_by_one() -> list[list[int]]:
        return [decode(model, [source], args.beam, dtype)[0] for source in sources]

    batched = timed("batched", lambda: decode(model, sources, args.beam, dtype))
    medians = alternate(
        {"batched": batched, "one_by_one": timed("one_by_one", one_by_one)},
        rounds=args.decode_rounds,
        unit="sentences/s",
    )
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["one_by_one"], strict=True)) / len(sources)
    return medians, same


# --------------------------------------------------------------------------------------- (2) training
class PlainTransformer(nn.Module):
    """torch.nn.Transformer with the same embeddings (· √d + sinusoids), masks and tied output."""

    def __init__(self, ours: nn.Module, cfg) -> None:
        super().__init__()
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")  # pre-LN: torch says why
        d_model, vocab = cfg.d_model, ours.output.out_features
        self.src_embedding, self.tgt_embedding = nn.Embedding(vocab, d_model), nn.Embedding(vocab, d_model)
        self.register_buffer("positions", sinusoids(cfg.max_positions, d_model), persistent=False)
        self.transformer = nn.Transformer(
            d_model, cfg.heads, cfg.encoder_layers, cfg.decoder_layers, cfg.ffn_size, cfg.dropout,
            activation=cfg.activation, batch_first=True, norm_first=cfg.norm_first,
        )  # fmt: skip
        self.output = nn.Linear(d_model, vocab, bias=False)
        self.output.weight = self.tgt_embedding.weight
        self.scale = d_model**0.5

    def embed(self, embedding: nn.Embedding, tokens: Tensor) -> Tensor:
        return embedding(tokens) * self.scale + self.positions[: tokens.size(1)]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        padding = src == PAD  # [B, S], torch: True = ignore
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), device=src.device)
        x = self.transformer(
            self.embed(self.src_embedding, src), self.embed(self.tgt_embedding, tgt_in), tgt_mask=causal,
            tgt_is_causal=True, src_key_padding_mask=padding, memory_key_padding_mask=padding,
        )  # fmt: skip
        return self.output(x)


def train_throughput(ours: nn.Module, plain: nn.Module, args, device, dtype) -> dict[str, float]:
    """Medians of target tokens/s per side, on the same random batch."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.train_batch, args.train_len)
    src = torch.randint(FIRST_WORD, args.vocab, shape, generator=generator).to(device)
    tgt = torch.randint(FIRST_WORD, args.vocab, shape, generator=generator).to(device)
    tgt_in, tgt_out = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1), tgt

    def trainer(model: nn.Module) -> Callable[[], None]:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def one_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                logits = model(src, tgt_in)  # [B, T, V]
            F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten()).backward()
            optimizer.step()

        return one_step

    return measure_steps(
        {"seqtool": trainer(ours), "plain": trainer(plain)},
        warmup=args.warmup,
        steps=args.train_steps,
        rounds=args.train_rounds,
        items_per_step=tgt_out.numel(),
        device=device,
        unit="tok/s",
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    dtype = torch.bfloat16 if bf16 else None
    result: dict[str, object] = {
        **machine(device),
        "precision": "bf16" if bf16 else "fp32",
        "vocab": args.vocab,
        "sentences": args.sentences,
        "beam": args.beam,
    }
    for name in ("transformer", "seq2seq_attn"):
        print(f"beam search, {name}: {args.sentences} sources of 10-20 tokens, beam {args.beam}")
        medians, same = beam_throughput(build(name, args.vocab, device, args.seed), args, device, dtype)
        result[f"{name}_batched_sent_per_s"] = round(medians["batched"], 2)
        result[f"{name}_one_by_one_sent_per_s"] = round(medians["one_by_one"], 2)
        result[f"{name}_batched_speedup"] = round(medians["batched"] / medians["one_by_one"], 2)
        result[f"{name}_same_output"] = round(same, 3)
    print(f"training, transformer vs torch.nn.Transformer: batch {args.train_batch} x {args.train_len}")
    cfg = compose(["task=translation", "model=transformer"]).model
    ours = build("transformer", args.vocab, device, args.seed)
    plain = PlainTransformer(ours, cfg).to(device)
    medians = train_throughput(ours, plain, args, device, dtype)
    result["train_batch"] = [args.train_batch, args.train_len]
    result |= {f"train_{key}": value for key, value in comparison(**medians, unit="tokens", digits=0).items()}
    print_result(result)


if __name__ == "__main__":
    main()
