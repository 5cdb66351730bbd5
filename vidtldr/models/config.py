"""Model configuration: architecture as data.

Every size of every module comes from a :class:`UMTConfig`, built either from one of the package's
architecture files (``vidtldr/models/architectures/<name>.json``) or from an official UMT config
dump plus its BERT json (:func:`config_from_official`). A tiny model and UMT-L go through the same
code path; nothing in the model code knows a size.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from vidtldr.errors import ConfigError

# The head sets a UMT model is built with (a task declares the one it needs: vidtldr/tasks/base.py):
# ``retrieval`` = ITC projections + ITM head (``UMT``), ``qa`` = the answer decoder (``UMT_QA``).
Task = str
TASKS = ("retrieval", "qa")


@dataclass(frozen=True)
class VisionConfig:
    """UMT video ViT (docs/protocol.md, section 1). No CLS token; mlp_ratio 4 is fixed in the official code."""

    img_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    num_frames: int
    tubelet_size: int = 1
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6
    # Frame count the positional table was trained for; -1 (official default) = no interpolation.
    ckpt_num_frames: int = -1
    add_pool_norm: bool = True  # retrieval: True; QA builds the ViT without pool_norm
    # Whether the family's published GFLOPs count layer norms (fvcore, UMT: yes; VideoMAE's 180 / 597
    # GMACs are the convolution, linear and matmul multiply-adds only).
    norms_in_paper: bool = True

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens entering block 0: (frames / tubelet) x patches per frame."""
        return (self.num_frames // self.tubelet_size) * self.grid * self.grid

    def validate(self) -> None:
        if self.width % self.num_heads:
            raise ConfigError(f"vision width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"vision img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ConfigError(f"num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}")
        for name in ("img_size", "patch_size", "width", "depth", "num_heads", "num_frames", "tubelet_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vision {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TextConfig:
    """xbert BERT encoder (docs/protocol.md, section 3). Layers >= fusion_layer carry cross-attention whose
    key/value input width is ``encoder_width`` (always the vision width: the official builder
    overrides the json value)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    fusion_layer: int
    encoder_width: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_act: str = "gelu"

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"text hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not 0 <= self.fusion_layer <= self.num_layers:
            raise ConfigError(f"text fusion_layer {self.fusion_layer} must lie in [0, {self.num_layers}]")
        if self.hidden_act != "gelu":
            raise ConfigError(f"text hidden_act {self.hidden_act!r} is not supported (UMT uses 'gelu')")


@dataclass(frozen=True)
class UMTConfig:
    """A whole UMT model: retrieval (``UMT``) or QA (``UMT_QA``)."""

    task: Task
    vision: VisionConfig
    text: TextConfig
    embed_dim: int = 512  # vision_proj / text_proj output (retrieval only)
    temp: float = 0.07  # stored in checkpoints, unused at evaluation
    decoder_layers: int = 0  # QA answer decoder depth (num_layers - fusion_layer officially)
    tokenizer: Optional[str] = None  # vocab name or path the architecture expects
    name: str = "custom"

    def validate(self) -> "UMTConfig":
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        self.vision.validate()
        self.text.validate()
        if self.text.encoder_width != self.vision.width:
            raise ConfigError(f"text encoder_width {self.text.encoder_width} must equal the vision width "
                              f"{self.vision.width} (cross-attention reads vision tokens)")
        if self.task == "qa":
            if self.decoder_layers < 1:
                raise ConfigError(f"QA needs decoder_layers >= 1, got {self.decoder_layers}")
            # The official decoder's cross-attention reads question states through layers sized by
            # the vision width, so QA only works when the two widths agree.
            if self.text.hidden_size != self.vision.width:
                raise ConfigError(f"QA needs text hidden_size ({self.text.hidden_size}) == vision width "
                                  f"({self.vision.width}): the decoder cross-attends with vision-sized weights")
        return self

    def replace(self, **changes: Any) -> "UMTConfig":
        return dataclasses.replace(self, **changes).validate()

    def with_num_frames(self, num_frames: int) -> "UMTConfig":
        return self.replace(vision=dataclasses.replace(self.vision, num_frames=int(num_frames)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Package architecture files


def available_architectures() -> list[str]:
    folder = resources.files("vidtldr.models") / "architectures"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _read_json(path: Path | Any, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: file not found: {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: {path} must hold a JSON object")
    return data


def _take(d: dict, key: str, where: str, cast=int):
    if key not in d:
        raise ConfigError(f"{where}: missing key {key!r}")
    try:
        return cast(d[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: key {key!r} has an invalid value {d[key]!r}") from None


def load_architecture(name: str, task: Task = "retrieval", num_frames: Optional[int] = None) -> UMTConfig:
    """Build a config from ``vidtldr/models/architectures/<name>.json``.

    The file holds ``vision`` and ``text`` sections (field names of :class:`VisionConfig` /
    :class:`TextConfig`; ``encoder_width`` is filled with the vision width), plus ``embed_dim``,
    ``temp``, ``tokenizer`` and ``num_frames`` defaults.
    """
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    path = resources.files("vidtldr.models") / "architectures" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown architecture {name!r}; available: {available_architectures()}")
    data = _read_json(path, f"architecture {name!r}")
    where = f"architecture {name!r}"
    try:
        vision_d = dict(data["vision"])
        text_d = dict(data["text"])
    except KeyError as exc:
        raise ConfigError(f"{where}: missing section {exc}") from None
    if num_frames is not None:
        vision_d["num_frames"] = int(num_frames)
    vision_d["add_pool_norm"] = task == "retrieval"
    text_d.setdefault("encoder_width", vision_d.get("width"))
    try:
        vision = VisionConfig(**vision_d)
        text = TextConfig(**text_d)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    decoder_layers = text.num_layers - text.fusion_layer if task == "qa" else 0
    return UMTConfig(task=task, vision=vision, text=text, embed_dim=int(data.get("embed_dim", 512)),
                     temp=float(data.get("temp", 0.07)), decoder_layers=decoder_layers,
                     tokenizer=data.get("tokenizer"), name=name).validate()


# ---------------------------------------------------------------------------------------------
# Official config dumps


def config_from_official(config: dict | str | Path, bert_config: dict | str | Path | None = None,
                         task: Optional[Task] = None) -> UMTConfig:
    """Build a config from an official UMT config (the resolved ``model`` section, as dumped to
    JSON, e.g. a parity fixture's ``config.json``) and the BERT json it names.

    ``task`` defaults to the config's ``model.model_cls`` (``UMT`` -> retrieval, ``UMT_QA`` -> qa).
    For QA the decoder depth comes from a ``qa.text_decoder.num_hidden_layers`` entry when present,
    else ``num_hidden_layers - fusion_layer`` as in the official builder.
    """
    base_dir: Optional[Path] = None
    if not isinstance(config, dict):
        base_dir = Path(config).parent
        config = _read_json(Path(config), "official config")
    model = config.get("model", config)
    where = "official config"
    if "vision_encoder" not in model or "text_encoder" not in model:
        raise ConfigError(f"{where}: expected 'model.vision_encoder' and 'model.text_encoder' sections")
    if bert_config is None:
        bert_config = config.get("bert_config")
        if bert_config is None and base_dir is not None:
            name = Path(str(model["text_encoder"].get("config", "bert_config.json"))).name
            bert_config = base_dir / name
        if bert_config is None:
            raise ConfigError(f"{where}: no BERT config given and none embedded")
    if not isinstance(bert_config, dict):
        bert_config = _read_json(Path(bert_config), "BERT config")

    if task is None:
        cls = model.get("model_cls", "UMT")
        task = {"UMT": "retrieval", "UMT_QA": "qa"}.get(cls)
        if task is None:
            raise ConfigError(f"{where}: unknown model_cls {cls!r} (expected UMT or UMT_QA)")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")

    ve = model["vision_encoder"]
    vw = "official config: model.vision_encoder"
    width = _take(ve, "encoder_embed_dim", vw) if "encoder_embed_dim" in ve else _take(ve, "d_model", vw)
    vision = VisionConfig(
        img_size=_take(ve, "img_size", vw), patch_size=_take(ve, "patch_size", vw), width=width,
        depth=_take(ve, "encoder_depth", vw), num_heads=_take(ve, "encoder_num_heads", vw),
        num_frames=_take(ve, "num_frames", vw), tubelet_size=int(ve.get("tubelet_size", 1)),
        ckpt_num_frames=int(ve.get("ckpt_num_frame", -1)), add_pool_norm=(task == "retrieval"))

    te = model["text_encoder"]
    bw = "BERT config"
    fusion = int(te.get("fusion_layer", bert_config.get("fusion_layer", -1)))
    if fusion < 0:
        raise ConfigError(f"{where}: no fusion_layer in model.text_encoder or the BERT config")
    if not model.get("multimodal", {}).get("enable", True):
        fusion = _take(bert_config, "num_hidden_layers", bw)
    text = TextConfig(
        vocab_size=_take(bert_config, "vocab_size", bw), hidden_size=_take(bert_config, "hidden_size", bw),
        num_layers=_take(bert_config, "num_hidden_layers", bw),
        num_heads=_take(bert_config, "num_attention_heads", bw),
        intermediate_size=_take(bert_config, "intermediate_size", bw), fusion_layer=fusion,
        encoder_width=width,  # the official builder overrides the json's encoder_width
        max_position_embeddings=int(bert_config.get("max_position_embeddings", 512)),
        type_vocab_size=int(bert_config.get("type_vocab_size", 2)),
        layer_norm_eps=float(bert_config.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(bert_config.get("pad_token_id", 0)),
        hidden_act=str(bert_config.get("hidden_act", "gelu")))
    decoder_layers = 0
    if task == "qa":
        dec = config.get("qa", {}).get("text_decoder", {})
        decoder_layers = int(dec.get("num_hidden_layers", text.num_layers - text.fusion_layer))
    return UMTConfig(task=task, vision=vision, text=text, embed_dim=int(model.get("embed_dim", 512)),
                     temp=float(model.get("temp", 0.07)), decoder_layers=decoder_layers,
                     tokenizer=te.get("pretrained"), name="official").validate()


__all__ = ["VisionConfig", "TextConfig", "UMTConfig", "load_architecture", "config_from_official",
           "available_architectures", "Task"]

