"""UMT retrieval (``UMT``) and QA (``UMT_QA``) models at evaluation time (docs/protocol.md, sections 4 and 5).

Attribute names are the official ones, so ``state_dict()`` keys equal a fine-tuned checkpoint's:
``vision_encoder``, ``text_encoder``, ``vision_proj``, ``text_proj``, ``temp``, ``itm_head`` for
retrieval; ``vision_encoder`` (no pool_norm), ``text_encoder``, ``text_decoder`` for QA.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from vidtldr.errors import ConfigError
from vidtldr.models.bert import BertLMHeadModel, BertModel
from vidtldr.models.config import TASKS, UMTConfig, load_architecture
from vidtldr.models.family import BackboneFamily, register_family
from vidtldr.models.vit import AttentionMode, VisionOutput, VisionTransformer
from vidtldr.reduce.base import Reducer


class _UMTBase(nn.Module):
    def __init__(self, cfg: UMTConfig, attention: AttentionMode = "fused"):
        super().__init__()
        self.cfg = cfg
        self.vision_encoder = VisionTransformer(cfg.vision, attention=attention)
        self.text_encoder = BertModel(cfg.text)

    @property
    def attention(self) -> AttentionMode:
        return self.vision_encoder.attention

    def set_attention(self, mode: AttentionMode) -> None:
        """``fused`` (SDPA + bounded-memory blocks where the reducer needs statistics) or
        ``materialized`` (the official explicit softmax map in every block)."""
        self.vision_encoder.attention = mode

    def encode_vision(self, videos: torch.Tensor, reducer: Optional[Reducer] = None, trace: bool = False,
                      trace_source: bool = False) -> VisionOutput:
        """videos [B, T, 3, H, W] -> tokens [B, N, C], pooled [B, 1, C] (retrieval only), state."""
        return self.vision_encoder(videos, reducer=reducer, trace=trace, trace_source=trace_source)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text mode (layers below fusion_layer): [B, L, H]; the [CLS] row is the pooled feature."""
        return self.text_encoder(input_ids, attention_mask=attention_mask, mode="text")


class UMTRetrieval(_UMTBase):
    def __init__(self, cfg: UMTConfig, attention: AttentionMode = "fused"):
        if cfg.task != "retrieval" or not cfg.vision.add_pool_norm:
            raise ConfigError("UMTRetrieval needs a retrieval config (task='retrieval', pool_norm on)")
        super().__init__(cfg, attention)
        self.vision_proj = nn.Linear(cfg.vision.width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text.hidden_size, cfg.embed_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))  # kept for checkpoint fidelity; unused at eval
        self.itm_head = nn.Linear(cfg.text.hidden_size, 2)

    def itc_vision(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, 1, C] -> L2-normalised projection [B, 1, E]."""
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def itc_text(self, text_embeds: torch.Tensor) -> torch.Tensor:
        """text-mode states [B, L, H] -> L2-normalised projection of the [CLS] row [B, E]."""
        return F.normalize(self.text_proj(text_embeds[:, 0]), dim=-1)

    def itm_logit(self, text_embeds: torch.Tensor, text_mask: torch.Tensor,
                  vision_tokens: torch.Tensor) -> torch.Tensor:
        """Positive-class ITM logit [K] for K (text, video) pairs.

        text_embeds [K, L, H] (text-mode states), text_mask [K, L], vision_tokens [K, N, C]; the
        vision mask is all ones and merged-token sizes are not used (official)."""
        vision_mask = torch.ones(vision_tokens.shape[:2], dtype=torch.long, device=vision_tokens.device)
        fused = self.text_encoder(attention_mask=text_mask, encoder_embeds=text_embeds,
                                  encoder_hidden_states=vision_tokens, encoder_attention_mask=vision_mask,
                                  mode="fusion")
        return self.itm_head(fused[:, 0])[:, 1]

    # -- ITM with one video shared by many texts (the grouped re-ranking engine) -------------------

    def itm_video_kv(self, vision_tokens: torch.Tensor) -> list:
        """One video's tokens ``[N, C]`` -> each fusion layer's cross-attention keys/values, projected
        once and reused for every text scored against this video."""
        return self.text_encoder.context_kv(vision_tokens)

    def itm_text_part(self, text_embeds: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """The video-independent start of ITM for texts ``[B, L, H]``: the first fusion layer's
        self-attention sub-layer (computed once per text)."""
        return self.text_encoder.fusion_first_self(text_embeds, text_mask)

    def itm_logit_shared(self, text_part: torch.Tensor, text_mask: torch.Tensor, video_kv: list) -> torch.Tensor:
        """Positive-class ITM logit ``[B]`` of B texts (:meth:`itm_text_part` outputs, ``[B, L, H]``)
        against one video (:meth:`itm_video_kv`); equals :meth:`itm_logit` on the same pairs."""
        fused = self.text_encoder.fusion_shared(text_part, text_mask, video_kv)
        return self.itm_head(fused[:, 0])[:, 1]


class UMTQA(_UMTBase):
    def __init__(self, cfg: UMTConfig, attention: AttentionMode = "fused"):
        if cfg.task != "qa" or cfg.vision.add_pool_norm:
            raise ConfigError("UMTQA needs a QA config (task='qa', no pool_norm)")
        super().__init__(cfg, attention)
        # The official decoder's cross-attention K/V are sized by the vision width (docs/protocol.md section 3).
        decoder_text = dataclasses.replace(cfg.text, encoder_width=cfg.vision.width)
        self.text_decoder = BertLMHeadModel(decoder_text, cfg.decoder_layers)

    def encode_question(self, vision_tokens: torch.Tensor, question_ids: torch.Tensor,
                        question_mask: torch.Tensor) -> torch.Tensor:
        """All text layers (multi_modal mode), cross-attending to the vision tokens -> [B, Lq, H]."""
        vision_mask = torch.ones(vision_tokens.shape[:2], dtype=torch.long, device=vision_tokens.device)
        return self.text_encoder(question_ids, attention_mask=question_mask, encoder_hidden_states=vision_tokens,
                                 encoder_attention_mask=vision_mask, mode="multi_modal")

    def encode_question_shared(self, vision_tokens: torch.Tensor, question_ids: torch.Tensor,
                               question_mask: torch.Tensor) -> torch.Tensor:
        """:meth:`encode_question` for B questions about ONE video (tokens ``[N, C]``): the video's
        cross-attention keys/values are projected once per fusion layer, not once per question."""
        kvs = self.text_encoder.context_kv(vision_tokens)
        return self.text_encoder.multi_modal_shared(question_ids, question_mask, kvs)

    def start_logits(self, question_states: torch.Tensor, question_mask: torch.Tensor,
                     start_id: int) -> torch.Tensor:
        """Decoder logits [B, V] after the single start token (the answers' [CLS])."""
        start = torch.full((question_states.shape[0], 1), int(start_id), dtype=torch.long,
                           device=question_states.device)
        return self.text_decoder(start, None, question_states, question_mask)[:, 0]

    def answer_loss(self, answer_ids: torch.Tensor, answer_mask: torch.Tensor, question_states: torch.Tensor,
                    question_mask: torch.Tensor, pad_token_id: int = 0) -> torch.Tensor:
        """Per-sequence summed next-token loss [K] of K answer sequences given K question states."""
        logits = self.text_decoder(answer_ids, answer_mask, question_states, question_mask)
        labels = answer_ids.masked_fill(answer_ids == pad_token_id, -100)
        return BertLMHeadModel.sequence_loss(logits, labels)

    def rank_answers(self, vision_tokens: torch.Tensor, question_ids: torch.Tensor, question_mask: torch.Tensor,
                     answer_ids: torch.Tensor, answer_mask: torch.Tensor, k: int,
                     pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Official answer-list ranking (docs/protocol.md, section 5) for B questions.

        1. p_first(a): decoder softmax after the start token, at each answer's first piece; keep top-k.
        2. Re-score the k candidates with the full decoder loss; log-score = log p_first - loss (the
           first piece is therefore counted twice, inherited behaviour); softmax over the k.
        Returns (topk_ids [B, k] indices into the answer list, best first; topk_probs [B, k]).
        """
        question_states = self.encode_question(vision_tokens, question_ids, question_mask)
        return self.rank_from_states(question_states, question_mask, answer_ids, answer_mask, k, pad_token_id)

    def rank_from_states(self, question_states: torch.Tensor, question_mask: torch.Tensor,
                         answer_ids: torch.Tensor, answer_mask: torch.Tensor, k: int,
                         pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        num_questions = question_states.shape[0]
        k = min(int(k), answer_ids.shape[0])
        logits = self.start_logits(question_states, question_mask, int(answer_ids[0, 0]))
        first_probs = logits.float().softmax(dim=-1).index_select(1, answer_ids[:, 1])  # [B, N_ans]
        top_probs, top_ids = first_probs.topk(k, dim=1)
        candidate_ids = answer_ids[top_ids.reshape(-1)]  # [B*k, La], question-major
        candidate_mask = answer_mask[top_ids.reshape(-1)]
        states = question_states.repeat_interleave(k, dim=0)
        masks = question_mask.repeat_interleave(k, dim=0)
        loss = self.answer_loss(candidate_ids, candidate_mask, states, masks, pad_token_id)
        log_scores = top_probs.log() - loss.view(num_questions, k)
        probs = log_scores.softmax(dim=-1)
        ranked_probs, order = probs.topk(k, dim=1)
        return top_ids.gather(1, order), ranked_probs


UMTModel = Union[UMTRetrieval, UMTQA]


def build_model(cfg: UMTConfig, attention: AttentionMode = "fused") -> UMTModel:
    """Instantiate the model a config describes (weights random until a checkpoint is loaded).
    Build on the meta device with ``with torch.device("meta"): build_model(cfg)`` for shape checks."""
    cfg.validate()
    model = UMTRetrieval(cfg, attention) if cfg.task == "retrieval" else UMTQA(cfg, attention)
    return model.eval()


@register_family("umt")
class UMTFamily(BackboneFamily):
    """UMT (our modules, the official checkpoints): architecture files in ``models/architectures/``."""

    heads = TASKS

    #: Keys the official evaluation ignores on purpose (``load_state_dict(strict=False)`` there), by head
    #: set and checkpoint kind; passed to the strict loader, which drops and reports them. Prefixes: a
    #: trailing "." names a module, anything else one key ("temp").
    ignored_keys: ClassVar[dict[tuple[str, str], tuple[str, ...]]] = {
        # CLIP-distillation decoders / teacher exist only in pre-training (clip_return_layer > 0).
        ("retrieval", "finetuned"): ("vision_encoder.clip_decoder.", "clip_teacher."),
        ("qa", "finetuned"): ("vision_encoder.clip_decoder.", "clip_teacher."),
        # Pre-trained files also carry the MLM head, which retrieval never uses.
        ("retrieval", "pretrained"): ("vision_encoder.clip_decoder.", "clip_teacher.", "text_encoder.cls."),
        # UMT_QA has no pool_norm and deletes the retrieval heads; the MLM head moves to the decoder.
        ("qa", "pretrained"): ("vision_encoder.clip_decoder.", "clip_teacher.", "vision_encoder.pool_norm.",
                               "vision_proj.", "text_proj.", "itm_head.", "temp"),
    }

    def architecture(self, arch: str, heads: str, num_frames: Optional[int] = None) -> UMTConfig:
        return load_architecture(arch, task=self.check_heads(heads, f"architecture {arch!r}"), num_frames=num_frames)

    def build(self, arch_cfg: UMTConfig, attention: str = "fused") -> UMTModel:
        return build_model(arch_cfg, attention=attention)

    def build_vision(self, arch_cfg: UMTConfig, attention: str = "fused") -> VisionTransformer:
        """The video ViT alone (the model's ``vision_encoder``), as the benchmarks time it."""
        return VisionTransformer(arch_cfg.vision, attention=attention)

    def load_weights(self, model: UMTModel, path: str, kind: str):
        from vidtldr.models.checkpoint import load_checkpoint

        heads = getattr(getattr(model, "cfg", None), "task", None)  # the loader refuses a model without one
        return load_checkpoint(model, path, kind=kind, ignored=self.ignored_keys.get((heads, kind), ()))


__all__ = ["UMTRetrieval", "UMTQA", "UMTModel", "build_model", "UMTFamily"]
