"""Small models shared by the tests: a seeded ViT with sharpened attention, and the official tiny
fixture model with its encoded inputs."""

import torch

from vidtldr.models import vit
from vidtldr.models.checkpoint import load_checkpoint
from vidtldr.models.config import config_from_official
from vidtldr.models.umt import build_model


def sharpened_vit(cfg, attention="fused", seed=0):
    """A seeded ``VisionTransformer`` whose attention is sharpened, so that its statistics (and the
    reducers' decisions) are not all near-uniform."""
    torch.manual_seed(seed)
    model = vit.VisionTransformer(cfg, attention=attention).eval()
    with torch.no_grad():
        for block in model.encoder.blocks:
            block.attn.qkv.weight.mul_(3.0)
            block.attn.q_bias.normal_()
            block.attn.v_bias.normal_()
    return model


def official_tiny(fixture_dir):
    """The official tiny retrieval model with its checkpoint, its inputs, and their vision output."""
    model = build_model(config_from_official(fixture_dir / "config.json", fixture_dir / "bert_config.json"))
    load_checkpoint(model, fixture_dir / "checkpoint.pth")
    inputs = torch.load(fixture_dir / "inputs.pt", weights_only=True)
    with torch.no_grad():
        out = model.encode_vision(inputs["videos"])
    return model, inputs, out
