"""seqtool's beam search and greedy decoding beside Hugging Face `generate` on an equal-size Marian model.

Both sides are randomly initialised encoder-decoder Transformers of conf/model/transformer.yaml's size
(d_model, heads, encoder/decoder layers, ffn, vocabulary; separate source and target embeddings, the output
tied to the target one) and decode the same right-padded random sources (10-20 tokens + EOS) for exactly
`--new-tokens` tokens: EOS is forbidden until then on both sides (seqtool: min_len = max_len; HF:
min_new_tokens = max_new_tokens), so both run the same number of decoder steps whatever the weights say.
Each setting (beam 5 and greedy, at batch 1 and 32) runs in alternating rounds; the medians count, in
sentences/s. ratio = seqtool / HF. One thread by default (--threads), as the issue's table was measured.

    cd /work/main && .venv/bin/python benchmarks/peers/hf_generate.py [--device cuda] [--profile]

`--profile` prints torch.profiler's tables of both sides' beam 5 at the largest batch instead of timing.
Needs `transformers` (the `bench` extra). The last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import alternate, machine, print_result, rate  # noqa: E402
from seqtool.commands import resolve_device  # noqa: E402
from seqtool.config import compose, instantiate  # noqa: E402
from seqtool.decode.search import beam_search, greedy  # noqa: E402

PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--vocab", type=int, default=8000, help="source and target vocabulary size")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="sentences per call")
    parser.add_argument("--sentences", type=int, default=4, help="sentences timed per round at batch 1")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sentence")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile both sides' beam search; no timing")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def import_marian():
    try:
        from transformers import MarianConfig, MarianMTModel
    except ImportError:
        sys.exit("hf_generate.py needs transformers: pip install -e '.[bench]' (or pip install transformers)")
    return MarianConfig, MarianMTModel


def seqtool_model(vocab: int, device: torch.device, seed: int) -> nn.Module:
    """conf/model/transformer.yaml, as the translation task builds it, randomly initialised."""
    torch.manual_seed(seed)
    sizes = {"src_vocab_size": vocab, "tgt_vocab_size": vocab, "pad_index": PAD, "bos_index": BOS}
    cfg = compose(["task=translation", "model=transformer"]).model
    return instantiate(cfg, **sizes, eos_index=EOS).to(device).eval()


def marian_model(vocab: int, device: torch.device, seed: int) -> nn.Module:
    """A Marian model of the same shape: separate embeddings, output tied to the decoder's, ReLU FFN."""
    MarianConfig, MarianMTModel = import_marian()
    cfg = compose(["task=translation", "model=transformer"]).model
    config = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_size, decoder_ffn_dim=cfg.ffn_size, activation_function=cfg.activation,
        max_position_embeddings=cfg.max_positions, pad_token_id=PAD, eos_token_id=EOS,
        decoder_start_token_id=PAD, share_encoder_decoder_embeddings=False, scale_embedding=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    return MarianMTModel(config).to(device).eval()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def random_batch(size: int, vocab: int, device: torch.device, seed: int) -> Tensor:
    """size right-padded sources of 10-20 random words + EOS: [size, S]."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, 21, (size,), generator=generator).tolist()
    sources = [torch.cat([torch.randint(FIRST_WORD, vocab, (n,), generator=generator), torch.tensor([EOS])])
               for n in lengths]  # fmt: skip
    return nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD).to(device)


def seqtool_decode(model: nn.Module, src: Tensor, beam: int, new_tokens: int) -> None:
    with torch.inference_mode():
        state = model.init_state(model.encode(src), src.size(0))
        first = torch.full((src.size(0),), BOS, device=src.device)
        if beam == 1:
            greedy(model, state, first, max_len=new_tokens, min_len=new_tokens, eos=EOS)
        else:
            beam_search(model, state, first, beam_size=beam, max_len=new_tokens, min_len=new_tokens, eos=EOS)


def hf_decode(model: nn.Module, src: Tensor, beam: int, new_tokens: int) -> None:
    with torch.inference_mode():
        model.generate(
            input_ids=src, attention_mask=src != PAD, num_beams=beam, do_sample=False,
            max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        )  # fmt: skip


def setting(args, models: dict[str, nn.Module], beam: int, batch: int, device) -> dict[str, float]:
    """Medians of sentences/s per side for one (beam, batch): `--sentences` calls at batch 1, else one."""
    calls = args.sentences if batch == 1 else 1
    sources = [random_batch(batch, args.vocab, device, args.seed + i) for i in range(calls)]
    decoders = {"seqtool": seqtool_decode, "hf": hf_decode}

    def run(name: str) -> Callable[[], None]:
        def all_calls() -> None:
            for src in sources:
                decoders[name](models[name], src, beam, args.new_tokens)

        return all_calls

    for name in decoders:  # warm up: allocator, kernels, HF's generation config
        decoders[name](models[name], sources[0][:1], beam, 2)
    timed = {name: (lambda n=name: rate(run(n), steps=1, items_per_step=batch * calls, device=device))
             for name in decoders}  # fmt: skip
    return alternate(timed, rounds=args.rounds, unit="sent/s")


def profile(args, models: dict[str, nn.Module], device: torch.device) -> None:
    """torch.profiler's table (self CPU time) of each side's beam search at the largest batch."""
    src = random_batch(max(args.batches), args.vocab, device, args.seed)
    for name, decode in (("seqtool", seqtool_decode), ("hf", hf_decode)):
        decode(models[name], src[:2], args.beam, 2)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            decode(models[name], src, args.beam, args.new_tokens)
        print(f"{name}: beam {args.beam}, batch {src.size(0)}, {args.new_tokens} new tokens")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    models = {
        "seqtool": seqtool_model(args.vocab, device, args.seed),
        "hf": marian_model(args.vocab, device, args.seed),
    }
    if args.profile:
        return profile(args, models, device)
    result: dict[str, object] = {
        **machine(device),
        "seqtool_parameters": parameters(models["seqtool"]),
        "hf_parameters": parameters(models["hf"]),
        "new_tokens": args.new_tokens,
    }
    for beam in (args.beam, 1):
        for batch in args.batches:
            name = f"beam{beam}_batch{batch}" if beam > 1 else f"greedy_batch{batch}"
            print(f"{name}: {args.new_tokens} new tokens per sentence")
            medians = setting(args, models, beam, batch, device)
            result[f"{name}_seqtool_sent_per_s"] = round(medians["seqtool"], 2)
            result[f"{name}_hf_sent_per_s"] = round(medians["hf"], 2)
            result[f"{name}_ratio"] = round(medians["seqtool"] / medians["hf"], 3)
    print_result(result)


if __name__ == "__main__":
    main()
