"""Video-text retrieval scoring as the official evaluation computes it (docs/protocol.md section 4).

Pure functions of a model and already-computed features:

* :func:`encode_texts` / :func:`encode_videos`: features in chunks (texts: text-mode states, their
  mask and the normalised ITC projection; videos: final tokens, normalised ITC projection).
* :func:`itc_scores`: cosine similarities ``[N_v, N_t]`` (temperature 1, mean over the singleton
  clip axis).
* :func:`itm_rerank`: for every video the top-``k_test`` texts by ITC, for every text the
  top-``k_test`` videos, re-scored with the ITM head's positive-class logit; every other entry is
  -100. The re-ranked matrices hold ITM logits only (not ITC + ITM). This is the official execution,
  pair by pair (the ``pairwise`` engine); :mod:`vidtldr.tasks.itm` has the ``grouped`` engine, which
  fills the same matrices reading each video once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import torch

from vidtldr.models.precision import model_device as _device
from vidtldr.reduce.base import Reducer
from vidtldr.tasks.base import Task, register_task

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
class ITMStats:
    """What an ITM engine executed, enough to count its FLOPs exactly (:mod:`vidtldr.cost.itm`)."""

    engine: str
    pairs: int = 0  # (text, video) pairs sent through the fusion layers
    written: int = 0  # matrix entries given a logit (i2t + t2i); > pairs when shared pairs were scored once
    # (padded text length, vision tokens) -> pairs scored at that shape
    pair_shapes: Counter = field(default_factory=Counter)
    # grouped only: vision tokens -> videos whose cross-attention K/V were projected (once each)
    video_kv: Counter = field(default_factory=Counter)
    # grouped only: padded text length -> texts whose video-independent part was computed (once each)
    text_parts: Counter = field(default_factory=Counter)

    def add(self, other: "ITMStats") -> "ITMStats":
        """The sum of two ranks' work."""
        out = ITMStats(self.engine, self.pairs + other.pairs, self.written + other.written)
        out.pair_shapes = self.pair_shapes + other.pair_shapes
        out.video_kv = self.video_kv + other.video_kv
        out.text_parts = self.text_parts + other.text_parts
        return out

    def to_dict(self) -> dict:
        return {"engine": self.engine, "pairs": self.pairs, "written": self.written,
                "pair_shapes": [[lt, nv, c] for (lt, nv), c in sorted(self.pair_shapes.items())],
                "video_kv": [[nv, c] for nv, c in sorted(self.video_kv.items())],
                "text_parts": [[lt, c] for lt, c in sorted(self.text_parts.items())]}


@dataclass
class RetrievalScores:
    i2t_emb: torch.Tensor  # [N_v, N_t] ITC
    t2i_emb: torch.Tensor  # [N_t, N_v] = i2t_emb.T
    i2t: torch.Tensor  # [N_v, N_t] ITM re-ranked, -100 outside the candidates
    t2i: torch.Tensor  # [N_t, N_v]
    i2t_topk: torch.Tensor  # [N_v, k] candidate texts per video (topk order)
    t2i_topk: torch.Tensor  # [N_t, k] candidate videos per text
    stats: Optional[ITMStats] = None  # what the ITM engine executed (this process's share)


def encode_texts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 256) -> TextFeatures:
    """Text-mode features in chunks (official ``extract_text_feats``, chunk 256)."""
    with torch.no_grad():  # a block, not @torch.no_grad(): mutmut does not mutate decorated functions
        device = _device(model)
        embeds, feats = [], []
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start:start + batch_size].to(device)
            mask = attention_mask[start:start + batch_size].to(device)
            states = model.encode_text(ids, mask)
            embeds.append(states.float().cpu())
            feats.append(model.itc_text(states).float().cpu())
        return TextFeatures(torch.cat(embeds), attention_mask.cpu(), torch.cat(feats))


def encode_videos(model, batches: Iterable[torch.Tensor], reducer: Optional[Reducer] = None) -> VisionFeatures:
    """Encode video batches ``[B, T, 3, H, W]`` in order; tokens are kept on the CPU in float32."""
    with torch.no_grad():  # a block, not @torch.no_grad(): mutmut does not mutate decorated functions
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


def candidates(i2t_emb: torch.Tensor, k_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official candidate sets: ``(i2t_topk [N_v, k_v2t], t2i_topk [N_t, k_t2i])``, the top
    ``min(k_test, N)`` by ITC of each row, in ``topk`` order (one ``topk`` per row, as the official loop)."""
    num_videos, num_texts = i2t_emb.shape
    t2i_emb = i2t_emb.t()
    k_i2t, k_t2i = min(num_texts, int(k_test)), min(num_videos, int(k_test))
    i2t_topk = torch.empty(num_videos, k_i2t, dtype=torch.long)
    for i in range(num_videos):
        i2t_topk[i] = i2t_emb[i].topk(k_i2t).indices
    t2i_topk = torch.empty(num_texts, k_t2i, dtype=torch.long)
    for j in range(num_texts):
        t2i_topk[j] = t2i_emb[j].topk(k_t2i).indices
    return i2t_topk, t2i_topk


def itm_rerank(model, i2t_emb: torch.Tensor, text: TextFeatures, vision_tokens: torch.Tensor | Sequence[torch.Tensor],
               k_test: int = 128, chunk: int = 32, video_rows: Optional[Sequence[int]] = None,
               text_rows: Optional[Sequence[int]] = None,
               on_pairs: Optional[Callable[[int], None]] = None) -> RetrievalScores:
    """ITM re-ranking in both directions with ``k = min(candidates, k_test)`` and the -100 fill.

    ``vision_tokens[i]`` is video i's ``[N, C]`` tokens: a tensor, or any indexable that reads them on
    demand (the disk-backed feature store). ``video_rows`` / ``text_rows`` restrict the ITM work to
    those rows of the video->text / text->video matrices (one rank's share in a data-parallel run);
    other rows keep the -100 fill. The candidate lists (``*_topk``) are always complete: they cost
    one ``topk`` per row. ``on_pairs(n)`` is called after each ITM forward of ``n`` pairs (progress).
    """
    with torch.no_grad():  # a block, not @torch.no_grad(): mutmut does not mutate decorated functions
        device = _device(model)
        num_videos, num_texts = i2t_emb.shape
        t2i_emb = i2t_emb.t()
        do_video = range(num_videos) if video_rows is None else [int(i) for i in video_rows]
        do_text = range(num_texts) if text_rows is None else [int(j) for j in text_rows]

        def video(i: int) -> torch.Tensor:
            return vision_tokens[i].to(device)

        stats = ITMStats("pairwise")

        def logits(text_rows: torch.Tensor, vision_rows: torch.Tensor) -> torch.Tensor:
            out = model.itm_logit(text.embeds[text_rows].to(device), text.mask[text_rows].to(device),
                                  vision_rows).float().cpu()
            stats.pairs += len(text_rows)
            stats.pair_shapes[(int(text.embeds.shape[1]), int(vision_rows.shape[1]))] += len(text_rows)
            if on_pairs is not None:
                on_pairs(len(text_rows))
            return out

        i2t_topk, t2i_topk = candidates(i2t_emb, k_test)
        k_i2t, k_t2i = i2t_topk.shape[1], t2i_topk.shape[1]
        i2t = torch.full((num_videos, num_texts), NOT_RERANKED, dtype=torch.float32)
        for i in do_video:
            row = i2t_topk[i]
            tokens = video(i)
            for start in range(0, k_i2t, chunk):
                rows = row[start:start + chunk]
                i2t[i, rows] = logits(rows, tokens[None].expand(len(rows), -1, -1))

        t2i = torch.full((num_texts, num_videos), NOT_RERANKED, dtype=torch.float32)
        for j in do_text:
            row = t2i_topk[j]
            for start in range(0, k_t2i, chunk):
                cols = row[start:start + chunk]
                tokens = torch.stack([video(int(c)) for c in cols])
                t2i[j, cols] = logits(torch.full((len(cols),), j, dtype=torch.long), tokens)
        stats.written = stats.pairs
        return RetrievalScores(i2t_emb=i2t_emb, t2i_emb=t2i_emb, i2t=i2t, t2i=t2i, i2t_topk=i2t_topk,
                               t2i_topk=t2i_topk, stats=stats)


# Our column names for one metrics block (``img`` = text->video, ``txt`` = video->text).
COLUMNS = (("t2v_r1", "img_r1"), ("t2v_r5", "img_r5"), ("t2v_r10", "img_r10"), ("v2t_r1", "txt_r1"),
           ("v2t_r5", "txt_r5"), ("v2t_r10", "txt_r10"), ("t2v_medr", "img_medr"), ("v2t_medr", "txt_medr"),
           ("r_mean", "r_mean"))


@register_task("retrieval")
class RetrievalTask(Task):
    """Text-video retrieval: ITC similarities re-ranked by the ITM head (both directions). Its runner,
    which needs the feature store and the distributed ITM, is ``vidtldr/run/runner_retrieval.py``."""

    readers = ("caption", "paragraph", "multi_video_gt")
    heads = "retrieval"
    trims_videos = True
    limit_unit = "videos"
    metric_columns = tuple(ours for ours, _ in COLUMNS) + ("r1_mean",)
    headline_metrics = ("itm_r_mean", "r1_mean")
    metric_labels = {"itm_r_mean": "ITM mean recall", "r1_mean": "R@1 (mean T2V/V2T)"}

    def headline(self, metrics: dict) -> Optional[dict]:
        """The ITM-reranked mean recall, and R@1 as the mean of both directions."""
        itm = metrics.get("itm")
        if not itm:
            return None
        return {"itm_r_mean": float(itm["r_mean"]), "r1_mean": (float(itm["txt_r1"]) + float(itm["img_r1"])) / 2}

    def table_row(self, metrics: dict) -> dict:
        """The ITM-reranked metrics under our column names, the ITC-only ones with an ``itc_`` prefix."""
        row: dict = {}
        for prefix, block in (("", metrics.get("itm")), ("itc_", metrics.get("itc"))):
            if block:
                row.update(_columns(block, prefix))
        return row

    def query_costs(self, text, spec, vision_tokens: int) -> dict:
        """A text query (text encoder + ITC projection) and its ITM re-ranking against ``k_test`` videos."""
        from vidtldr.cost.text import itm_rerank_cost, text_query_cost

        tq = text_query_cost(text, spec.max_txt_l)
        itm = itm_rerank_cost(text, spec.max_txt_l, vision_tokens, spec.k_test)
        return {"text_per_query": {"gflops_paper": tq.paper_total / 1e9, "gflops_true": tq.true_total / 1e9,
                                   "max_txt_l": spec.max_txt_l},
                "itm_rerank_per_query": {"gflops_paper": itm.paper_total / 1e9, "gflops_true": itm.true_total / 1e9,
                                         "k_test": spec.k_test, "vision_tokens": vision_tokens}}

    def query_calls(self, model, spec, vision_tokens: int) -> dict:
        ids, mask = random_text(model, 1, spec.max_txt_l)
        vision = torch.randn(1, vision_tokens, model.cfg.vision.width)
        with torch.no_grad():
            states = model.encode_text(ids, mask)
        return {"text_per_query": (1, [(lambda i, m: model.itc_text(model.encode_text(i, m)), (ids, mask))]),
                "itm_rerank_per_query": (spec.k_test, [(model.itm_logit, (states, mask, vision))])}


def random_text(model, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (clear of the special tokens) and a full mask: inputs whose values no FLOP
    count depends on."""
    return (torch.randint(5, max(6, model.cfg.text.vocab_size - 1), (rows, length)),
            torch.ones(rows, length, dtype=torch.long))


def _columns(block: dict, prefix: str) -> dict:
    from vidtldr.tasks.metrics import number

    row = {prefix + ours: number(block.get(theirs)) for ours, theirs in COLUMNS}
    if row[prefix + "t2v_r1"] is not None and row[prefix + "v2t_r1"] is not None:
        row[prefix + "r1_mean"] = round((row[prefix + "t2v_r1"] + row[prefix + "v2t_r1"]) / 2, 2)
    return row


__all__ = ["RetrievalTask", "TextFeatures", "VisionFeatures", "RetrievalScores", "ITMStats", "encode_texts", "encode_videos",
           "itc_scores", "candidates", "itm_rerank", "NOT_RERANKED"]
