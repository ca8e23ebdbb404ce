"""The sentence encoders and poolings against torch's modules and hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.models.encoders import (
    BagEncoder,
    Encoded,
    Pooling,
    RecurrentEncoder,
    TransformerEncoder,
    make_encoder,
    reverse_within_length,
)

TOKENS = torch.tensor([[5, 6, 7, 8, 9], [4, 3, 2, 0, 0], [9, 0, 0, 0, 0]])  # right-padded with 0
LENGTHS = torch.tensor([5, 3, 1])


def copy_into_torch_lstm(encoder: RecurrentEncoder, reference: nn.LSTM) -> None:
    """Layer k, direction d of the encoder -> torch's weight_ih_l{k}[_reverse] and the others."""
    with torch.no_grad():
        for k, directions in enumerate(encoder.layers):
            for d, rnn in enumerate(directions):
                suffix = "_reverse" if d == 1 else ""
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, f"{name}_l{k}{suffix}").copy_(getattr(rnn, f"{name}_l0"))


def torch_reference(encoder: RecurrentEncoder, num_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's packed bidirectional LSTM with the encoder's weights: outputs [B, T, 2H], h_n [2L, B, H]."""
    hidden = encoder.layers[0][0].hidden_size
    reference = nn.LSTM(4, hidden, num_layers, batch_first=True, bidirectional=True)
    copy_into_torch_lstm(encoder, reference)
    packed = pack_padded_sequence(encoder.embedding(TOKENS), LENGTHS, batch_first=True, enforce_sorted=False)
    outputs, (h_n, _) = reference(packed)
    return pad_packed_sequence(outputs, batch_first=True, total_length=TOKENS.size(1))[0], h_n


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_concat_encoder_is_torch_packed_bidirectional_lstm(num_layers):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(vocab_size=10, embedding_size=4, hidden_size=3, num_layers=num_layers,
                               bidirectional=True, merge="concat")  # fmt: skip
    encoded = encoder(TOKENS)
    outputs, h_n = torch_reference(encoder, num_layers)
    torch.testing.assert_close(encoded.outputs, outputs)  # padding: zeros in both
    # the last states: torch's final forward (h_n[-2]) and backward (h_n[-1]) states of the top layer
    torch.testing.assert_close(encoded.summary, torch.cat([h_n[-2], h_n[-1]], dim=-1))
    assert encoded.mask.tolist() == (TOKENS != 0).tolist()


def test_summed_directions_are_the_sum_of_the_concatenated_halves():
    torch.manual_seed(0)
    concat = RecurrentEncoder(vocab_size=10, embedding_size=4, hidden_size=3, bidirectional=True)
    summed = RecurrentEncoder(vocab_size=10, embedding_size=4, hidden_size=3, bidirectional=True, merge="sum")
    summed.load_state_dict(concat.state_dict())
    both, one = concat(TOKENS), summed(TOKENS)
    assert summed.output_size == 3 and concat.output_size == 6
    torch.testing.assert_close(one.outputs, both.outputs[..., :3] + both.outputs[..., 3:])
    torch.testing.assert_close(one.summary, both.summary[:, :3] + both.summary[:, 3:])


def test_unidirectional_last_state_is_the_state_after_each_rows_last_token():
    torch.manual_seed(0)
    encoder = RecurrentEncoder(vocab_size=10, embedding_size=4, hidden_size=3, cell="gru")
    encoded = encoder(TOKENS)
    for row, length in enumerate(LENGTHS.tolist()):
        alone, _ = encoder.layers[0][0](encoder.embedding(TOKENS[row : row + 1, :length]))  # [1, n, H]
        torch.testing.assert_close(encoded.summary[row], alone[0, -1])


@pytest.mark.parametrize(
    "options",
    [
        {"encoder": "rnn", "cell": "lstm", "bidirectional": True},
        {"encoder": "rnn", "cell": "rnn", "bidirectional": True, "merge": "sum", "layer_norm": True},
        {"encoder": "rnn", "cell": "gru", "bidirectional": True, "weight_norm": True},
        {"encoder": "transformer"},
        {"encoder": "bag"},
    ],
)
def test_padding_a_sentence_does_not_change_its_outputs_or_summary(options):
    torch.manual_seed(0)
    encoder = make_encoder(**options, vocab_size=10, embedding_size=8, hidden_size=3, num_layers=2,
                           dropout=0.0, heads=2, ffn_size=16).eval()  # fmt: skip
    padded = encoder(TOKENS)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = encoder(TOKENS[row : row + 1, :length])
        torch.testing.assert_close(padded.outputs[row, :length], alone.outputs[0])
        assert padded.outputs[row, length:].abs().sum() == 0
        if alone.summary is not None:
            torch.testing.assert_close(padded.summary[row], alone.summary[0])


def test_reverse_within_length_leaves_the_padding_and_undoes_itself():
    x = TOKENS.unsqueeze(-1).float()  # [B, T, 1]
    reversed_ = reverse_within_length(x, LENGTHS)
    assert reversed_[..., 0].tolist() == [[9, 8, 7, 6, 5], [2, 3, 4, 0, 0], [9, 0, 0, 0, 0]]
    assert torch.equal(reverse_within_length(reversed_, LENGTHS), x)


H = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [5.0, 9.0]], [[-1.0, 4.0], [7.0, 7.0], [2.0, 2.0]]])  # [2, 3, 2]
MASK = torch.tensor([[True, True, True], [True, False, False]])
SUMMARY = torch.tensor([[0.5, 0.5], [1.5, 1.5]])


def test_mean_and_max_pooling_skip_the_padding():
    encoded = Encoded(H, MASK, SUMMARY)
    mean, weights = Pooling("mean", 2)(encoded)
    assert weights is None
    torch.testing.assert_close(mean, torch.tensor([[3.0, 7.0 / 3.0], [-1.0, 4.0]]))
    maximum, _ = Pooling("max", 2)(encoded)
    torch.testing.assert_close(maximum, torch.tensor([[5.0, 9.0], [-1.0, 4.0]]))
    last, _ = Pooling("last", 2)(encoded)
    assert torch.equal(last, SUMMARY)


def test_attention_pooling_is_softmax_of_w_tanh_Wh_over_real_positions():
    torch.manual_seed(0)
    pooling = Pooling("attention", 2, attention_size=3)
    vector, weights = pooling(Encoded(H, MASK, None))
    W, b, w = (p.detach() for p in (pooling.project.weight, pooling.project.bias, pooling.score.weight[0]))
    for row in range(2):
        real = [t for t in range(3) if MASK[row, t]]
        scores = [float(w @ torch.tanh(W @ H[row, t] + b)) for t in real]
        expected = [math.exp(s) / sum(math.exp(z) for z in scores) for s in scores]
        torch.testing.assert_close(weights[row, real], torch.tensor(expected))
        assert weights[row, len(real) :].abs().sum() == 0  # padding gets no weight
        torch.testing.assert_close(vector[row], sum(a * H[row, t] for a, t in zip(expected, real)))


def test_pooling_the_bag_by_its_summary_is_refused():
    with pytest.raises(ValueError, match="pooling=last needs an encoder with a summary"):
        Pooling("last", 4)(BagEncoder(vocab_size=10, embedding_size=4)(TOKENS))
    with pytest.raises(ValueError, match="pooling must be one of"):
        Pooling("first", 4)


def test_class_token_is_position_zero_of_the_blocks_run_by_hand():
    torch.manual_seed(0)
    encoder = TransformerEncoder(vocab_size=10, d_model=8, heads=2, num_layers=2, ffn_size=16).eval()
    encoded = encoder(TOKENS)
    # by hand: [c ; E(w)·√d + p_1..T], blocks with padded keys masked, the closing LayerNorm
    words = encoder.embedding.tokens(TOKENS) * math.sqrt(8) + encoder.embedding.learned.weight[1:6]
    x = torch.cat([encoder.class_token.expand(3, 1, 8), words], dim=1)  # [B, 1 + T, D]
    keys = torch.cat([torch.ones(3, 1, dtype=torch.bool), TOKENS != 0], dim=1)[:, None, None, :]
    for block in encoder.blocks:
        x, _, _ = block(x, keys)
    x = encoder.norm(x)
    torch.testing.assert_close(encoded.summary, x[:, 0])
    torch.testing.assert_close(encoded.outputs[0], x[0, 1:])
    # the class token reads the whole sentence: changing its last word changes the summary
    changed = TOKENS.clone()
    changed[0, 4] = 1
    assert not torch.allclose(encoder(changed).summary[0], encoded.summary[0])
