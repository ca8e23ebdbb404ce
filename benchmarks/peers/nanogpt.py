"""Transformer LM training throughput (tokens/s): seqtool's trainer beside nanoGPT's GPT at equal size.

The reference is nanoGPT's model.py (Karpathy, github.com/karpathy/nanoGPT) written out here from its
published architecture: pre-LN blocks, one fused q/k/v projection `c_attn`, causal SDPA, a 4x GELU MLP,
learned positions, the output tied to the token embedding, N(0, 0.02) init with the residual projections
scaled by 1/√(2 n_layer), and AdamW with weight decay on the 2-D weights only (its configure_optimizers).
Both sides get the sizes of conf/model/transformer_lm.yaml (d_model, heads, ffn = 4 d_model, dropout,
max_positions; 4 layers by default, as the issue's table), the same character vocabulary and the same
[B, T] windows, AdamW at the trainer's lr/betas/weight decay and the trainer's gradient clipping: forward,
cross-entropy, backward, clip, step. seqtool's side is `Trainer.train_step`, loop and all. They run in
alternating rounds; the medians count. ratio = seqtool / nanoGPT. One thread by default (--threads).

    cd /work/main && .venv/bin/python benchmarks/peers/nanogpt.py [--device cuda] [--layers 4]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import autocast, comparison, machine, measure_steps, print_result, timing_parser  # noqa: E402
from seqtool.commands import build_trainer, resolve_device  # noqa: E402
from seqtool.config import compose  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=5, warmup=2, rounds=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128, help="block size: tokens per window")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=None, help="both sides (default: the YAML's)")
    return parser.parse_args()


# ------------------------------------------------------------------------ nanoGPT's model.py, same sizes
class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
        )  # (B, nh, T, hs)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc, self.gelu = nn.Linear(n_embd, 4 * n_embd), nn.GELU()
        self.c_proj, self.dropout = nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(n_embd), CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2, self.mlp = nn.LayerNorm(n_embd), MLP(n_embd, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(
        self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float
    ):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        """idx, targets [B, T] -> the mean cross-entropy."""
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # [B, T, C]
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # [B, T, V]
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)

    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]):
        """AdamW; weight decay on the 2-D tensors (matmuls, embeddings), none on biases and LayerNorms."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


# --------------------------------------------------------------------------------------- the two sides
def overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"device={args.device}",
        "task=charlm",
        "model=transformer_lm",
        f"model.num_layers={args.layers}",
        f"task.batch_size={args.batch_size}",
        f"task.seq_len={args.seq_len}",
        f"task.min_seq_len={args.seq_len}",
        f"trainer.precision={args.precision}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.lr_schedule.kind=constant",
        "trainer.lr_schedule.warmup_steps=0",
        *([f"model.dropout={args.dropout}"] if args.dropout is not None else []),
    ]


def nanogpt_steps(cfg: DictConfig, model: GPT, tokens: Tensor, dtype: torch.dtype | None) -> Iterator[None]:
    """nanoGPT's training loop over consecutive windows of tokens [B, N]; each next() is one step."""
    optim, length, device = cfg.trainer.optimizer, int(cfg.task.seq_len), tokens.device
    optimizer = model.configure_optimizers(optim.weight_decay, optim.lr, tuple(optim.betas))
    while True:
        for start in range(0, tokens.shape[1] - length, length):
            x, y = tokens[:, start : start + length], tokens[:, start + 1 : start + length + 1]  # [B, T]
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = model(x, y)
            loss.backward()
            if cfg.trainer.clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            yield


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose(overrides(args))
    device = resolve_device(str(cfg.device))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), device)
        batches = trainer.task.batches("train", train=True)
        tokens = trainer.task.train_rows.to(device)  # shape: [B, N], the trainer's own streams
        sizes = cfg.model
        if sizes.ffn_size != 4 * sizes.d_model:
            sys.exit(f"nanoGPT's MLP is 4 x d_model; model.ffn_size={sizes.ffn_size} is not equal size")
        torch.manual_seed(0)
        gpt = GPT(
            len(trainer.task.vocab),
            sizes.max_positions,
            args.layers,
            sizes.heads,
            sizes.d_model,
            sizes.dropout,
        )
        gpt = gpt.to(device).train()
        plain = nanogpt_steps(cfg, gpt, tokens, trainer.autocast_dtype)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "nanogpt": lambda: next(plain)},
            warmup=args.warmup,
            steps=args.steps,
            rounds=args.rounds,
            items_per_step=args.batch_size * args.seq_len,
            device=device,
            unit="tok/s",
        )
        print_result(
            {
                **machine(device),
                "model": f"{args.layers} x d {sizes.d_model}, {sizes.heads} heads, ffn {sizes.ffn_size}",
                "vocab": len(trainer.task.vocab),
                "seqtool_parameters": parameters(trainer.model),
                "nanogpt_parameters": parameters(gpt),
                "batch": [args.batch_size, args.seq_len],
                "precision": "bf16" if trainer.autocast_dtype else "fp32",
                "steps": args.steps,
                "rounds": args.rounds,
                **comparison(medians["seqtool"], medians["nanogpt"], unit="tokens", digits=0),
            }
        )


if __name__ == "__main__":
    main()
