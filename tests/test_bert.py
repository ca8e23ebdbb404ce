"""model=bert: the embeddings, one encoder block against torch's own with copied weights, the tied MLM
head, the heads each task asks for, and the auxiliary masked-LM loss."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqtool.models.bert import IGNORE, Bert, Masking

pytestmark = pytest.mark.usefixtures("one_thread")

V, D, HEADS, FFN, MASK_INDEX = 40, 16, 2, 32, 6


def bert(**heads) -> Bert:
    torch.manual_seed(0)
    model = Bert(vocab_size=V, d_model=D, heads=HEADS, num_layers=1, ffn_size=FFN, dropout=0.0,
                 max_positions=12, norm_first=False, mask_index=MASK_INDEX, **heads)  # fmt: skip
    return model.eval()


def words(rows: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(MASK_INDEX + 1, V, (rows, length), generator=torch.Generator().manual_seed(seed))


def test_the_embedding_is_layer_norm_of_token_position_and_segment_with_the_class_vector_first():
    model = bert()
    tokens, segments = words(2, 5), torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1]])
    e = model.embedding
    got = e(tokens, segments)  # [B, 1+T, D]
    for b in range(2):
        for t in range(6):
            token = e.class_token if t == 0 else e.tokens.weight[tokens[b, t - 1]]
            segment = 0 if t == 0 else int(segments[b, t - 1])
            x = token + e.positions.weight[t] + e.segments.weight[segment]
            want = (x - x.mean()) / torch.sqrt(
                x.var(unbiased=False) + e.norm.eps
            ) * e.norm.weight + e.norm.bias
            torch.testing.assert_close(got[b, t], want)


def test_one_block_equals_torch_transformer_encoder_layer_with_copied_weights():
    """Post-LN, GELU, padding masked: BERT's block is nn.TransformerEncoderLayer's computation."""
    model = bert()
    block = model.blocks[0]
    reference = nn.TransformerEncoderLayer(D, HEADS, FFN, dropout=0.0, activation="gelu", batch_first=True)
    attention = block.self_attention
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(torch.cat([attention.q_proj.weight, attention.k_proj.weight,
                                                            attention.v_proj.weight]))  # fmt: skip
        reference.self_attn.in_proj_bias.copy_(torch.cat([attention.q_proj.bias, attention.k_proj.bias,
                                                          attention.v_proj.bias]))  # fmt: skip
        reference.self_attn.out_proj.load_state_dict(attention.out_proj.state_dict())
        reference.linear1.load_state_dict(block.feed_forward[0].state_dict())
        reference.linear2.load_state_dict(block.feed_forward[3].state_dict())
        reference.norm1.load_state_dict(block.norms[0].state_dict())
        reference.norm2.load_state_dict(block.norms[1].state_dict())
    reference.eval()
    tokens = words(3, 7)
    tokens[1, 4:] = 0  # padding
    with torch.no_grad():
        x = model.embedding(tokens, torch.zeros_like(tokens))
        padding = F.pad(tokens == 0, (1, 0), value=False)  # torch's mask: True = ignore
        want = reference(x, src_key_padding_mask=padding)
        got = model.encode(tokens)
    real = ~padding
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_the_real_positions():
    model = bert()
    tokens = words(1, 5)
    padded = F.pad(tokens, (0, 4))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(padded)[:, :6], model.encode(tokens), atol=1e-5, rtol=1e-5)


def test_the_mlm_head_is_tied_to_the_token_embedding():
    model = bert()
    head = model.mlm_head
    assert head.embedding.weight is model.embedding.tokens.weight
    h = torch.randn(3, D)
    dense, _, norm = head.transform
    hidden = norm(F.gelu(h @ dense.weight.T + dense.bias))
    torch.testing.assert_close(head(h), hidden @ model.embedding.tokens.weight.T + head.bias)


def test_the_heads_return_what_each_task_expects():
    tokens = words(3, 7)
    logits, weights = bert(num_classes=5)(tokens)
    assert logits.shape == (3, 5) and weights is None
    tags, intents = bert(num_tags=9, num_intents=4)(tokens)
    assert tags.shape == (3, 7, 9) and intents.shape == (3, 4)
    assert bert(num_tags=9)(tokens)[1] is None  # the intent head off: num_intents 0
    mlm, next_sentence = bert(next_sentence=True)(tokens, torch.zeros_like(tokens))
    assert mlm.shape == (3, 7, V) and next_sentence.shape == (3, 2)
    assert bert()(tokens)[1] is None


def test_predicting_chosen_positions_gives_the_full_logits_there():
    model = bert()
    tokens = words(2, 6)
    chosen = torch.zeros_like(tokens, dtype=torch.bool)
    chosen[0, 1] = chosen[1, 4] = chosen[1, 5] = True
    full, _ = model(tokens)
    few, _ = model(tokens, predict=chosen)
    assert few.shape == (3, V)
    torch.testing.assert_close(few, full[chosen])


def test_the_class_position_reads_every_token():
    """h_0 changes when any token changes: the classifier sees the whole sentence."""
    model = bert(num_classes=2)
    tokens = words(1, 6)
    before = model(tokens)[0]
    for t in range(6):
        changed = tokens.clone()
        changed[0, t] = MASK_INDEX + 1 if tokens[0, t] != MASK_INDEX + 1 else MASK_INDEX + 2
        assert not torch.allclose(model(changed)[0], before)


def test_aux_lm_loss_is_the_mean_cross_entropy_of_the_chosen_tokens_only():
    model = bert(num_classes=2)
    tokens = words(4, 9)
    tokens[2, 5:] = 0
    torch.manual_seed(7)
    loss = model.aux_lm_loss(tokens)
    torch.manual_seed(7)  # the same draws: the masking the loss used
    corrupted, targets = Masking().apply(tokens, mask_index=MASK_INDEX, vocab_size=V)
    logits = model.mlm_head(model.encode(corrupted)[:, 1:])  # [B, T, V] at every position
    chosen = targets != IGNORE
    nats = [-F.log_softmax(logits[b, t], -1)[targets[b, t]] for b, t in chosen.nonzero().tolist()]
    torch.testing.assert_close(loss, torch.stack(nats).mean())
    loss.backward()
    assert model.embedding.tokens.weight.grad.abs().sum() > 0


def test_a_sequence_longer_than_the_positions_is_refused():
    with pytest.raises(ValueError, match="max_positions=12"):
        bert()(words(1, 12))  # 12 tokens + the class position


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="num_classes or num_tags"):
        bert(num_classes=2, num_tags=3)
    with pytest.raises(ValueError, match="mask_index"):
        Bert(vocab_size=5, d_model=D, heads=HEADS, num_layers=1, ffn_size=FFN, dropout=0.0,
             max_positions=8, norm_first=False, mask_index=MASK_INDEX)  # fmt: skip


@pytest.mark.slow
def test_a_sentence_longer_than_the_position_table_is_one_line_and_exit_2(tmp_path):
    """task=tagging cannot cut a sentence (its tags would lose their words): one too long for BERT's
    positions ends the run in one line, exit 2, not a traceback."""
    from tests.helpers import assert_user_error, seqtool

    result = seqtool(
        "train",
        "task=tagging",
        "model=bert",
        "model.max_positions=8",
        "debug=smoke",
        f"run_dir={tmp_path / 'run'}",
    )
    assert_user_error(result, "more than model.max_positions=8")
