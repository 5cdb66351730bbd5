"""ITM re-ranking engines. Both fill exactly the official matrices (:func:`vidtldr.tasks.retrieval.itm_rerank`
describes them): the top-``k_test`` candidates by ITC in both directions hold the ITM logit, every
other entry -100.

* ``pairwise`` -- the official execution (:func:`vidtldr.tasks.retrieval.itm_rerank`): every
  (text, video) pair runs the whole fusion stack, so each video's cross-attention keys/values are
  projected again for every pair, and a pair that is a candidate in both directions runs twice.
* ``grouped`` -- :func:`itm_rerank_grouped`: the pairs to score are the union of both directions'
  candidates, each scored once and written to both matrices where it belongs. Pairs are grouped by
  video: a video's tokens are read once, each fusion layer's keys/values are projected once and
  shared by all its texts (batched, each batch padded to its own longest text), and the part of the
  first fusion layer before its cross-attention is computed once per text. At most one video's
  keys/values are alive at a time, so memory does not grow with the number of videos.

The logits agree with the pairwise execution up to float rounding (different matmul shapes), which
``scripts/check_parity.py`` and the tests bound.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from vidtldr.errors import ConfigError
from vidtldr.models.precision import model_device
from vidtldr.tasks.retrieval import (NOT_RERANKED, ITMStats, RetrievalScores, TextFeatures, candidates,
                                     itm_rerank)

ENGINES = ("grouped", "pairwise")


def candidate_masks(i2t_topk: torch.Tensor, t2i_topk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(in_i2t, in_t2i)``, both ``[N_v, N_t]`` booleans: whether (video i, text j) is among video i's
    candidate texts, and whether it is among text j's candidate videos."""
    num_videos, num_texts = i2t_topk.shape[0], t2i_topk.shape[0]
    in_i2t = torch.zeros(num_videos, num_texts, dtype=torch.bool)
    in_i2t.scatter_(1, i2t_topk, True)
    in_t2i = torch.zeros(num_texts, num_videos, dtype=torch.bool)
    in_t2i.scatter_(1, t2i_topk, True)
    return in_i2t, in_t2i.t()


def text_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Per text, one past its last valid token (its own length under right padding; at least 1)."""
    positions = torch.arange(1, mask.shape[1] + 1)
    return (mask.cpu().bool() * positions).amax(dim=1).clamp(min=1)


def text_parts(model, text: TextFeatures, rows: torch.Tensor, width: int,
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The video-independent start of ITM (``model.itm_text_part``) for texts ``rows``, trimmed to
    ``width`` tokens (the longest of them): ``(parts [len(rows), width, H], masks [len(rows), width])``
    on the model's device, row n for text ``rows[n]``."""
    with torch.no_grad():  # a block, not @torch.no_grad(): mutmut does not mutate decorated functions
        device = model_device(model)
        parts = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            parts.append(model.itm_text_part(text.embeds[chunk, :width].to(device), text.mask[chunk, :width].to(device)))
        return torch.cat(parts), text.mask[rows, :width].to(device)


def itm_rerank_grouped(model, i2t_emb: torch.Tensor, text: TextFeatures, vision_tokens, k_test: int = 128,
                       chunk: int = 32, videos: Optional[Sequence[int]] = None,
                       on_pairs: Optional[Callable[[int], None]] = None) -> RetrievalScores:
    """The grouped engine (module docstring). ``vision_tokens[i]``: video i's ``[N, C]`` tokens (a
    tensor, or the disk store's view, read once per video here). ``videos`` restricts the work to
    those videos (one rank's share in a data-parallel run): their rows of ``i2t`` and their columns of
    ``t2i`` are filled, every other entry keeps -100. ``chunk``: texts per fusion forward (one video's
    candidates sorted by length, so a batch is padded to little more than its texts' own lengths)."""
    with torch.no_grad():  # a block, not @torch.no_grad(): mutmut does not mutate decorated functions
        device = model_device(model)
        num_videos, num_texts = i2t_emb.shape
        i2t_topk, t2i_topk = candidates(i2t_emb, k_test)
        in_i2t, in_t2i = candidate_masks(i2t_topk, t2i_topk)
        todo = list(range(num_videos)) if videos is None else sorted({int(i) for i in videos})
        union = in_i2t | in_t2i
        lengths = text_lengths(text.mask)
        needed = union[todo].any(dim=0).nonzero().flatten() if todo else torch.empty(0, dtype=torch.long)
        stats = ITMStats("grouped")
        if needed.numel():
            width = int(lengths[needed].max())
            parts, masks = text_parts(model, text, needed, width)
            slot = torch.full((num_texts,), -1, dtype=torch.long)
            slot[needed] = torch.arange(needed.numel())
            stats.text_parts[width] += needed.numel()  # computed at the longest needed text's length
        i2t = torch.full((num_videos, num_texts), NOT_RERANKED, dtype=torch.float32)
        t2i = torch.full((num_texts, num_videos), NOT_RERANKED, dtype=torch.float32)
        for i in todo:
            texts = union[i].nonzero().flatten()
            if texts.numel() == 0:
                continue
            texts = texts[lengths[texts].argsort(stable=True)]  # similar lengths share a batch: less padding
            tokens = vision_tokens[i].to(device)
            kv = model.itm_video_kv(tokens)
            stats.video_kv[int(tokens.shape[0])] += 1
            for start in range(0, texts.numel(), chunk):
                rows = texts[start:start + chunk]
                width = int(lengths[rows].max())  # this batch's own longest text
                index = slot[rows].to(device)
                logit = model.itm_logit_shared(parts[index, :width], masks[index, :width], kv).float().cpu()
                to_i2t, to_t2i = in_i2t[i, rows], in_t2i[i, rows]
                i2t[i, rows[to_i2t]] = logit[to_i2t]
                t2i[rows[to_t2i], i] = logit[to_t2i]
                stats.pairs += rows.numel()
                stats.written += int(to_i2t.sum()) + int(to_t2i.sum())
                stats.pair_shapes[(width, int(tokens.shape[0]))] += rows.numel()
                if on_pairs is not None:
                    on_pairs(rows.numel())
            del kv, tokens  # one video's keys/values at a time
        return RetrievalScores(i2t_emb=i2t_emb, t2i_emb=i2t_emb.t(), i2t=i2t, t2i=t2i, i2t_topk=i2t_topk,
                               t2i_topk=t2i_topk, stats=stats)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"eval.itm_engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    return engine


def rerank(model, i2t_emb: torch.Tensor, text: TextFeatures, vision_tokens, *, engine: str = "grouped",
           k_test: int = 128, chunk: int = 32, video_rows: Optional[Sequence[int]] = None,
           text_rows: Optional[Sequence[int]] = None,
           on_pairs: Optional[Callable[[int], None]] = None) -> RetrievalScores:
    """Either engine. A data-parallel share is ``video_rows`` (+ ``text_rows`` for ``pairwise``, whose
    text->video rows are scored by the rank that owns the text); ``grouped`` shards by video only,
    filling the owned videos' ``i2t`` rows and ``t2i`` columns."""
    if check_engine(engine) == "pairwise":
        return itm_rerank(model, i2t_emb, text, vision_tokens, k_test=k_test, chunk=chunk, video_rows=video_rows,
                          text_rows=text_rows, on_pairs=on_pairs)
    return itm_rerank_grouped(model, i2t_emb, text, vision_tokens, k_test=k_test, chunk=chunk, videos=video_rows,
                              on_pairs=on_pairs)


def pairwise_pairs(num_videos: int, num_texts: int, k_test: int) -> int:
    """Pairs the official execution scores for a whole evaluation (both directions, shared ones twice)."""
    return num_videos * min(num_texts, k_test) + num_texts * min(num_videos, k_test)


__all__ = ["ENGINES", "candidate_masks", "text_lengths", "text_parts", "itm_rerank_grouped", "rerank",
           "check_engine", "pairwise_pairs"]
