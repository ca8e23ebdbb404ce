"""Transformer and TransformerLM: KV-cache steps = full recomputation, masks, search, the char-LM task."""

import pytest
import torch
import torch.nn.functional as F

from seqtool import commands
from seqtool.config import compose
from seqtool.decode.search import beam_search, greedy
from seqtool.models.base import IncrementalDecoder, map_tensors
from seqtool.models.transformer import Transformer, sinusoids
from seqtool.models.transformer_lm import TransformerLM
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
from tests.helpers import tiny_corpus, tiny_run

D = 16
VARIANTS = [
    {},
    {"norm_first": False, "positions": "learned", "activation": "gelu"},
    {"tie_embeddings": False, "decoder_layers": 1},
]


def make_model(**overrides) -> Transformer:
    options = {
        "src_vocab_size": V_SRC,
        "tgt_vocab_size": V_TGT,
        "pad_index": PAD,
        "bos_index": BOS,
        "eos_index": EOS,
        "d_model": D,
        "heads": 2,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "ffn_size": 32,
        "dropout": 0.2,
        "positions": "sinusoidal",
        "max_positions": 12,
        "norm_first": True,
        "tie_embeddings": True,
        "share_all_embeddings": False,
        "activation": "relu",
    }
    torch.manual_seed(0)
    return Transformer(**(options | overrides))


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_cached_steps_equal_full_recomputation(variant):
    model = make_model(**variant).eval()
    assert isinstance(model, IncrementalDecoder)
    src, tgt_in = batch()
    expected = F.log_softmax(model(src, tgt_in), dim=-1)  # [B, T, V]
    got, states = stepped(model, src, tgt_in)
    state = states[-1]  # the KV cache after the last step
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert [k.shape for k, _ in state["self"]] == [(3, 2, tgt_in.size(1), D // 2)] * len(model.decoder)


def test_step_attention_is_the_last_layers_cross_attention():
    model = make_model().eval()
    src, tgt_in = batch()
    state = stepped(model, src, tgt_in)[1][-1]
    attention, mask = state["attention"], src != PAD
    torch.testing.assert_close(attention.sum(-1), torch.ones(3))
    assert attention.shape == src.shape and (attention.masked_select(~mask) == 0).all()
    memory, last = model.encode(src), model.decoder[-1]  # recompute it: the last block's own input
    x = model.tgt_embedding(tgt_in)
    for block in model.decoder[:-1]:
        cross = block.cross_attention.keys_values(memory["memory"])
        x, _, _ = block(x, causal=True, cross=cross, cross_mask=mask[:, None, None])
    h = last.norms[0](x)
    x = x + last.self_attention(h, h, causal=True)
    k, v = last.cross_attention.keys_values(memory["memory"])
    _, weights = last.cross_attention.attend(last.norms[1](x), k, v, mask[:, None, None], need_weights=True)
    torch.testing.assert_close(attention, weights[:, -1])


def test_the_pad_embedding_and_batch_companions_change_nothing():
    model = make_model().eval()
    src, tgt_in = batch()
    assert_padding_and_companions_change_nothing(model, src, tgt_in, model.src_embedding.tokens.weight[PAD])


def test_a_later_target_token_changes_no_earlier_logit():
    model = make_model(norm_first=False).eval()
    assert_later_tokens_change_no_earlier_logit(model, *batch())


def test_beam_of_one_is_greedy():
    model = make_model().eval()
    src, _ = batch(seed=3)

    def decode(search, **options):
        return search_from_bos(model, src, search, **options)

    greedy_hyps = decode(greedy)
    assert decode(beam_search, beam_size=1).tokens == greedy_hyps.tokens
    assert greedy_hyps.attention is not None and greedy_hyps.attention[0][0].shape[1] == src.size(1)
    assert len(decode(beam_search, beam_size=3, nbest=2).tokens[1]) == 2


def test_reorder_picks_rows_also_fewer_than_the_batch():
    model = make_model().eval()
    src, tgt_in = batch()
    state = stepped(model, src, tgt_in[:, :3])[1][-1]
    index = torch.tensor([2, 0])
    reordered = model.reorder(state, index)
    torch.testing.assert_close(reordered["self"][1][0], state["self"][1][0][index])
    torch.testing.assert_close(reordered["cross"][0][1], state["cross"][0][1][index])
    tokens = torch.tensor([4, 5, 6])
    torch.testing.assert_close(model.step(tokens[index], reordered)[0], model.step(tokens, state)[0][index])


@pytest.mark.parametrize(
    "index",
    [[0, 0, 0, 1, 1, 1, 2, 2, 2], [2, 2, 0, 0], [0, 1, 2], [1, 1, 0, 2, 2, 2], [2, 0, 0]],
    ids=["beams", "beams-of-fewer", "same", "unequal-runs", "uneven"],
)
def test_reorder_of_grouped_rows_steps_like_one_copy_per_row(index):
    """Rows in runs of equal length (beams: K rows per sentence) keep the memory once per sentence, other
    orders one copy per row; either way the next step is exactly that of a state copied row by row."""
    model = make_model().eval()
    src, tgt_in = batch()
    state, index = stepped(model, src, tgt_in[:, :3])[1][-1], torch.tensor(index)
    plain = map_tensors(lambda t: t.index_select(0, index), state)
    reordered = model.reorder(state, index)
    tokens = torch.arange(len(index)) % 5 + 3
    with torch.inference_mode():
        torch.testing.assert_close(model.step(tokens, reordered)[0], model.step(tokens, plain)[0])
    runs = torch.unique_consecutive(index, return_counts=True)[1]
    sentences = len(runs) if bool((runs == runs[0]).all()) else len(index)
    assert reordered["cross"][0][0].size(0) == reordered["src_mask"].size(0) == sentences


def test_beams_share_the_encoder_memory():
    """After beam search expands B sentences to B*K rows, what comes from the encoder (cross K/V, src_mask)
    still has B rows and is the very tensor init_state made; only the self-attention caches grow with K."""
    model, (src, _), beam = make_model().eval(), batch(), 4
    state = model.init_state(model.encode(src), src.size(0))
    seen, step = [], model.step

    def recording_step(tokens, state):
        seen.append((len(tokens), state["self"][0][0].size(0), state["cross"][1][0], state["src_mask"]))
        return step(tokens, state)

    model.step = recording_step
    beam_search(model, state, torch.full((3,), BOS), beam_size=beam, nbest=2, max_len=8, eos=EOS)
    rows, self_rows, cross_k, src_mask = seen[0]
    assert rows == self_rows == 3 * beam
    assert cross_k.size(0) == src_mask.size(0) == 3
    assert cross_k.data_ptr() == state["cross"][1][0].data_ptr()  # not copied, not even once
    for rows, self_rows, cross_k, src_mask in seen:
        assert rows == self_rows == beam * cross_k.size(0) == beam * src_mask.size(0)


def test_too_long_sequences_are_refused():
    model = make_model().eval()
    assert model.max_source_positions == model.max_target_positions == 12
    with pytest.raises(ValueError, match="a source has 13 positions, more than model.max_positions=12"):
        model.encode(torch.full((1, 13), 5))
    src, _ = batch()
    state = model.init_state(model.encode(src), 3)
    for _ in range(12):
        _, state = model.step(torch.full((3,), 4), state)
    with pytest.raises(ValueError, match="model.max_positions=12"):
        model.step(torch.full((3,), 4), state)


def test_embedding_sharing_options():
    tied = make_model(tie_embeddings=True)
    assert tied.output.weight is tied.tgt_embedding.tokens.weight
    assert make_model(tie_embeddings=False).output.weight is not tied.tgt_embedding.tokens.weight
    shared = make_model(src_vocab_size=V_TGT, share_all_embeddings=True)
    assert shared.src_embedding.tokens.weight is shared.tgt_embedding.tokens.weight is shared.output.weight
    with pytest.raises(ValueError, match="share_all_embeddings needs one vocabulary"):
        make_model(share_all_embeddings=True)


def test_sinusoids_follow_the_paper():
    table = sinusoids(50, 8)
    position, i = 7, 2
    angle = torch.tensor(position / 10000 ** (2 * i / 8))
    assert table[position, 2 * i] == pytest.approx(torch.sin(angle))
    assert table[position, 2 * i + 1] == pytest.approx(torch.cos(angle))


def test_trains_on_a_repeated_batch():
    model = make_model(dropout=0.0)
    src, tgt_in = batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((3, 1), EOS)], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------------------- TransformerLM
def make_lm(**overrides) -> TransformerLM:
    options = {
        "vocab_size": 9,
        "d_model": D,
        "heads": 4,
        "num_layers": 2,
        "ffn_size": 32,
        "dropout": 0.2,
        "positions": "learned",
        "max_positions": 10,
        "norm_first": True,
        "tie_embeddings": True,
        "activation": "gelu",
    }
    torch.manual_seed(0)
    return TransformerLM(**(options | overrides))


@pytest.mark.parametrize("variant", [{}, {"norm_first": False, "positions": "sinusoidal"}], ids=str)
def test_lm_steps_equal_forward_and_the_carry_is_ignored(variant):
    model = make_lm(**variant).eval()
    tokens = torch.randint(9, (3, 10))
    logits, carry = model(tokens)
    assert carry is None
    torch.testing.assert_close(model(tokens, {"anything": torch.ones(1)})[0], logits)
    state, steps = model.init_state(model.encode(None), 3), []
    for t in range(10):
        log_probs, state = model.step(tokens[:, t], state)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, dim=1), F.log_softmax(logits, -1), atol=1e-5, rtol=0)
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 9
    torch.testing.assert_close(model(changed)[0][:, :6], logits[:, :6])  # causal
    reordered = model.reorder(state, torch.tensor([1]))
    assert reordered["self"][0][0].shape == (1, 4, 10, D // 4)


def test_lm_refuses_positions_beyond_its_table():
    model = make_lm().eval()
    with pytest.raises(ValueError, match=r"a segment \(task.seq_len\) has 11 positions"):
        model(torch.zeros(1, 11, dtype=torch.long))
    state = model.init_state(None, 2)
    for _ in range(10):
        _, state = model.step(torch.zeros(2, dtype=torch.long), state)
    with pytest.raises(ValueError, match="model.max_positions=10"):
        model.step(torch.zeros(2, dtype=torch.long), state)


def test_lm_trains_with_the_char_lm_task(tmp_path):
    overrides = tiny_run(tiny_corpus(tmp_path), tmp_path / "run", steps=4)
    overrides = [item for item in overrides if not item.startswith("model.")] + [  # char-RNN sizes
        "model=transformer_lm",
        "model.d_model=16",
        "model.heads=2",
        "model.num_layers=1",
        "model.ffn_size=32",
    ]
    cfg = compose(overrides)
    assert cfg.task.seq_len <= cfg.model.max_positions
    run_dir, metrics = commands.train(cfg)
    assert metrics["loss"] > 0 and (run_dir / "samples").is_dir()
    default = compose(["model=transformer_lm"])  # `seqtool train model=transformer_lm` fits its segments
    assert default.task.seq_len <= default.model.max_positions


def test_decodes_and_trains_under_bf16_autocast():  # the trainer's precision on CUDA; CPU autocast here
    model = make_model().eval()
    src, tgt_in = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.init_state(model.encode(src), 3)
        found = beam_search(model, state, torch.full((3,), BOS), beam_size=2, max_len=5, eos=EOS)
        assert found.attention is not None and len(found.tokens) == 3
        model.train()
        model(src, tgt_in).float().sum().backward()
