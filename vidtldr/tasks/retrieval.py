"""Video-text retrieval scoring as the official evaluation computes it (spec section 6).

Pure functions of a model and already-computed features:

* :func:`encode_texts` / :func:`encode_videos`: features in chunks (texts: text-mode states, their
  mask and the normalised ITC projection; videos: final tokens, normalised ITC projection).
* :func:`itc_scores`: cosine similarities ``[N_v, N_t]`` (temperature 1, mean over the singleton
  clip axis).
* :func:`itm_rerank`: for every video the top-``k_test`` texts by ITC, for every text the
  top-``k_test`` videos, re-scored with the ITM head's positive-class logit; every other entry is
  -100. The re-ranked matrices hold ITM logits only (not ITC + ITM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch

from vidtldr.models.precision import model_device as _device
from vidtldr.reduce.base import Reducer

NOT_RERANKED = -100.0


@dataclass
class TextFeatures:
    embeds: torch.Tensor  # [N_t, L, H] text-mode states
    mask: torch.Tensor  # [N_t, L]
    feat: torch.Tensor  # [N_t, E] normalised text_proj([CLS])


@dataclass
class VisionFeatures:
    tokens: torch.Tensor  # [N_v, N, C] final tokens (after encoder.norm), what ITM cross-attends to
    feat: torch.Tensor  # [N_v, 1, E] normalised vision_proj(pooled)
    token_counts: list = field(default_factory=list)  # per-block counts of the last batch


@dataclass
class RetrievalScores:
    i2t_emb: torch.Tensor  # [N_v, N_t] ITC
    t2i_emb: torch.Tensor  # [N_t, N_v] = i2t_emb.T
    i2t: torch.Tensor  # [N_v, N_t] ITM re-ranked, -100 outside the candidates
    t2i: torch.Tensor  # [N_t, N_v]
    i2t_topk: torch.Tensor  # [N_v, k] candidate texts per video (topk order)
    t2i_topk: torch.Tensor  # [N_t, k] candidate videos per text


@torch.no_grad()
def encode_texts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 256) -> TextFeatures:
    """Text-mode features in chunks (official ``extract_text_feats``, chunk 256)."""
    device = _device(model)
    embeds, feats = [], []
    for start in range(0, input_ids.shape[0], batch_size):
        ids = input_ids[start:start + batch_size].to(device)
        mask = attention_mask[start:start + batch_size].to(device)
        states = model.encode_text(ids, mask)
        embeds.append(states.float().cpu())
        feats.append(model.itc_text(states).float().cpu())
    return TextFeatures(torch.cat(embeds), attention_mask.cpu(), torch.cat(feats))


@torch.no_grad()
def encode_videos(model, batches: Iterable[torch.Tensor], reducer: Optional[Reducer] = None) -> VisionFeatures:
    """Encode video batches ``[B, T, 3, H, W]`` in order; tokens are kept on the CPU in float32."""
    device = _device(model)
    tokens, feats, counts = [], [], []
    for videos in batches:
        out = model.encode_vision(videos.to(device), reducer=reducer)
        tokens.append(out.tokens.float().cpu())
        feats.append(model.itc_vision(out.pooled).float().cpu())
        counts = out.token_counts
    return VisionFeatures(torch.cat(tokens), torch.cat(feats), counts)


def itc_scores(vision_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """``einsum("mld,nd->mln").mean(1)``: cosine similarity [N_v, N_t] (vision_feat [N_v, 1, E] or [N_v, E])."""
    if vision_feat.dim() == 2:
        vision_feat = vision_feat[:, None]
    return torch.einsum("mld,nd->mln", vision_feat, text_feat).mean(1)


@torch.no_grad()
def itm_rerank(model, i2t_emb: torch.Tensor, text: TextFeatures, vision_tokens: torch.Tensor | Sequence[torch.Tensor],
               k_test: int = 128, chunk: int = 32, video_rows: Optional[Sequence[int]] = None,
               text_rows: Optional[Sequence[int]] = None) -> RetrievalScores:
    """ITM re-ranking in both directions with ``k = min(candidates, k_test)`` and the -100 fill.

    ``vision_tokens[i]`` is video i's ``[N, C]`` tokens: a tensor, or any indexable that reads them on
    demand (the disk-backed feature store). ``video_rows`` / ``text_rows`` restrict the ITM work to
    those rows of the video->text / text->video matrices (one rank's share in a data-parallel run);
    other rows keep the -100 fill. The candidate lists (``*_topk``) are always complete: they cost
    one ``topk`` per row.
    """
    device = _device(model)
    num_videos, num_texts = i2t_emb.shape
    t2i_emb = i2t_emb.t()
    do_video = range(num_videos) if video_rows is None else [int(i) for i in video_rows]
    do_text = range(num_texts) if text_rows is None else [int(j) for j in text_rows]

    def video(i: int) -> torch.Tensor:
        return vision_tokens[i].to(device)

    def logits(text_rows: torch.Tensor, vision_rows: torch.Tensor) -> torch.Tensor:
        return model.itm_logit(text.embeds[text_rows].to(device), text.mask[text_rows].to(device),
                               vision_rows).float().cpu()

    k_i2t = min(num_texts, int(k_test))
    i2t = torch.full((num_videos, num_texts), NOT_RERANKED, dtype=torch.float32)
    i2t_topk = torch.empty(num_videos, k_i2t, dtype=torch.long)
    for i in range(num_videos):
        i2t_topk[i] = i2t_emb[i].topk(k_i2t).indices
    for i in do_video:
        candidates = i2t_topk[i]
        tokens = video(i)
        for start in range(0, k_i2t, chunk):
            rows = candidates[start:start + chunk]
            i2t[i, rows] = logits(rows, tokens[None].expand(len(rows), -1, -1))

    k_t2i = min(num_videos, int(k_test))
    t2i = torch.full((num_texts, num_videos), NOT_RERANKED, dtype=torch.float32)
    t2i_topk = torch.empty(num_texts, k_t2i, dtype=torch.long)
    for j in range(num_texts):
        t2i_topk[j] = t2i_emb[j].topk(k_t2i).indices
    for j in do_text:
        candidates = t2i_topk[j]
        for start in range(0, k_t2i, chunk):
            cols = candidates[start:start + chunk]
            tokens = torch.stack([video(int(c)) for c in cols])
            t2i[j, cols] = logits(torch.full((len(cols),), j, dtype=torch.long), tokens)
    return RetrievalScores(i2t_emb=i2t_emb, t2i_emb=t2i_emb, i2t=i2t, t2i=t2i, i2t_topk=i2t_topk,
                           t2i_topk=t2i_topk)


__all__ = ["TextFeatures", "VisionFeatures", "RetrievalScores", "encode_texts", "encode_videos", "itc_scores",
           "itm_rerank", "NOT_RERANKED"]
