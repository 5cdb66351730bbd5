"""Architecture as data: configs from the package's json files and from official config dumps."""

import json

import pytest
import torch

from vidtldr.errors import ConfigError
from vidtldr.models import available_architectures, build_model, config_from_official, load_architecture
from vidtldr.models.tokenizer import load_tokenizer, tokenize


def test_official_fixture_config(umt_tiny_dir):
    cfg = config_from_official(umt_tiny_dir / "config.json", umt_tiny_dir / "bert_config.json")
    assert cfg.task == "retrieval" and cfg.vision.add_pool_norm
    v, t = cfg.vision, cfg.text
    assert (v.img_size, v.patch_size, v.width, v.depth, v.num_heads, v.num_frames) == (32, 8, 64, 4, 4, 4)
    assert v.num_tokens == 64 and v.layer_norm_eps == 1e-6
    assert (t.vocab_size, t.hidden_size, t.num_layers, t.num_heads, t.intermediate_size, t.fusion_layer) == \
        (210, 64, 4, 4, 128, 2)
    assert t.max_position_embeddings == 32 and cfg.embed_dim == 32
    qa = config_from_official(umt_tiny_dir / "config.json", task="qa")  # BERT json found beside it
    assert qa.task == "qa" and qa.decoder_layers == 2 and not qa.vision.add_pool_norm


def test_encoder_width_follows_the_vision_width_and_multimodal_switch(umt_tiny_dir, tmp_path):
    config = json.loads((umt_tiny_dir / "config.json").read_text())
    bert = json.loads((umt_tiny_dir / "bert_config.json").read_text())
    bert["encoder_width"] = 768  # the official builder ignores the json value
    assert config_from_official(config, bert).text.encoder_width == 64
    config["model"]["multimodal"] = {"enable": False}
    assert config_from_official(config, bert).text.fusion_layer == 4
    config["model"]["vision_encoder"]["ckpt_num_frame"] = 8
    assert config_from_official(config, bert).vision.ckpt_num_frames == 8


def test_invalid_configs_are_rejected(umt_tiny_dir):
    config = json.loads((umt_tiny_dir / "config.json").read_text())
    bert = json.loads((umt_tiny_dir / "bert_config.json").read_text())
    wide = dict(bert, hidden_size=96, num_attention_heads=4)
    assert config_from_official(config, wide).text.hidden_size == 96  # retrieval: any text width
    with pytest.raises(ConfigError, match="QA needs text hidden_size"):
        config_from_official(config, wide, task="qa")
    with pytest.raises(ConfigError, match="missing key 'vocab_size'"):
        config_from_official(config, {k: v for k, v in bert.items() if k != "vocab_size"})
    with pytest.raises(ConfigError, match="unknown architecture 'umt_x'"):
        load_architecture("umt_x")
    with pytest.raises(ConfigError, match="task must be"):
        load_architecture("tiny", task="captioning")


def test_package_architectures():
    assert {"tiny", "umt_b16", "umt_l16"} <= set(available_architectures())
    b = load_architecture("umt_b16")
    assert (b.vision.width, b.vision.depth, b.vision.num_heads, b.text.fusion_layer, b.embed_dim) == (768, 12, 12, 9, 512)
    assert b.vision.num_tokens == 2352
    l_qa = load_architecture("umt_l16", task="qa", num_frames=4)
    assert (l_qa.vision.width, l_qa.vision.depth, l_qa.text.fusion_layer, l_qa.decoder_layers) == (1024, 24, 19, 5)
    assert l_qa.vision.num_tokens == 784


def test_tiny_architecture_runs_end_to_end_on_224_frames():
    cfg = load_architecture("tiny")
    torch.manual_seed(0)
    model = build_model(cfg)
    tok = load_tokenizer(cfg.tokenizer)
    ids = tokenize(tok, ["a dog runs across the green field", "a man is playing a guitar"], 12)
    with torch.no_grad():
        out = model.encode_vision(torch.randn(2, cfg.vision.num_frames, 3, 224, 224))
        text = model.encode_text(ids.input_ids, ids.attention_mask)
        logits = model.itm_logit(text, ids.attention_mask, out.tokens)
    assert out.tokens.shape == (2, 196, 64) and out.pooled.shape == (2, 1, 64)
    assert model.itc_vision(out.pooled).norm(dim=-1).allclose(torch.ones(2, 1))
    assert logits.shape == (2,) and torch.isfinite(logits).all()
