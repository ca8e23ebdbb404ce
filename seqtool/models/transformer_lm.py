"""A decoder-only Transformer language model (the Transformer's decoder without cross-attention, as in GPT).

::

    tokens [B, T] -> embed · √d + PE -> N × [causal self-attention, feed-forward] -> h [B, T, D]
    language model      h -> output (tied to the embedding) -> [B, T, V]
    classify (GPT)      h at the last real token -> classifier -> [B, C]          (Radford et al. 2018, §3.3)
    tagging             h -> tagger -> [B, T, S];  h at the last real token -> intent classifier -> [B, I]

The task heads are for fine-tuning a pretrained body (``init_from=RUN``, seqtool/finetune.py): the task
hands ``num_classes`` or ``num_tags``/``num_intents`` and the model grows that head beside its LM output,
which stays, so ``aux_lm_loss`` (the causal LM loss on the task's own text, Radford et al.'s auxiliary
objective) has its softmax. Attention is causal, so position t sees tokens 0..t only: the last real token
is the one that has read the whole sentence, and a tag at t is chosen from the words up to t (GPT has no
right context; BERT has). Batches are right-padded with PAD (seqtool.data.batching.pad), and causal
attention never lets a real token see the padding after it, so no padding mask is needed.

It trains on the char-LM task's segments like the char-RNN, but carries nothing from one segment to the
next: truncated-BPTT state means nothing to it (its context is the segment), so ``forward`` accepts the
carried state and ignores it, returning None. Generation uses a key/value cache per layer; the state is
``{"self": [(k, v) per layer, each (B, heads, t, head_dim)]}``, batch first.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.data.vocab import PAD
from seqtool.models.base import State, map_tensors
from seqtool.models.transformer import Block, Embedding, check_length


class TransformerLM(nn.Module):
    """Causal Transformer language model; an incremental decoder with a key/value cache."""

    # read by seqtool.shapes: LM and tagging are many-to-many synchronous, classify many-to-one
    task_shapes = ("many-to-many synchronous", "many-to-one")

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        heads: int,
        num_layers: int,
        ffn_size: int,
        dropout: float,
        positions: Literal["sinusoidal", "learned"],
        max_positions: int,
        norm_first: bool,
        tie_embeddings: bool,
        activation: Literal["relu", "gelu"],
        num_classes: int = 0,
        num_tags: int = 0,
        num_intents: int = 0,
    ) -> None:
        """num_classes > 0: a sentence classifier on the last real token; num_tags > 0: a per-token tagger
        (and num_intents > 0 an intent classifier on the last real token); all 0: a language model."""
        if num_classes and (num_tags or num_intents):
            raise ValueError("a TransformerLM classifies sentences (num_classes) or tags tokens, not both")
        if num_intents and not num_tags:
            raise ValueError("num_intents is the tagging task's second head; it needs num_tags")
        super().__init__()
        self.max_positions = max_positions
        self.embedding = Embedding(vocab_size, d_model, positions, max_positions, dropout)
        layer = (d_model, heads, ffn_size, dropout, activation, norm_first)
        self.blocks = nn.ModuleList(Block(*layer, cross_attention=False) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-LN: normalise the output
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embedding.tokens.weight
        # the fine-tuning heads (None when absent, so a language model's state_dict is unchanged)
        self.classifier = nn.Linear(d_model, num_classes) if num_classes else None
        self.tagger = nn.Linear(d_model, num_tags) if num_tags else None
        self.intent_classifier = nn.Linear(d_model, num_intents) if num_intents else None

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Tensor | None]:
        """Language model: tokens [B, T] -> logits [B, T, V], None (``state``, the task's TBPTT carry, is
        ignored). Classifier: -> logits [B, C], None (no pooling weights: the last token reads the
        sentence). Tagger: -> tag logits [B, T, S], intent logits [B, I] or None."""
        h = self.hidden(tokens)  # [B, T, D]
        if self.classifier is not None:
            return self.classifier(last_real_token(h, tokens)), None
        if self.tagger is not None:
            intents = None
            if self.intent_classifier is not None:
                intents = self.intent_classifier(last_real_token(h, tokens))
            return self.tagger(h), intents
        return self.output(h), None

    def hidden(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] -> the last layer's states h [B, T, D] (normalised when pre-LN)."""
        check_length(tokens.size(1), self.max_positions, "a segment (task.seq_len)")
        x = self.embedding(tokens)  # [B, T, D]
        for block in self.blocks:
            x, _, _ = block(x, causal=True)
        return self.norm(x)

    def aux_lm_loss(self, tokens: Tensor) -> Tensor:
        """The causal LM loss on a task's own sentences tokens [B, T] (right-padded): mean nats per
        predicted token, each token t+1 from tokens 0..t; padding is never a target. A batch of one-word
        sentences predicts nothing: 0, not the NaN of a mean over no tokens."""
        targets = tokens[:, 1:]  # [B, T-1]
        predicted = int((targets != PAD).sum())
        if predicted == 0:
            return self.output.weight.new_zeros(())
        logits = self.output(self.hidden(tokens[:, :-1]))  # [B, T-1, V]
        nats = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="sum")
        return nats / predicted

    # ------------------------------------------------------------------- the incremental decoder
    def encode(self, src: Any) -> None:
        """A pure language model has no memory."""
        return None

    def init_state(self, memory: Any, batch_size: int) -> State:
        """Empty caches: k, v each (B, heads, 0, head_dim) per layer, on the model's device and dtype."""
        attention = self.blocks[0].self_attention
        empty = self.output.weight.new_zeros(batch_size, attention.heads, 0, attention.head_dim)
        return {"self": [(empty, empty) for _ in self.blocks]}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B] at the next position -> log-probs [B, V]; each layer's cache grows by one position."""
        position = state["self"][0][0].size(2)
        check_length(position + 1, self.max_positions, "generation: the text (prime + output)")
        x = self.embedding(tokens.unsqueeze(1), start=position)  # [B, 1, D]
        caches = []
        for block, cache in zip(self.blocks, state["self"], strict=True):
            x, kv, _ = block(x, cache=cache)
            caches.append(kv)
        return F.log_softmax(self.output(self.norm(x[:, 0])), dim=-1), {"self": caches}

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows index [B'] of every cache."""
        return map_tensors(lambda t: t.index_select(0, index), state)


def last_real_token(h: Tensor, tokens: Tensor) -> Tensor:
    """h [B, T, D] at each row's last non-PAD position -> [B, D] (rows are right-padded; an all-PAD row
    reads position 0)."""
    last = ((tokens != PAD).sum(dim=1) - 1).clamp(min=0)  # [B]
    return h[torch.arange(h.size(0), device=h.device), last]
