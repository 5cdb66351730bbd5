"""VideoMAE (transformers' ``VideoMAEForVideoClassification``) with the token-reducer hook.

The adapter owns a stock transformers model (its ``state_dict`` is transformers' own, so any
``config.json`` + weights folder loads unchanged) and walks its layers itself, because the hook sits
*inside* a layer, between the attention residual and the MLP (docs/architecture.md, "Reducer
hook")::

    x = embeddings(videos)                          # tubelet Conv3d + fixed sinusoid positions
    per layer:  x = x + attention(layernorm_before(x))      # reducer.needs -> eager / SDPA
                x = reducer.reduce(x, layer, state, aux)
                x = x + output.dense(intermediate(layernorm_after(x)))
    logits = classifier(fc_norm(mean over the surviving tokens))

VideoMAE has no CLS token, so every token may be merged or dropped; the pooled feature is the
unweighted mean of the surviving tokens (merge sizes ignored, as UMT's pooling). Queries, keys and
values come from the layer's own ``query``/``key``/``value`` projections; the attention arithmetic
(proportional attention with ``log(size)``, the materialized map where a reducer needs it, SDPA
otherwise, the fused/materialized exactness) is the one every family shares. With no reducer the
forward equals transformers' own (tests/test_videomae_model.py).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from vidtldr.errors import ConfigError
from vidtldr.models.attention import (AttentionMode, AttentionModeSetting, ReducibleAttention, exact_through,
                                      input_reduction, reducing_block)
from vidtldr.models.checkpoint import CheckpointError
from vidtldr.models.config import VisionConfig
from vidtldr.models.family import BackboneFamily, register_family
from vidtldr.models.vit import VisionOutput
from vidtldr.reduce.base import Need, ReductionState, Reducer

#: transformers versions whose VideoMAE layout (``query``/``key``/``value`` projections with the q/v
#: biases inside them, ``layernorm_before``/``layernorm_after``, ``fc_norm``) this adapter walks;
#: the installed one is tested (tests/test_videomae_model.py).
SUPPORTED_TRANSFORMERS = ("5.25", "6")  # >= first, < second
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_transformers_version(version: Optional[str] = None) -> str:
    """The installed transformers version; a ConfigError when it is outside the supported range."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    low, high = SUPPORTED_TRANSFORMERS
    if not Version(low) <= Version(version) < Version(high):
        raise ConfigError(f"the VideoMAE backbone needs transformers >={low},<{high} (its layer layout); "
                          f"installed: {version}")
    return version


# ---------------------------------------------------------------------------------------------
# Architecture as data


def available_videomae_architectures() -> list[str]:
    folder = resources.files("vidtldr.models.hf") / "architectures"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def videomae_architecture(name: str, **overrides: Any) -> dict:
    """The transformers ``VideoMAEConfig`` fields of a packaged architecture (``videomae_b16``,
    ``videomae_l16``, ``videomae_tiny``), with ``overrides`` (e.g. ``num_labels``) applied."""
    path = resources.files("vidtldr.models.hf") / "architectures" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown VideoMAE architecture {name!r}; available: "
                          f"{available_videomae_architectures()}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("description", None)
    data.update(overrides)
    return data


def _hf_config(fields: dict):
    from transformers import VideoMAEConfig

    fields = dict(fields)
    fields.pop("model_type", None)
    # sdpa: transformers' default execution, the one the parity tests compare against
    return VideoMAEConfig(**fields, attn_implementation="sdpa")


# ---------------------------------------------------------------------------------------------
# The hooked forward


class _LayerAttention(ReducibleAttention):
    """Multi-head self-attention of one transformers ``VideoMAELayer`` through the shared arithmetic.

    Holds references to the layer's projections (not a module: the parameters stay registered once,
    under transformers' names)."""

    def __init__(self, layer: nn.Module):
        self_attention = layer.attention.attention
        self.query, self.key, self.value = self_attention.query, self_attention.key, self_attention.value
        self.dense = layer.attention.output.dense
        self.num_heads = self_attention.num_attention_heads
        self.head_dim = self_attention.attention_head_size
        self.scale = self.head_dim ** -0.5

    def __call__(self, x: torch.Tensor, size: Optional[torch.Tensor], need: Need, mode: AttentionMode,
                 exact: bool) -> tuple[torch.Tensor, dict]:
        batch, tokens, _ = x.shape

        def heads(proj: nn.Module) -> torch.Tensor:  # [B, heads, T, head_dim]
            return proj(x).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

        out, aux = self.attend(heads(self.query), heads(self.key), heads(self.value), size, need, mode, exact)
        return self.dense(out.transpose(1, 2).reshape(batch, tokens, -1)), aux


def _check_layout(model: nn.Module) -> None:
    """A ConfigError when the transformers model lacks a module this adapter walks."""
    try:
        layer = model.videomae.encoder.layer[0]
        for part in (layer.layernorm_before, layer.layernorm_after, layer.intermediate, layer.output.dense,
                     layer.attention.output.dense, layer.attention.attention.query,
                     model.videomae.embeddings.patch_embeddings, model.classifier):
            assert isinstance(part, nn.Module)
    except (AttributeError, AssertionError, IndexError) as exc:
        raise ConfigError(f"this transformers VideoMAE has another module layout than the adapter walks "
                          f"({exc}); supported transformers: >={SUPPORTED_TRANSFORMERS[0]},"
                          f"<{SUPPORTED_TRANSFORMERS[1]}") from None


class VideoMAEClassifier(AttentionModeSetting, nn.Module):
    """transformers' ``VideoMAEForVideoClassification`` with the reducer hook in every layer.

    ``hf`` is the stock model (its weights, names and config); ``attention`` the execution mode
    (``fused`` | ``materialized``) as for the UMT ViT."""

    family = "videomae"

    def __init__(self, hf: nn.Module, attention: AttentionMode = "fused"):
        super().__init__()
        self.adopt(hf)
        self.attention = attention

    def adopt(self, hf: nn.Module) -> None:
        """Run ``hf`` (a transformers VideoMAEForVideoClassification) from now on."""
        _check_layout(hf)
        self.hf = hf.eval()
        self._layers = [_LayerAttention(layer) for layer in hf.videomae.encoder.layer]

    @property
    def config(self):
        return self.hf.config

    @property
    def depth(self) -> int:
        return len(self._layers)

    @property
    def num_classes(self) -> int:
        return int(self.hf.config.num_labels)

    @property
    def num_frames(self) -> int:
        return int(self.hf.config.num_frames)

    @property
    def img_size(self) -> int:
        size = self.hf.config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def set_attention(self, mode: AttentionMode) -> None:
        self.attention = mode

    def _check_input(self, videos: torch.Tensor) -> None:
        if videos.dim() != 5 or videos.shape[2] != 3:
            raise ValueError(f"videos must be [B, T, 3, H, W], got {tuple(videos.shape)}")
        if videos.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"frames must be {self.img_size}x{self.img_size}, got "
                             f"{videos.shape[-2]}x{videos.shape[-1]}")
        if videos.shape[1] != self.num_frames:
            raise ValueError(f"the model is configured for {self.num_frames} frames (its position table), "
                             f"got {videos.shape[1]}")

    def exact_through(self, reducer: Optional[Reducer], num_tokens: int) -> int:
        return exact_through(reducer, num_tokens, self.depth, self._attention)

    def encode_vision(self, videos: torch.Tensor, reducer: Optional[Reducer] = None, trace: bool = False,
                      trace_source: bool = False) -> VisionOutput:
        """videos [B, T, 3, H, W] normalised -> tokens [B, N, C] (after the final norm where the
        config has one), pooled [B, 1, C] (fc_norm of the token mean), the forward's state."""
        self._check_input(videos)
        backbone = self.hf.videomae
        state = ReductionState(record_trace=trace, trace_source=trace_source)
        x = backbone.embeddings(videos, None)
        config = self.hf.config
        grid = (self.num_frames // config.tubelet_size, self.img_size // config.patch_size,
                self.img_size // config.patch_size)
        x = input_reduction(x, videos.permute(0, 2, 1, 3, 4), grid, state, reducer)
        state.token_counts.append(x.shape[1])
        out = VisionOutput(tokens=x, pooled=None, state=state)
        out.exact_through = self.exact_through(reducer, x.shape[1])
        mode = self._attention
        for index, (layer, attention) in enumerate(zip(backbone.encoder.layer, self._layers, strict=True)):
            exact = index <= out.exact_through

            def attend(h, size, need, layer=layer, attention=attention, exact=exact):
                return attention(layer.layernorm_before(h), size, need, mode, exact)

            def mlp(h, layer=layer):
                return layer.output.dense(layer.intermediate(layer.layernorm_after(h)))

            x = reducing_block(x, index, state, reducer, attend, mlp)
            state.token_counts.append(x.shape[1])
            if trace:
                out.block_outputs.append(x)
                out.block_sizes.append(state.size)
        if backbone.layernorm is not None:
            x = backbone.layernorm(x)
        out.tokens = x
        hf = self.hf
        # transformers: mean pooling + fc_norm, or the first token without mean pooling
        pooled = hf.fc_norm(x.mean(1)) if hf.fc_norm is not None else x[:, 0]
        out.pooled = pooled.unsqueeze(1)
        return out

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes] from ``VisionOutput.pooled`` [B, 1, C]."""
        return self.hf.classifier(pooled[:, 0])

    def forward(self, videos: torch.Tensor, reducer: Optional[Reducer] = None) -> torch.Tensor:
        """Logits [B, classes]."""
        return self.classify(self.encode_vision(videos, reducer).pooled)


# ---------------------------------------------------------------------------------------------
# Building and loading


def build_videomae(fields: dict, seed: int = 0, attention: AttentionMode = "fused") -> VideoMAEClassifier:
    """A VideoMAE with seeded random weights (transformers' own initialisation) from config fields
    (:func:`videomae_architecture`)."""
    from transformers import VideoMAEForVideoClassification

    check_transformers_version()
    torch.manual_seed(seed)
    return VideoMAEClassifier(VideoMAEForVideoClassification(_hf_config(fields)), attention)


def check_checkpoint_folder(folder: str | Path) -> Path:
    """The folder, when it holds ``config.json`` for a VideoMAE and a weights file; else a
    CheckpointError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"VideoMAE checkpoint folder not found: {folder} (expected a Hugging Face "
                              f"folder with config.json and model.safetensors or pytorch_model.bin)")
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json (the architecture is read from it)")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{config}: not a JSON object ({exc})") from None
    if model_type != "videomae":
        raise CheckpointError(f"{config}: model_type is {model_type!r}, expected 'videomae'")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(f"{folder}: no weights file (one of {', '.join(WEIGHT_FILES)})")
    return folder


def load_videomae(folder: str | Path, attention: AttentionMode = "fused") -> VideoMAEClassifier:
    """A fine-tuned VideoMAE classifier from a local Hugging Face folder (never downloads).

    Strict: a weight the architecture expects but the folder lacks (e.g. a pre-training checkpoint
    without the classification head, which transformers would fill with random numbers) is a
    CheckpointError naming the keys."""
    from transformers import VideoMAEForVideoClassification

    check_transformers_version()
    folder = check_checkpoint_folder(folder)
    try:
        hf, info = VideoMAEForVideoClassification.from_pretrained(
            str(folder), local_files_only=True, attn_implementation="sdpa", output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: cannot load the VideoMAE weights: {str(exc).splitlines()[0]}") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = info.get("mismatched_keys") or []
    if missing or mismatched:
        names = missing + [str(m[0]) if isinstance(m, (list, tuple)) else str(m) for m in mismatched]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise CheckpointError(f"{folder}: the weights lack or mis-shape {len(names)} tensor(s) of the "
                              f"classifier ({shown}); a fine-tuned VideoMAE classification checkpoint is needed")
    return VideoMAEClassifier(hf.float(), attention)



# ---------------------------------------------------------------------------------------------
# The backbone family (vidtldr/models/family.py)


@dataclass(frozen=True)
class VideoMAEArch:
    """A VideoMAE architecture: transformers' config fields plus the ``vision`` view every layer
    above the models reads (FLOPs, cache keys, frame size). No text side."""

    name: str
    fields: dict
    vision: VisionConfig
    text = None
    embed_dim = None
    tokenizer = None

    def to_dict(self) -> dict:
        return {"family": "videomae", "name": self.name, "vision": dataclasses.asdict(self.vision),
                "text": None, "hf": dict(self.fields)}


def vision_config_of(fields: dict) -> VisionConfig:
    """The encoder's sizes in the harness's terms (mean pooling + fc_norm = the pooled norm)."""
    size = fields.get("image_size", 224)
    patch = fields.get("patch_size", 16)
    width = int(fields.get("hidden_size", 768))
    return VisionConfig(img_size=int(size[0] if isinstance(size, (list, tuple)) else size),
                        patch_size=int(patch[0] if isinstance(patch, (list, tuple)) else patch), width=width,
                        depth=int(fields.get("num_hidden_layers", 12)), num_heads=int(fields.get("num_attention_heads", 12)),
                        num_frames=int(fields.get("num_frames", 16)), tubelet_size=int(fields.get("tubelet_size", 2)),
                        mlp_ratio=int(fields.get("intermediate_size", 4 * width)) / width,
                        layer_norm_eps=float(fields.get("layer_norm_eps", 1e-12)),
                        add_pool_norm=bool(fields.get("use_mean_pooling", True)), norms_in_paper=False)


#: config.json fields that must agree between a checkpoint folder and the model's architecture
ENCODER_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                  "tubelet_size", "image_size", "num_frames", "use_mean_pooling")


@register_family("videomae")
class VideoMAEFamily(BackboneFamily):
    """transformers' VideoMAE: architecture files in ``models/hf/architectures/``, weights from a
    local Hugging Face folder (``config.json`` + weights)."""

    heads = ("classification",)

    def architecture(self, arch: str, heads: str, num_frames: Optional[int] = None) -> VideoMAEArch:
        self.check_heads(heads, f"architecture {arch!r}")
        fields = videomae_architecture(arch)
        if num_frames is not None and int(num_frames) != int(fields["num_frames"]):
            raise ConfigError(f"architecture {arch!r} takes {fields['num_frames']} frames (its position table and "
                              f"the checkpoints), got {num_frames}")
        return VideoMAEArch(arch, fields, vision_config_of(fields))

    def build(self, arch_cfg: VideoMAEArch, attention: str = "fused") -> VideoMAEClassifier:
        # seeded by the caller (torch.manual_seed): random weights are a function of model.seed
        from transformers import VideoMAEForVideoClassification

        check_transformers_version()
        return VideoMAEClassifier(VideoMAEForVideoClassification(_hf_config(arch_cfg.fields)), attention)

    def load_weights(self, model: VideoMAEClassifier, path: str, kind: str):
        """Replace the built model's transformers module by the folder's (its config.json read);
        the encoder must be the architecture's, or the FLOPs and caches would describe another model."""
        loaded = load_videomae(path, attention=model.attention)
        theirs = loaded.config.to_dict()
        ours = model.config.to_dict()
        differ = [f"{k}: {theirs.get(k)} (model {ours.get(k)})" for k in ENCODER_FIELDS if theirs.get(k) != ours.get(k)]
        if differ:
            raise CheckpointError(f"{path}/config.json describes another encoder than the model's architecture: "
                                  f"{'; '.join(differ)}; pick the model config of that checkpoint")
        model.adopt(loaded.hf)
        return CheckpointReport(path=str(path), num_classes=loaded.num_classes)

    def locate_checkpoint(self, name: str) -> Optional[str]:
        """The folder of Hugging Face repository ``name`` (e.g. ``MCG-NJU/videomae-base-finetuned-kinetics``)
        in the local Hugging Face cache, or None; never downloads."""
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(name, local_files_only=True)
        except Exception:  # not cached, not a repository name, or no huggingface_hub: not found here
            return None

    def build_vision(self, arch_cfg: VideoMAEArch, attention: str = "fused") -> "VideoMAEVision":
        """The encoder alone, as the benchmarks time it (random weights; the classifier head is kept,
        transformers builds the two together)."""
        return VideoMAEVision(self.build(arch_cfg, attention=attention))

    def checkpoint_hint(self, path: str) -> str:
        """Where to get a missing checkpoint folder (shown with the missing-input list)."""
        return (f"checkpoint: a Hugging Face folder with config.json + model.safetensors (or pytorch_model.bin), e.g. "
                f"`hf download MCG-NJU/videomae-base-finetuned-kinetics --local-dir {path}` (the folder named in "
                "model.checkpoints under paths.checkpoints, or model.checkpoint=/path/to/folder)")


class VideoMAEVision(nn.Module):
    """A :class:`VideoMAEClassifier` seen as a vision encoder: ``forward(videos, reducer)`` returns the
    :class:`VisionOutput` (what the benchmarks time and compare), ``cfg`` the encoder's sizes."""

    def __init__(self, model: VideoMAEClassifier):
        super().__init__()
        self.model = model
        self.cfg = vision_config_of(model.config.to_dict())

    @property
    def attention(self) -> AttentionMode:
        return self.model.attention

    @attention.setter
    def attention(self, mode: str) -> None:
        self.model.attention = mode

    def forward(self, videos: torch.Tensor, reducer: Optional[Reducer] = None, trace: bool = False) -> VisionOutput:
        return self.model.encode_vision(videos, reducer=reducer, trace=trace)


@dataclass
class CheckpointReport:
    path: str
    num_classes: int


__all__ = ["VideoMAEClassifier", "VideoMAEFamily", "VideoMAEArch", "build_videomae", "load_videomae", "videomae_architecture",
           "available_videomae_architectures", "check_checkpoint_folder", "check_transformers_version",
           "SUPPORTED_TRANSFORMERS"]
