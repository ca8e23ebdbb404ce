"""Seq2SeqAttention: forward = step, padding and batch invariance, causality, search, scheduled sampling."""

import pytest
import torch
import torch.nn.functional as F

from seqtool.decode.search import beam_search, greedy
from seqtool.models.base import IncrementalDecoder
from seqtool.models.seq2seq import Seq2SeqAttention, reverse_padded
from tests.encoder_decoder import (
    BOS,
    EOS,
    PAD,
    V_SRC,
    V_TGT,
    assert_later_tokens_change_no_earlier_logit,
    assert_padding_and_companions_change_nothing,
    batch,
    search_from_bos,
    stepped,
)

H = 8
ATTENTIONS = ["none", "dot", "general", "concat", "additive", "local_p"]
VARIANTS = [
    {},
    {"cell": "gru", "bidirectional": False},
    {"input_feeding": False, "encoder_layers": 1, "decoder_layers": 1},
    {"reverse_source": True, "tie_embeddings": True},
]


def make_model(**overrides) -> Seq2SeqAttention:
    options = {
        "src_vocab_size": V_SRC,
        "tgt_vocab_size": V_TGT,
        "pad_index": PAD,
        "bos_index": BOS,
        "eos_index": EOS,
        "cell": "lstm",
        "embedding_size": H,
        "hidden_size": H,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "bidirectional": True,
        "dropout": 0.3,
        "attention": "general",
        "local_window": 2,
        "input_feeding": True,
        "reverse_source": False,
        "tie_embeddings": False,
    }
    torch.manual_seed(0)
    return Seq2SeqAttention(**(options | overrides))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_forward_equals_step_by_step(attention, variant):
    model = make_model(attention=attention, **variant).eval()
    assert isinstance(model, IncrementalDecoder)
    src, tgt_in = batch()
    expected = F.log_softmax(model(src, tgt_in), dim=-1)  # [B, T, V]
    got, states = stepped(model, src, tgt_in)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if attention == "none":
        assert "attention" not in states[-1]
        return
    mask = src != PAD
    for state in states:  # the attention row of every step: a distribution over the real source tokens
        assert state["attention"].shape == src.shape
        torch.testing.assert_close(state["attention"].sum(-1), torch.ones(3))
        assert (state["attention"].masked_select(~mask) == 0).all()


@pytest.mark.parametrize("attention", ["dot", "concat", "local_p"])
def test_the_pad_embedding_and_batch_companions_change_nothing(attention):
    model = make_model(attention=attention, reverse_source=True).eval()
    src, tgt_in = batch()
    assert_padding_and_companions_change_nothing(model, src, tgt_in, model.encoder.embedding.weight[PAD])


def test_a_later_target_token_changes_no_earlier_logit():
    model = make_model(attention="concat").eval()
    assert_later_tokens_change_no_earlier_logit(model, *batch())


@pytest.mark.parametrize("attention", ["none", "general", "local_p"])
def test_beam_of_one_is_greedy(attention):
    model = make_model(attention=attention).eval()
    src, _ = batch(seed=3)

    def decode(search, **options):
        return search_from_bos(model, src, search, **options)

    greedy_hyps, beam_hyps = decode(greedy), decode(beam_search, beam_size=1)
    assert beam_hyps.tokens == greedy_hyps.tokens
    if attention != "none":  # the attention rows ride along: one per generated token, EOS included
        for tokens, rows in zip(greedy_hyps.tokens, greedy_hyps.attention, strict=True):
            assert rows[0].shape == (min(len(tokens[0]) + 1, 8), src.size(1))
    assert len(decode(beam_search, beam_size=3, nbest=3).tokens[0]) == 3


def test_reorder_picks_rows_also_fewer_than_the_batch():
    model = make_model().eval()
    src, tgt_in = batch()
    _, states = stepped(model, src, tgt_in[:, :2])
    index = torch.tensor([2, 0])
    reordered = model.reorder(states[-1], index)
    for key, value in states[-1].items():
        torch.testing.assert_close(reordered[key], value[index])
    tokens = torch.tensor([4, 5, 6])
    torch.testing.assert_close(
        model.step(tokens[index], reordered)[0], model.step(tokens, states[-1])[0][index]
    )


def test_reverse_padded_reverses_only_the_real_tokens():
    x = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [11, 0, 0, 0, 0]])
    expected = torch.tensor([[5, 4, 3, 0, 0], [10, 9, 8, 7, 6], [11, 0, 0, 0, 0]])
    torch.testing.assert_close(reverse_padded(x, torch.tensor([3, 5, 1])), expected)
    features = x.unsqueeze(-1).expand(3, 5, 2).float()  # [B, S, H]: the same along the last dimension
    expected_features = expected.unsqueeze(-1).expand(3, 5, 2).float()
    torch.testing.assert_close(reverse_padded(features, torch.tensor([3, 5, 1])), expected_features)


def test_reverse_source_encodes_the_reversed_sentence_in_source_order():
    reversing, plain = make_model(reverse_source=True).eval(), make_model(reverse_source=False).eval()
    src, _ = batch()
    lengths = (src != PAD).sum(1)
    ours, theirs = reversing.encode(src), plain.encode(reverse_padded(src, lengths))
    torch.testing.assert_close(ours["memory"], reverse_padded(theirs["memory"], lengths))
    for got, expected in zip(ours["final"], theirs["final"], strict=True):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(plain.encode(src)["memory"], ours["memory"])


def test_teacher_forcing_ratio_zero_feeds_the_models_own_predictions():
    model = make_model(dropout=0.0).train()
    src, tgt_in = batch()
    forced = model(src, tgt_in)
    model.teacher_forcing_ratio = 0.0
    free = model(src, tgt_in)
    assert not torch.allclose(free[:, 1:], forced[:, 1:])
    torch.testing.assert_close(free[:, 0], forced[:, 0])
    state, token, manual = model.init_state(model.encode(src), 3), tgt_in[:, 0], []
    for _ in range(tgt_in.size(1)):  # free running: each prediction is the next input
        log_probs, state = model.step(token, state)
        manual.append(log_probs)
        token = log_probs.argmax(-1)
    torch.testing.assert_close(F.log_softmax(free, -1), torch.stack(manual, dim=1), atol=1e-5, rtol=0)
    model.eval()  # evaluation is always teacher-forced
    torch.testing.assert_close(model(src, tgt_in), forced)


def test_scheduled_sampling_draws_from_the_global_rng():
    model = make_model(dropout=0.0).train()
    model.teacher_forcing_ratio = 0.5
    src, tgt_in = batch()
    torch.manual_seed(7)
    first = model(src, tgt_in)
    torch.manual_seed(7)
    torch.testing.assert_close(model(src, tgt_in), first)
    model.teacher_forcing_ratio = 1.0
    state = torch.get_rng_state()
    model(src, tgt_in)
    assert torch.equal(torch.get_rng_state(), state)  # full teacher forcing draws nothing


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_every_attention_trains(attention):
    model = make_model(attention=attention, dropout=0.0)
    src, tgt_in = batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD)], dim=1)
    tgt_out[tgt_out == PAD] = EOS  # a target for every position is enough here
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_options_are_checked():
    assert make_model().max_source_positions is None and make_model().max_target_positions is None
    with pytest.raises(ValueError, match=r"tie_embeddings needs .*\(got 8 and 10\)"):
        make_model(tie_embeddings=True, hidden_size=10)
    with pytest.raises(ValueError, match="even model.hidden_size"):
        make_model(hidden_size=9, embedding_size=9)
    with pytest.raises(ValueError, match="model.cell must be one of lstm, gru"):
        make_model(cell="rnn")
    tied = make_model(tie_embeddings=True)
    assert tied.output.weight is tied.embedding.weight


def test_decodes_and_trains_under_bf16_autocast():  # the trainer's precision on CUDA; CPU autocast here
    model = make_model().eval()
    src, tgt_in = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.init_state(model.encode(src), 3)
        found = beam_search(model, state, torch.full((3,), BOS), beam_size=2, max_len=5, eos=EOS)
        assert found.attention is not None and len(found.tokens) == 3
        model.train()
        model(src, tgt_in).float().sum().backward()
