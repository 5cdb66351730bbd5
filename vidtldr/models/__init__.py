"""UMT models: configs (architecture as data), the video ViT, the BERT text encoder / QA decoder,
checkpoint loading and the official-id tokenizer. See docs/architecture.md for the API."""

from vidtldr.models.checkpoint import CheckpointError, LoadReport, load_checkpoint
from vidtldr.models.config import (TextConfig, UMTConfig, VisionConfig, available_architectures,
                                   config_from_official, load_architecture)
from vidtldr.models.umt import UMTQA, UMTRetrieval, build_model
from vidtldr.models.vit import ATTENTION_MODES, VisionOutput

__all__ = ["VisionConfig", "TextConfig", "UMTConfig", "load_architecture", "config_from_official",
           "available_architectures", "build_model", "UMTRetrieval", "UMTQA", "VisionOutput", "ATTENTION_MODES",
           "load_checkpoint", "LoadReport", "CheckpointError"]
