"""Video QA by answer-list ranking (spec section 7).

The ranking itself is :meth:`vidtldr.models.umt.UMTQA.rank_answers` (first-piece top-k, then
re-scoring with the decoder loss). This module runs it over batches and turns the ranked
candidate indices into answer strings and official ``{question_id, answer}`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch

from vidtldr.reduce.base import Reducer


@dataclass
class QABatch:
    videos: torch.Tensor  # [B, T, 3, H, W]
    question_ids: torch.Tensor  # [B, Lq] token ids
    question_mask: torch.Tensor  # [B, Lq]
    qids: Sequence = ()  # dataset question ids (for the official result records)


@dataclass
class QARanking:
    topk_ids: torch.Tensor  # [N_q, k] indices into the answer list, best first
    topk_probs: torch.Tensor  # [N_q, k] softmax over the k re-scored candidates
    predictions: list[str] = field(default_factory=list)
    qids: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)  # per-block vision token counts (last batch)

    def records(self) -> list[dict]:
        """Official result records ``[{"question_id": ..., "answer": ...}]``."""
        return [{"question_id": q, "answer": a} for q, a in zip(self.qids, self.predictions)]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def rank_batch(model, batch: QABatch, answer_ids: torch.Tensor, answer_mask: torch.Tensor, k: int,
               reducer: Optional[Reducer] = None, pad_token_id: int = 0):
    """Encode one video batch (with the reducer) and rank the answer list for its questions.
    Returns (topk_ids, topk_probs, vision output)."""
    device = _device(model)
    vision = model.encode_vision(batch.videos.to(device), reducer=reducer)
    topk_ids, topk_probs = model.rank_answers(vision.tokens, batch.question_ids.to(device),
                                              batch.question_mask.to(device), answer_ids.to(device),
                                              answer_mask.to(device), k, pad_token_id=pad_token_id)
    return topk_ids.cpu(), topk_probs.float().cpu(), vision


def rank_all(model, batches: Iterable[QABatch], answer_list: Sequence[str], answer_ids: torch.Tensor,
             answer_mask: torch.Tensor, k: int = 128, reducer: Optional[Reducer] = None,
             pad_token_id: int = 0) -> QARanking:
    """Rank the answer list for every question; the prediction is the top re-ranked candidate."""
    if len(answer_list) != answer_ids.shape[0]:
        raise ValueError(f"answer_list has {len(answer_list)} entries but answer_ids has {answer_ids.shape[0]} rows")
    ids, probs, qids, counts = [], [], [], []
    for batch in batches:
        topk_ids, topk_probs, vision = rank_batch(model, batch, answer_ids, answer_mask, k, reducer, pad_token_id)
        ids.append(topk_ids)
        probs.append(topk_probs)
        qids.extend(list(batch.qids) if len(batch.qids) else [None] * topk_ids.shape[0])
        counts = vision.token_counts
    topk_ids = torch.cat(ids)
    predictions = [answer_list[int(row[0])] for row in topk_ids]
    return QARanking(topk_ids=topk_ids, topk_probs=torch.cat(probs), predictions=predictions, qids=qids,
                     token_counts=counts)


__all__ = ["QABatch", "QARanking", "rank_batch", "rank_all"]
