"""Analytic cost of ITM re-ranking as each engine executes it, and of a whole retrieval evaluation.

The ``pairwise`` engine (official) runs every pair through the whole fusion stack:
:func:`vidtldr.cost.text.itm_pair_cost`. The ``grouped`` engine (:mod:`vidtldr.tasks.itm`) splits
that work three ways, each counted here from what the run executed (its ``ITMStats``):

* once per video: each fusion layer's cross-attention key/value projection of the vision tokens
  (:func:`video_kv_cost`);
* once per text: the first fusion layer's self-attention sub-layer (:func:`text_part_cost`);
* once per pair, at the padded length of its batch: everything else (:func:`grouped_pair_cost`). The
  cross-attention has no additive mask there (vision tokens are never padded).

``video_kv + text_part + grouped_pair`` equals the pairwise pair cost in the paper convention (a
test checks it against :mod:`vidtldr.cost.text`, an independent implementation); in true FLOPs the
pairwise pair also pays the cross-attention's all-zero mask.
"""

from __future__ import annotations

from typing import Any, Optional

from vidtldr.cost.ledger import Ledger
from vidtldr.cost.text import TextDims, itm_pair_cost, itm_rerank_cost, qa_cost, text_query_cost

GFLOP = 1e9


def _self_attention(L: Ledger, n: int, text: TextDims) -> None:
    """One sequence of ``n`` tokens through a BERT self-attention sub-layer (post-LN)."""
    H = text.hidden
    L.linear(n, H, 3 * H)                      # query, key, value
    L.matmul(1, n, H, n)                       # q.k^T over all heads
    L.elementwise("scale", n * n)
    L.elementwise("add", n * n, cat="mask")    # additive padding mask
    L.elementwise("softmax", n * n)
    L.matmul(1, n, n, H)                       # A.v
    L.linear(n, H, H)                          # output dense
    L.elementwise("add", n * H)                # residual
    L.layer_norm(n * H)


def _cross_attention_without_kv(L: Ledger, n: int, vision_tokens: int, text: TextDims) -> None:
    """Cross-attention of ``n`` text tokens to ``vision_tokens`` whose keys/values already exist."""
    H = text.hidden
    L.linear(n, H, H)                          # cross query
    L.matmul(1, n, H, vision_tokens)
    L.elementwise("scale", n * vision_tokens)  # no mask: every vision token is attended
    L.elementwise("softmax", n * vision_tokens)
    L.matmul(1, n, vision_tokens, H)
    L.linear(n, H, H)
    L.elementwise("add", n * H)
    L.layer_norm(n * H)


def _feed_forward(L: Ledger, n: int, text: TextDims) -> None:
    H = text.hidden
    L.linear(n, H, text.intermediate)
    L.elementwise("gelu", n * text.intermediate)
    L.linear(n, text.intermediate, H)
    L.elementwise("add", n * H)
    L.layer_norm(n * H)


def video_kv_cost(text: TextDims, vision_tokens: int) -> Ledger:
    """One video: the key/value projections of its tokens in every fusion layer."""
    L = Ledger()
    for _ in range(text.layers - text.fusion_layer):
        L.linear(vision_tokens, text.encoder_width, 2 * text.hidden)
    return L


def text_part_cost(text: TextDims, length: int) -> Ledger:
    """One text of ``length`` tokens: the first fusion layer's self-attention sub-layer."""
    L = Ledger()
    _self_attention(L, length, text)
    return L


def grouped_pair_cost(text: TextDims, length: int, vision_tokens: int) -> Ledger:
    """One pair in the grouped engine (text padded to ``length``): what depends on both."""
    L = Ledger()
    for layer in range(text.layers - text.fusion_layer):
        if layer > 0:
            _self_attention(L, length, text)
        _cross_attention_without_kv(L, length, vision_tokens, text)
        _feed_forward(L, length, text)
    L.linear(1, text.hidden, 2)                # itm_head on [CLS]
    return L


def engine_cost(text: TextDims, stats: dict) -> Ledger:
    """The ITM work an engine executed, from its stats (``ITMStats.to_dict()``: ``engine``,
    ``pair_shapes`` [[padded length, vision tokens, pairs]], ``video_kv`` [[vision tokens, videos]],
    ``text_parts`` [[length, texts]])."""
    total = Ledger()
    if stats["engine"] == "pairwise":
        for length, tokens, pairs in stats["pair_shapes"]:
            total = total.merged(itm_pair_cost(text, length, tokens), pairs)
        return total
    for length, tokens, pairs in stats["pair_shapes"]:
        total = total.merged(grouped_pair_cost(text, length, tokens), pairs)
    for tokens, videos in stats["video_kv"]:
        total = total.merged(video_kv_cost(text, tokens), videos)
    for length, texts in stats["text_parts"]:
        total = total.merged(text_part_cost(text, length), texts)
    return total


def _gflops(ledger: Ledger, times: int = 1) -> dict:
    return {"paper": round(times * ledger.paper_total / GFLOP, 3), "true": round(times * ledger.true_total / GFLOP, 3)}


def evaluation_cost(text: TextDims, *, vision_per_video: Optional[tuple[int, int]], videos: int, texts: int,
                    max_txt_l: int, vision_tokens: int, stats: dict, pairs_pairwise: int,
                    embed_dim: int) -> dict[str, Any]:
    """GFLOPs of a whole retrieval evaluation (every video encoded, every text encoded, ITC, ITM with
    the engine that ran) and what the official pairwise ITM would have cost on the same candidates.
    ``vision_per_video``: the encoder's (paper, true) FLOPs for one video (None when unknown)."""
    itc = Ledger()
    itc.matmul(1, videos, embed_dim, texts)
    itm = engine_cost(text, stats)
    pairwise = itm_rerank_cost(text, max_txt_l, vision_tokens, pairs_pairwise)
    vision = None
    if vision_per_video is not None:
        vision = {"paper": round(videos * vision_per_video[0] / GFLOP, 3),
                  "true": round(videos * vision_per_video[1] / GFLOP, 3)}
    parts = {"vision_encoder": vision,
             "text_encoder": _gflops(text_query_cost(text, max_txt_l), texts),
             "itc": _gflops(itc), "itm": _gflops(itm), "itm_pairwise": _gflops(pairwise)}
    known = [p for k, p in parts.items() if p is not None and k != "itm_pairwise"]
    for key in ("paper", "true"):
        parts.setdefault("total", {})[key] = round(sum(p[key] for p in known), 3)
        parts.setdefault("total_pairwise", {})[key] = round(
            parts["total"][key] - parts["itm"][key] + parts["itm_pairwise"][key], 3)
    return parts


def qa_evaluation_cost(text: TextDims, *, vision_per_video: tuple[int, int], videos: int, questions: int,
                       vision_tokens: int, k: int, max_q_len: int, max_a_len: int, kv_projections: int) -> dict:
    """GFLOPs of a whole QA evaluation: every video encoded once, and per question the question
    encoder, the decoder's first-token pass and the re-scoring of ``k`` answers
    (:func:`vidtldr.cost.text.qa_cost`, the official execution). ``kv_projections``: how many times the
    fusion layers' cross-attention keys/values of a video were projected: once per question in the
    official (pairwise) execution, once per distinct video of a window in the grouped one; the
    difference is the only arithmetic the grouped engine saves."""
    per_question = qa_cost(text, vision_tokens, k_test=k, max_q_len=max_q_len, max_a_len=max_a_len)
    pairwise = Ledger().merged(per_question, questions)
    saved = Ledger().merged(video_kv_cost(text, vision_tokens), questions - kv_projections)
    parts = {"vision_encoder": {"paper": round(videos * vision_per_video[0] / GFLOP, 3),
                                "true": round(videos * vision_per_video[1] / GFLOP, 3)},
             "answering_pairwise": _gflops(pairwise)}
    parts["answering"] = {key: round(parts["answering_pairwise"][key] - value, 3)
                          for key, value in _gflops(saved).items()}
    for name, answering in (("total", "answering"), ("total_pairwise", "answering_pairwise")):
        parts[name] = {key: round(parts["vision_encoder"][key] + parts[answering][key], 3) for key in ("paper", "true")}
    return parts


__all__ = ["video_kv_cost", "text_part_cost", "grouped_pair_cost", "engine_cost", "evaluation_cost",
           "qa_evaluation_cost"]
