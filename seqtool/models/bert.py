"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers"): an encoder-only
Transformer, its masked-LM corruption, and the heads of pretraining and fine-tuning.

::

    tokens [B, T], segments [B, T]
      -> E = LN(token + position + segment)            the class vector c prepended at position 0: [B, 1+T, D]
      -> N × encoder block (self-attention over the non-padding positions, GELU feed-forward)
      -> h [B, 1+T, D]                                  h_0: the class position, h_1..h_T: the tokens
    heads, by what the task hands the constructor:
      masked LM (always)      W_e · LN(GELU(W h_t + b)) + b_V           -> [B, T, V]   (W_e: token embedding)
      next sentence (mlm)     W_nsp · tanh(W_p h_0 + b_p)               -> [B, 2]      (0 IsNext, 1 NotNext)
      num_classes (classify)  W_c · dropout(tanh(W_p h_0 + b_p))        -> [B, C]
      num_tags (tagging)      W_s · dropout(h_t)                        -> [B, T, S]   (+ intents from h_0)

The class position. BERT feeds the token [CLS] there. A task that built its own vocabulary (classify or
tagging without init_from) has no [CLS], so the model owns its class vector c (``embedding.class_token``)
and prepends it to every sequence, in pretraining and fine-tuning alike: the class position a pretrained
run learned is the one fine-tuning reads, whatever vocabulary the task brings. The vocabulary of
task=mlm keeps a [CLS] entry only so its ids follow BERT's layout. Outputs are aligned with the tokens
handed in (position 0 of the MLM logits is tokens[:, 0]), never with the class position.

The masked-LM corruption (§3.1, Appendix A.1): of each sequence's n maskable tokens, max(1, round(rate · n))
are chosen; a chosen token becomes [MASK] with probability mask_share, a random word with probability
random_share, else stays; the loss is the cross-entropy of the chosen tokens only. Token ids below
``mask_index + 1`` are specials (<pad> <s> </s> <unk> [CLS] [SEP] [MASK], the layout of task=mlm's
vocabulary): never chosen, never drawn as a random word.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.models.transformer import Block, check_length, padding_mask

PAD = 0  # the padding id of every seqtool vocabulary (seqtool.data.vocab.PAD)
IGNORE = -100  # a target that is not scored (F.cross_entropy's ignore_index)
SEGMENTS = 2  # sentence A and sentence B


@dataclass(frozen=True)
class Masking:
    """BERT's corruption of a batch; the paper's rates are the default (15 %, then 80/10/10)."""

    rate: float = 0.15
    mask_share: float = 0.8
    random_share: float = 0.1

    def apply(
        self, tokens: Tensor, *, mask_index: int, vocab_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """tokens [B, T] -> (corrupted tokens [B, T], targets [B, T]: the original id where a token was
        chosen, IGNORE elsewhere). Draws come from ``generator`` (on tokens' device) or torch's own."""
        first_word = mask_index + 1
        maskable = tokens >= first_word  # [B, T]: words, not specials or padding
        n = maskable.sum(1)  # [B]
        chosen_count = torch.where(n > 0, torch.floor(self.rate * n + 0.5).clamp(min=1), 0)  # [B]
        # a uniform choice of chosen_count positions per row: the ranks of random keys among the maskable
        keys = torch.rand(tokens.shape, generator=generator, device=tokens.device).masked_fill(~maskable, 2.0)
        rank = keys.argsort(1).argsort(1)  # [B, T]: 0 for the smallest key of the row
        chosen = rank < chosen_count[:, None]
        u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
        to_mask = chosen & (u < self.mask_share)
        to_random = chosen & (u >= self.mask_share) & (u < self.mask_share + self.random_share)
        corrupted = tokens.masked_fill(to_mask, mask_index)
        if first_word < vocab_size:  # a vocabulary of specials alone has no word to draw
            words = torch.randint(
                first_word, vocab_size, tokens.shape, generator=generator, device=tokens.device
            )
            corrupted = torch.where(to_random, words, corrupted)
        return corrupted, tokens.masked_fill(~chosen, IGNORE)


class BertEmbedding(nn.Module):
    """E = dropout(LN(token + position + segment)), with the class vector in place of a token at 0."""

    def __init__(self, vocab_size: int, d_model: int, max_positions: int, dropout: float) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_positions, d_model)
        self.segments = nn.Embedding(SEGMENTS, d_model)
        self.class_token = nn.Parameter(torch.zeros(d_model))
        self.norm, self.dropout = nn.LayerNorm(d_model), nn.Dropout(dropout)

    def forward(self, tokens: Tensor, segments: Tensor) -> Tensor:
        """tokens, segments [B, T] -> [B, 1 + T, D]; the class position belongs to segment A."""
        words = self.tokens(tokens)  # [B, T, D]
        x = torch.cat([self.class_token.expand(len(tokens), 1, -1), words], dim=1)  # [B, 1+T, D]
        segments = F.pad(segments, (1, 0))  # [B, 1+T]
        x = x + self.positions.weight[: x.size(1)] + self.segments(segments)
        return self.dropout(self.norm(x))


class MaskedLMHead(nn.Module):
    """logits = W_e · LN(GELU(W h + b)) + b_V, the output matrix tied to the token embedding W_e."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        vocab_size, d_model = embedding.weight.shape
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.embedding = embedding  # shared, not copied: its weight is the output matrix
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        """h [..., D] -> logits [..., V]."""
        return F.linear(self.transform(h), self.embedding.weight, self.bias)


class Bert(nn.Module):
    """The BERT encoder with the masked-LM head, and the head its task asks for (see the module's table)."""

    task_shapes = ("many-to-one", "many-to-many synchronous")  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        heads: int,
        num_layers: int,
        ffn_size: int,
        dropout: float,
        max_positions: int,
        norm_first: bool,
        mask_index: int,
        # what the task hands the model (its model_kwargs()); the YAML does not name them
        next_sentence: bool = False,
        num_classes: int = 0,
        num_tags: int = 0,
        num_intents: int = 0,
    ) -> None:
        super().__init__()
        if num_classes and num_tags:
            raise ValueError("model=bert takes one fine-tuning head: num_classes or num_tags, not both")
        if not 0 < mask_index < vocab_size:
            raise ValueError(
                f"model.mask_index={mask_index} is not an id of the {vocab_size}-token vocabulary"
            )
        self.max_positions, self.mask_index, self.vocab_size = max_positions, mask_index, vocab_size
        self.embedding = BertEmbedding(vocab_size, d_model, max_positions, dropout)
        layer = (d_model, heads, ffn_size, dropout, "gelu", norm_first)
        self.blocks = nn.ModuleList(Block(*layer, cross_attention=False) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-LN: normalise the output
        self.mlm_head = MaskedLMHead(self.embedding.tokens)  # also serves aux_lm_loss when fine-tuning
        # h_0 -> the sequence's vector, for the heads that read it (an unused module would stall DDP)
        pooled = next_sentence or num_classes or (num_tags and num_intents)
        self.pooler = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh()) if pooled else None
        self.head_dropout = nn.Dropout(dropout)
        self.nsp_head = nn.Linear(d_model, 2) if next_sentence else None
        self.classifier = nn.Linear(d_model, num_classes) if num_classes else None
        self.tagger = nn.Linear(d_model, num_tags) if num_tags else None
        self.intent_head = nn.Linear(d_model, num_intents) if num_tags and num_intents else None
        self.apply(_bert_init)

    def encode(self, tokens: Tensor, segments: Tensor | None = None) -> Tensor:
        """tokens [B, T] right-padded with PAD, segments [B, T] (None: all A) -> h [B, 1 + T, D]."""
        check_length(tokens.size(1) + 1, self.max_positions, "a sequence with its class position")
        if segments is None:
            segments = torch.zeros_like(tokens)
        attend = F.pad(tokens != PAD, (1, 0), value=True)  # [B, 1+T]: the class position is always there
        x = self.embedding(tokens, segments)
        for block in self.blocks:
            x, _, _ = block(x, padding_mask(attend))
        return self.norm(x)

    def forward(
        self, tokens: Tensor, segments: Tensor | None = None, *, predict: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """By the head the model was built with:
        classify  -> (logits [B, C], None: no attention pooling weights)
        tagging   -> (tag logits [B, T, S], intent logits [B, I] or None)
        masked LM -> (logits [B, T, V], or [N, V] at the N positions where ``predict`` [B, T] is True;
                      next-sentence logits [B, 2] or None)"""
        h = self.encode(tokens, segments)
        h_class, h_tokens = h[:, 0], h[:, 1:]  # [B, D], [B, T, D]
        if self.classifier is not None:
            return self.classifier(self.head_dropout(self.pooler(h_class))), None
        if self.tagger is not None:
            intents = self.intent_head(self.head_dropout(self.pooler(h_class))) if self.intent_head else None
            return self.tagger(self.head_dropout(h_tokens)), intents
        words = h_tokens if predict is None else h_tokens[predict]  # [B, T, D] or [N, D]
        next_sentence = self.nsp_head(self.pooler(h_class)) if self.nsp_head is not None else None
        return self.mlm_head(words), next_sentence

    def aux_lm_loss(self, tokens: Tensor) -> Tensor:
        """The masked-LM loss of a fine-tuning batch, corrupted with the paper's masking: mean nats per
        chosen token (trainer.aux_lm_weight adds it to the task's loss)."""
        corrupted, targets = Masking().apply(tokens, mask_index=self.mask_index, vocab_size=self.vocab_size)
        chosen = targets != IGNORE  # [B, T]
        if not chosen.any():  # a batch without a single word (all specials) has nothing to predict
            return tokens.new_zeros((), dtype=torch.float32)
        logits = self.mlm_head(self.encode(corrupted)[:, 1:][chosen])  # [N, V]
        return F.cross_entropy(logits.float(), targets[chosen])


def _bert_init(module: nn.Module) -> None:
    """BERT's initialiser: weights ~ N(0, 0.02²) (initializer_range), biases 0, LayerNorm γ = 1, β = 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, BertEmbedding):
        nn.init.normal_(module.class_token, std=0.02)
