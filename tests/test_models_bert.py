"""BERT text encoder (modes text / fusion / multi_modal) and the causal QA answer decoder."""

import pytest
import torch

from vidtldr.models.bert import BertLMHeadModel, BertModel
from vidtldr.models.config import TextConfig

CFG = TextConfig(vocab_size=50, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=48, fusion_layer=2,
                 encoder_width=24, max_position_embeddings=16)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def _ids(batch=3, length=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def test_text_mode_equals_a_stock_transformers_bert():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=16, hidden_act="gelu",
                                     layer_norm_eps=1e-12, attn_implementation="eager")
    hf = transformers.BertModel(hf_cfg, add_pooling_layer=False).eval()
    ours = _randomise(BertModel(CFG))
    hf_state = {k: v for k, v in ours.state_dict().items()
                if not k.startswith(("encoder.layer.2", "encoder.layer.3", "embeddings.position_ids"))}
    missing, unexpected = hf.load_state_dict(hf_state, strict=False)
    assert unexpected == [] and all("position_ids" in k for k in missing)  # a buffer in some versions
    ids, mask = _ids()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, attention_mask=mask, mode="text")
    # Padded query rows are not compared: HF and xbert use different mask constants there.
    valid = mask.bool()
    assert torch.allclose(got[valid], want[valid], atol=1e-5)


def test_multi_modal_is_text_then_fusion_and_only_fusion_reads_the_context():
    model = _randomise(BertModel(CFG))
    ids, mask = _ids()
    context = torch.randn(3, 7, 24)
    ones = torch.ones(3, 7, dtype=torch.long)
    with torch.no_grad():
        text = model(ids, attention_mask=mask, mode="text")
        fused = model(attention_mask=mask, encoder_embeds=text, encoder_hidden_states=context,
                      encoder_attention_mask=ones, mode="fusion")
        full = model(ids, attention_mask=mask, encoder_hidden_states=context, encoder_attention_mask=ones)
        other = model(attention_mask=mask, encoder_embeds=text, encoder_hidden_states=context + 1,
                      encoder_attention_mask=ones, mode="fusion")
    assert torch.allclose(fused, full, atol=1e-6)
    assert not torch.allclose(fused, other, atol=1e-3)
    assert len([l for l in model.encoder.layer if l.has_cross_attention]) == 2
    assert model.encoder.layer[2].crossattention.self.key.weight.shape == (32, 24)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(ids, attention_mask=mask, mode="multi_modal")


def test_padding_does_not_leak_into_valid_positions():
    model = _randomise(BertModel(CFG))
    ids, mask = _ids()
    changed = ids.clone()
    changed[2, 5:] = 7  # padded positions of sample 2 get other ids
    with torch.no_grad():
        a = model(ids, attention_mask=mask, mode="text")
        b = model(changed, attention_mask=mask, mode="text")
    assert torch.allclose(a[2, :3], b[2, :3], atol=1e-6)


def test_decoder_is_causal_cross_attends_everywhere_and_ties_its_head():
    cfg = TextConfig(**{**CFG.__dict__, "encoder_width": 32})
    decoder = _randomise(BertLMHeadModel(cfg, num_layers=2))
    head = decoder.cls.predictions
    assert head.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
    assert head.decoder.bias is head.bias
    assert all(l.has_cross_attention for l in decoder.bert.encoder.layer)
    ids, mask = _ids()
    question = torch.randn(3, 5, 32)
    q_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    later = ids.clone()
    later[:, 4:] = 9
    with torch.no_grad():
        a = decoder(ids, mask, question, q_mask)
        b = decoder(later, mask, question, q_mask)
        masked_question = question.clone()
        masked_question[1, 3:] = 100.0  # masked question positions must not matter
        c = decoder(ids, mask, masked_question, q_mask)
    assert a.shape == (3, 9, 50)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6) and not torch.allclose(a[:, 4:], b[:, 4:])
    assert torch.allclose(a, c, atol=1e-5)


def test_sequence_loss_is_the_shifted_summed_negative_log_likelihood():
    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[0, 3, 1, -100], [0, 5, -100, -100]])
    logp = logits.log_softmax(-1)
    want = torch.stack([-(logp[0, 0, 3] + logp[0, 1, 1]), -logp[1, 0, 5]])
    assert torch.allclose(BertLMHeadModel.sequence_loss(logits, labels), want, atol=1e-6)
