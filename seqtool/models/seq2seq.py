"""Sequence to sequence with attention: an RNN encoder and an attentional RNN decoder with input feeding
(Luong et al. 2015; Bahdanau et al. 2015; the plain encoder-decoder of Sutskever et al. 2014 with
``attention: none``).

::

    src [B, S] -> embedding -> (bi)RNN/LSTM/GRU -> h_s [B, S, H]        (bidirectional: H/2 per direction)
                      final state of the top encoder layer -> bridge: tanh(W_b h) -> decoder h_0 (c_0)

    decoder_order: luong (Luong et al. 2015, §3): the context comes from the new state
      step t:   x_t = [E y_{t-1}; h̃_{t-1}]                                (input feeding; h̃_0 = 0)
                h_t = RNN(x_t, h_{t-1})                                   the top layer's output
                a_t = align(h_t, h_s)  [B, S]     c_t = Σ_s a_t(s) h_s
                h̃_t = tanh(W_c [c_t; h_t])        p(y_t) = softmax(W_s h̃_t)

    decoder_order: bahdanau (Bahdanau et al. 2015, §3.1 and appendix A): the context comes from the previous
    state, before the RNN step, and is part of its input
      step i:   e_ij = a(s_{i-1}, h_j)    α_ij = softmax_j(e_ij)    c_i = Σ_j α_ij h_j
                s_i = f(s_{i-1}, y_{i-1}, c_i) = RNN([E y_{i-1}; (h̃_{i-1};) c_i], s_{i-1})
                h̃_i = t_i = tanh(W_c [c_i; s_i; E y_{i-1}])    p(y_i) = softmax(W_s t_i)

Bahdanau's output layer is the deep output of §3.1, p(y_i) = g(y_{i-1}, s_i, c_i), with tanh where the
paper's appendix has a maxout over s_{i-1} (the authors' later dl4mt/Nematus code uses this form too).
Input feeding is Luong's and off in Bahdanau et al.'s model (c_i already enters the RNN); with it on,
the RNN input also holds h̃_{i-1}. Either order takes any score; local-m's p_t is the step t in both
(``step`` in the state). With ``attention: none`` the two orders are the same plain encoder-decoder.

``forward`` runs ``_decode`` (the step) over the target, so training and decoding share one code path.
Scheduled sampling (Bengio et al. 2015): the trainer sets ``teacher_forcing_ratio``; in training each
sequence is fed, at each step, its gold token with that probability, else the model's previous argmax.

The recurrent cells take the char-RNN's options (``layer_norm``, ``weight_norm``, ``variational_dropout``,
``forget_bias``). With none of the first three, encoder and decoder are torch's fused modules (the encoder
over the packed source); with any of them, both run the hand-written cells of ``models/cells.py``: the
encoder layer by layer, each direction carrying its state over the padding, the decoder layer by layer
for one step. ``forget_bias`` initialises either. Variational dropout draws one mask per sentence for each
place dropout acts: the embeddings and between the layers (encoder and decoder) and before the softmax.

The decoder state is a dict, batch first in every tensor (so ``reorder`` is one ``index_select``)::

    memory   [B, S, H]   h_s          keys  [B, S, A]   what the score precomputes of h_s
    src_mask [B, S]      True: real   h, c  [B, L, H]   the decoder RNN's state (c for lstm only)
    feed     [B, H]      h̃_{t-1}      attention [B, S]  a_t of the last step (absent with attention: none)
    step     [B]         t, the target positions decoded so far (local-m's p_t)
    dropout_masks        variational dropout in training only: [B, E], then [B, H] per decoder layer
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.models.attention import Attention
from seqtool.models.base import State, map_tensors
from seqtool.models.cells import (
    CELLS,
    FUSED,
    Cell,
    CellLayer,
    LockedDropout,
    make_cell,
    make_rnn,
    set_fused_forget_bias,
    step_dropout_mask,
)

ORDERS = ("luong", "bahdanau")  # model.decoder_order: where the context is computed in a decoder step


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first lengths[b] positions of each row of x [B, S, ...]; the padding stays where it is."""
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, S]
    last = lengths.unsqueeze(1) - 1  # [B, 1]
    index = torch.where(positions <= last, last - positions, positions)  # [B, S]
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand_as(x))


class RNNEncoder(nn.Module):
    """embedding -> (bi)directional RNN/LSTM/GRU over the right-padded source: torch's fused module over the
    packed batch, or with layer_norm, weight_norm or variational_dropout the cells of models/cells.py."""

    def __init__(
        self, cell: str, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
        bidirectional: bool, dropout: float, *, variational_dropout: bool = False, layer_norm: bool = False,
        weight_norm: bool = False, forget_bias: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.cell, self.directions, self.num_layers = cell, (2 if bidirectional else 1), num_layers
        if hidden_size % self.directions:
            raise ValueError(f"a bidirectional encoder needs an even model.hidden_size, got {hidden_size}")
        self.handwritten = variational_dropout or layer_norm or weight_norm or cell not in FUSED  # residual
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)
        size = hidden_size // self.directions  # both directions together give H
        if self.handwritten:  # layers.k.d: layer k, direction d (0 forward, 1 backward)
            options = {"layer_norm": layer_norm, "weight_norm": weight_norm, "forget_bias": forget_bias}
            self.layers = nn.ModuleList(
                nn.ModuleList(CellLayer(make_cell(cell, n, size, **options)) for _ in range(self.directions))
                for n in [embedding_size] + [hidden_size] * (num_layers - 1)
            )
            return
        self.rnn = FUSED[cell](
            embedding_size,
            size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        if cell == "lstm" and forget_bias is not None:
            set_fused_forget_bias(self.rnn, forget_bias)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """src [B, S], lengths [B] -> h_s [B, S, H], the top layer's final (h,) or (h, c), each [B, H]."""
        x = self.dropout(self.embedding(src))  # [B, S, E]
        if self.handwritten:
            return self._run_cells(x, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        h_s, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))  # [B, S, H]
        finals = final if isinstance(final, tuple) else (final,)
        return h_s, tuple(self._top_layer(state) for state in finals)

    def _top_layer(self, state: Tensor) -> Tensor:
        """[L * dirs, B, H/dirs] -> the last layer's directions side by side [B, H]."""
        top = state.view(self.num_layers, self.directions, *state.shape[1:])[-1]  # [dirs, B, H/dirs]
        return top.transpose(0, 1).flatten(1)

    def _run_cells(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The hand-written layers over x [B, S, E]: h_s [B, S, H] (zeros at padding, as unpacking gives),
        the top layer's final (h,) or (h, c), each [B, H]. The backward direction reads each sentence
        reversed, its padding still last, so both carry their state unchanged over the padding."""
        mask = torch.arange(x.size(1), device=x.device) < lengths.unsqueeze(1)  # [B, S]
        for k, directions in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            outputs, finals = [], []
            for d, layer in enumerate(directions):
                inputs = reverse_padded(x, lengths) if d else x
                h_0 = x.new_zeros(1, x.size(0), layer.cell.hidden_size)  # [1, B, H/dirs]
                y, final = layer(inputs, (h_0, h_0) if self.cell == "lstm" else h_0, mask)
                outputs.append(reverse_padded(y, lengths) if d else y)
                finals.append(final if isinstance(final, tuple) else (final,))
            x = torch.cat(outputs, dim=-1) * mask.unsqueeze(-1)  # [B, S, H]
        return x, tuple(torch.cat(parts, dim=-1)[0] for parts in zip(*finals, strict=True))  # [B, H] each


class Seq2SeqAttention(nn.Module):
    """An RNN encoder-decoder with Luong or Bahdanau attention and input feeding; an incremental decoder."""

    task_shapes = ("many-to-many asynchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_index: int,
        bos_index: int,
        eos_index: int,
        cell: Cell,
        embedding_size: int,
        hidden_size: int,
        encoder_layers: int,
        decoder_layers: int,
        bidirectional: bool,
        dropout: float,
        attention: Literal["none", "dot", "general", "concat", "additive", "local_m", "local_p"],
        local_window: int,
        input_feeding: bool,
        reverse_source: bool,
        tie_embeddings: bool,
        # Off unless set (conf/model/seq2seq_attn.yaml): a run saved before these options still loads.
        variational_dropout: bool = False,
        layer_norm: bool = False,
        weight_norm: bool = False,
        forget_bias: float | None = None,
        decoder_order: Literal["luong", "bahdanau"] = "luong",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"model.cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if decoder_order not in ORDERS:
            raise ValueError(f"model.decoder_order must be one of {', '.join(ORDERS)}, got {decoder_order!r}")
        if tie_embeddings and embedding_size != hidden_size:
            raise ValueError(
                "tie_embeddings needs model.embedding_size == model.hidden_size "
                f"(got {embedding_size} and {hidden_size})"
            )
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.cell, self.hidden_size, self.decoder_layers = cell, hidden_size, decoder_layers
        self.input_feeding, self.reverse_source = input_feeding, reverse_source
        self.teacher_forcing_ratio = 1.0  # set by the trainer each step (scheduled sampling)
        options = {"layer_norm": layer_norm, "weight_norm": weight_norm, "forget_bias": forget_bias}
        self.encoder = RNNEncoder(
            cell, src_vocab_size, embedding_size, hidden_size, encoder_layers, bidirectional, dropout,
            variational_dropout=variational_dropout, **options,
        )  # fmt: skip
        # One bridge per state tensor (h, and c for lstm): tanh(W_b h_final) -> all decoder layers.
        self.bridges = nn.ModuleList(
            nn.Linear(hidden_size, decoder_layers * hidden_size) for _ in range(2 if cell == "lstm" else 1)
        )
        self.embedding = nn.Embedding(tgt_vocab_size, embedding_size)
        self.bahdanau_order = decoder_order == "bahdanau" and attention != "none"
        # x = [E y; h̃ (input feeding); c (Bahdanau's order)]
        decoder_input = embedding_size + hidden_size * (int(input_feeding) + int(self.bahdanau_order))
        self.handwritten, self.variational_dropout = self.encoder.handwritten, variational_dropout
        if self.handwritten:  # one cell per layer, stepped by _recur_cells
            sizes = [decoder_input] + [hidden_size] * (decoder_layers - 1)
            self.decoder = nn.ModuleList(make_cell(cell, size, hidden_size, **options) for size in sizes)
        else:
            self.decoder = make_rnn(
                cell, decoder_input, hidden_size, decoder_layers, dropout=dropout, forget_bias=forget_bias
            )
        self.attention = None
        if attention != "none":
            self.attention = Attention(attention, hidden_size, hidden_size, local_window)
            output_input = 2 * hidden_size + (embedding_size if self.bahdanau_order else 0)  # [c; h (; E y)]
            self.W_c = nn.Linear(output_input, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, tgt_vocab_size)  # W_s
        if tie_embeddings:  # decoder input and output share one [V, H] matrix (Press & Wolf 2017)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # N(0, 1) would give huge logits
            self.output.weight = self.embedding.weight

    @property
    def max_source_positions(self) -> int | None:
        """An RNN takes sources of any length."""
        return None

    @property
    def max_target_positions(self) -> int | None:
        """And decodes targets of any length."""
        return None

    # ------------------------------------------------------------------------------------- training
    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src [B, S], tgt_in [B, T] (BOS + target[:-1]) -> logits [B, T, V] of target positions."""
        state = self.init_state(self.encode(src), src.size(0))
        feed_prediction = self._scheduled_sampling(tgt_in)  # [B, T] or None
        logits: list[Tensor] = []
        with parametrize.cached():  # weight norm: g * v / ||v|| once per batch, not per step
            for t in range(tgt_in.size(1)):
                y_prev = tgt_in[:, t]
                if feed_prediction is not None and t > 0:
                    y_prev = torch.where(feed_prediction[:, t], logits[-1].argmax(-1), y_prev)
                step_logits, state = self._decode(y_prev, state)  # [B, V]
                logits.append(step_logits)
        return torch.stack(logits, dim=1)  # [B, T, V]

    def _scheduled_sampling(self, tgt_in: Tensor) -> Tensor | None:
        """Where to feed the model's own previous prediction [B, T]; None when teacher forcing is full.

        Drawn from torch's global RNG (and only then), so an exactly resumed run draws the same."""
        if not self.training or self.teacher_forcing_ratio >= 1.0:
            return None
        return torch.rand(tgt_in.shape, device=tgt_in.device) >= self.teacher_forcing_ratio

    # ------------------------------------------------------------------- the incremental decoder
    def encode(self, src: Tensor) -> dict[str, Any]:
        """src [B, S] right-padded with pad_index -> h_s [B, S, H], src_mask [B, S], final encoder states."""
        src_mask = src != self.pad_index  # [B, S]
        lengths = src_mask.sum(1).clamp(min=1)  # [B]
        if self.reverse_source:  # Sutskever et al.: read the sentence backwards, padding stays at the end
            h_s, final = self.encoder(reverse_padded(src, lengths), lengths)
            h_s = reverse_padded(h_s, lengths)  # back in source order: a_t(s) then refers to token s
        else:
            h_s, final = self.encoder(src, lengths)
        return {"memory": h_s, "src_mask": src_mask, "final": final}

    def init_state(self, memory: dict[str, Any], batch_size: int) -> State:
        """Bridge the encoder's final states into the decoder's h_0 (c_0); precompute the attention keys."""
        h_s = memory["memory"]
        bridged = [  # each [B, L, H]
            torch.tanh(bridge(final)).view(batch_size, self.decoder_layers, self.hidden_size)
            for bridge, final in zip(self.bridges, memory["final"], strict=True)
        ]
        feed = h_s.new_zeros(batch_size, self.hidden_size)  # h̃_0 = 0
        step = torch.zeros(batch_size, dtype=torch.long, device=h_s.device)  # t = 0
        state = {"memory": h_s, "src_mask": memory["src_mask"], "h": bridged[0], "feed": feed, "step": step}
        if self.cell == "lstm":
            state["c"] = bridged[1]
        if self.attention is not None:
            state["keys"] = self.attention.prepare(h_s)
        p = self.dropout.p
        if self.variational_dropout and self.training and p > 0:  # one mask per sentence and place
            sizes = [self.embedding.embedding_dim] + [self.hidden_size] * self.decoder_layers
            state["dropout_masks"] = tuple(step_dropout_mask(p, batch_size, n, h_s) for n in sizes)
        return state

    def _decode(self, y_prev: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step: y_{t-1} [B] -> logits [B, V], the next state."""
        state = dict(state)  # the caller's state stays as it was (search keeps it; tests compare steps)
        embedded = self._dropout(self.embedding(y_prev), state, 0)  # E y_{t-1}, [B, E]
        step = self._bahdanau_step if self.bahdanau_order else self._luong_step
        h_tilde, state = step(embedded, state)  # [B, H]
        state["feed"], state["step"] = h_tilde, state["step"] + 1
        return self.output(self._dropout(h_tilde, state, self.decoder_layers)), state

    def _luong_step(self, embedded: Tensor, state: State) -> tuple[Tensor, State]:
        """h_t = RNN([E y_{t-1}; h̃_{t-1}], h_{t-1}), then c_t from h_t: h̃_t = tanh(W_c [c_t; h_t]) [B, H]."""
        h_t = self._recur(self._with_feed(embedded, state), state)
        if self.attention is None:  # the plain encoder-decoder: h̃_t = h_t, no attention row
            return h_t, state
        c_t = self._attend(h_t, state)
        return torch.tanh(self.W_c(torch.cat([c_t, h_t], dim=-1))), state

    def _bahdanau_step(self, embedded: Tensor, state: State) -> tuple[Tensor, State]:
        """c_i from s_{i-1} first, then s_i = RNN([E y_{i-1}; c_i], s_{i-1}):
        t_i = tanh(W_c [c_i; s_i; E y_{i-1}]) [B, H]."""
        s_prev = state["h"][:, -1]  # s_{i-1}: the top decoder layer's state before this step, [B, H]
        c_i = self._attend(s_prev, state)
        s_i = self._recur(torch.cat([self._with_feed(embedded, state), c_i], dim=-1), state)
        return torch.tanh(self.W_c(torch.cat([c_i, s_i, embedded], dim=-1))), state

    def _with_feed(self, embedded: Tensor, state: State) -> Tensor:
        """The RNN input [E y_{t-1}; h̃_{t-1}] with input feeding, else E y_{t-1}."""
        return torch.cat([embedded, state["feed"]], dim=-1) if self.input_feeding else embedded

    def _recur(self, x: Tensor, state: State) -> Tensor:
        """One RNN step on x [B, I]: the new h (and c) into the state; the top layer's output [B, H]."""
        recur = self._recur_cells if self.handwritten else self._recur_fused
        top, hidden = recur(x, state)
        state.update(hidden)
        return top

    def _attend(self, query: Tensor, state: State) -> Tensor:
        """c = Σ_s a(s) h_s [B, H] for query [B, H]; a [B, S] rides along in the state (--plot-attention)."""
        positions = state["step"].unsqueeze(1)  # [B, 1]: t, local-m's p_t
        c, a = self.attention(
            query.unsqueeze(1), state["memory"], state["keys"], state["src_mask"], positions
        )
        state["attention"] = a[:, 0]  # [B, S]
        return c[:, 0]

    def _dropout(self, x: Tensor, state: State, site: int) -> Tensor:
        """Dropout at one place of the step (0 the embedding, k between layers k-1 and k, L before the
        softmax): the sentence's fixed mask under variational dropout in training, else nn.Dropout."""
        masks = state.get("dropout_masks")
        return self.dropout(x) if masks is None else x * masks[site]

    def _recur_fused(self, x: Tensor, state: State) -> tuple[Tensor, dict[str, Tensor]]:
        """torch's module for one step: x [B, I] -> h_t [B, H] of the top layer, {h, (c)} each [B, L, H]."""
        hidden = state["h"].transpose(0, 1).contiguous()  # [L, B, H]
        if self.cell == "lstm":
            hidden = (hidden, state["c"].transpose(0, 1).contiguous())
        output, hidden = self.decoder(x.unsqueeze(1), hidden)  # [B, 1, H]
        if self.cell == "lstm":
            return output[:, 0], {"h": hidden[0].transpose(0, 1), "c": hidden[1].transpose(0, 1)}
        return output[:, 0], {"h": hidden.transpose(0, 1)}

    def _recur_cells(self, x: Tensor, state: State) -> tuple[Tensor, dict[str, Tensor]]:
        """The hand-written cells for one step, layer by layer with dropout between them: the same."""
        hs, cs = [], []
        for k, cell in enumerate(self.decoder):
            if k > 0:
                x = self._dropout(x, state, k)
            if self.cell == "lstm":
                x, c = cell(x, (state["h"][:, k], state["c"][:, k]))  # [B, H] each
                cs.append(c)
            else:
                x = cell(x, state["h"][:, k])
            hs.append(x)
        hidden = {"h": torch.stack(hs, dim=1)}  # [B, L, H]
        if cs:
            hidden["c"] = torch.stack(cs, dim=1)
        return x, hidden

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B] (y_{t-1}) -> log-probs of y_t [B, V], the next state."""
        logits, state = self._decode(tokens, state)
        return F.log_softmax(logits, dim=-1), state

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows index [B'] of every state tensor (all are batch-first), memory included."""
        return map_tensors(lambda t: t.index_select(0, index), state)
