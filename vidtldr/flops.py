"""FLOPs of the UMT vision encoder (and of what the paper leaves out), in two conventions.

**Paper convention** (``gflops_paper``): what the official ``utils/utils.py: flops()`` reports, i.e.
fvcore's count of the vision encoder alone, batch 1, input ``[1, T, 3, 224, 224]``. fvcore counts
one multiply-add as one "flop" and only these operators: convolution, linear, matmul (q.k^T, A.v
and vid-TLDR's similarity m_A.m_B^T) and layer norm (5 per element with affine; see
``fvcore/nn/jit_handles.py: norm_flop_counter``). Softmax, log, GELU, residual adds, sorting,
gathers and scatters count 0. So the paper's "GFLOPs" are really GMACs plus a little.

**True FLOPs** (``gflops_true``): every multiply-add is two flops, and the arithmetic fvcore ignores
is counted with the per-element costs in :data:`TRUE_COST` (one flop per add, multiply, divide or
transcendental such as exp/log/erf; comparisons, sorting, gathers, scatters-by-copy and casts are
free). The rules are arbitrary in their details but fixed and documented; matmul-like work is
>97 % of the total anyway.

Two independent counts are kept honest against each other:

* :func:`vision_cost` -- an analytic formula, a pure function of architecture numbers and the
  per-block token counts (no torch needed);
* :func:`traced_vision_cost` -- fvcore's trace of the real module (``vidtldr.models``), with a
  handle for ``aten::scaled_dot_product_attention`` (fvcore has none: a fused attention would
  otherwise count 0).

Costs outside the encoder, reported as separate columns because the paper omits them:
text encoder per query (:func:`text_query_cost`), ITM re-ranking of ``k_test`` candidates for one
query (:func:`itm_rerank_cost`, which depends on the merged vision token count) and the QA question
encoder + answer decoder for one question (:func:`qa_cost`).

Command line (same Hydra groups as the evaluation)::

    python -m vidtldr.flops model=umt_b dataset=msrvtt merge=vidtldr   # published schedule
    python -m vidtldr.flops model=umt_l dataset=didemo merge.r=[800,100]
    python -m vidtldr.flops model=umt_b merge=none
    python -m vidtldr.flops table=true          # regenerates results/flops.md

The last line printed is one JSON object (``gflops_paper``, ``gflops_true``, ``tokens_per_layer``...).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from vidtldr.errors import ConfigError, VidtldrError, cli_guard
from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule, tokens_to_remove

# ----------------------------------------------------------------------------------------------
# Counting rules
# ----------------------------------------------------------------------------------------------

#: fvcore's layer-norm estimate: 5 "flops" per element when the norm has an affine transform.
FVCORE_LN_PER_ELEM = 5

#: Per-element costs of the arithmetic that the paper convention does not count (true FLOPs).
TRUE_COST = {
    "mac": 2,            # one multiply + one add
    "bias": 1,           # one add per output element
    "layer_norm": 7,     # mean (1), centre (1), square+accumulate (2), scale by rstd (1), affine (2)
    "softmax": 4,        # subtract row max (1), exp (1), accumulate (1), divide (1); max itself is a comparison
    "gelu": 5,           # exact GELU: x/sqrt2 (1), erf (1), +1 (1), *x (1), *0.5 (1)
    "add": 1,            # residual adds, position embedding, additive attention bias
    "scale": 1,          # q * head_dim**-0.5
    "neg_entropy": 3,    # ln p (1), p * ln p (1), accumulate over keys (1), per head-mean probability
    "head_mean": 1,      # accumulate one head (+ the final divide, amortised), per score element
    "cosine": 2,         # (s + 1) / 2 on each similarity
    "l2_normalise": 3,   # square + accumulate (2) and divide (1) per element
}

#: Operator categories as fvcore names them in ``by_operator()``; ``attention`` is the
#: scaled-dot-product handle this module adds, ``match`` the merging similarity.
PAPER_OPS = ("conv", "linear", "matmul", "attention", "match", "layer_norm")


class Ledger:
    """Accumulates one computation's cost in both conventions, by category.

    ``paper`` mirrors what fvcore would count for the same operations (MACs for conv/linear/matmul,
    5 per layer-norm element); ``true`` is the flop count under :data:`TRUE_COST`.
    """

    def __init__(self) -> None:
        self.paper: Counter = Counter()
        self.true: Counter = Counter()

    # fvcore-visible operators --------------------------------------------------------------
    def linear(self, rows: int, d_in: int, d_out: int, bias_cols: int | None = None, cat: str = "linear"):
        """``rows`` x ``d_in`` @ ``d_in`` x ``d_out``; ``bias_cols`` output columns get a bias add
        (default all; 0 for none)."""
        macs = rows * d_in * d_out
        self.paper[cat] += macs
        self.true[cat] += TRUE_COST["mac"] * macs
        self.true["bias"] += TRUE_COST["bias"] * rows * (d_out if bias_cols is None else bias_cols)

    def matmul(self, batch: int, m: int, k: int, n: int, cat: str = "matmul"):
        macs = batch * m * k * n
        self.paper[cat] += macs
        self.true[cat] += TRUE_COST["mac"] * macs

    def layer_norm(self, elems: int):
        self.paper["layer_norm"] += FVCORE_LN_PER_ELEM * elems
        self.true["layer_norm"] += TRUE_COST["layer_norm"] * elems

    # fvcore-invisible arithmetic (true FLOPs only) -----------------------------------------
    def elementwise(self, kind: str, elems: int, cat: str | None = None):
        self.true[cat or kind] += TRUE_COST[kind] * elems

    def flops_only(self, cat: str, flops: int):
        self.true[cat] += flops

    # summaries ------------------------------------------------------------------------------
    @property
    def paper_total(self) -> int:
        return sum(self.paper.values())

    @property
    def true_total(self) -> int:
        return sum(self.true.values())

    def merged(self, other: "Ledger", times: int = 1) -> "Ledger":
        out = Ledger()
        for src in (self, other):
            k = 1 if src is self else times
            for name, v in src.paper.items():
                out.paper[name] += k * v
            for name, v in src.true.items():
                out.true[name] += k * v
        return out


# ----------------------------------------------------------------------------------------------
# Architecture numbers
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VisionDims:
    """What the FLOP count of the UMT video ViT depends on (no CLS token, tubelet embedding)."""

    width: int
    depth: int
    heads: int
    mlp_hidden: int
    patch_size: int = 16
    tubelet_size: int = 1
    img_size: int = 224
    in_chans: int = 3
    pool_norm: bool = True  # retrieval model: LayerNorm on the mean-pooled token; QA model: none

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def num_tokens(self, num_frames: int) -> int:
        per_frame = (self.img_size // self.patch_size) ** 2
        return (num_frames // self.tubelet_size) * per_frame


@dataclass(frozen=True)
class TextDims:
    """BERT text encoder with cross-attention fusion layers (xbert), plus UMT heads."""

    hidden: int
    layers: int
    fusion_layer: int
    intermediate: int
    vocab: int = 30522
    encoder_width: int = 768  # vision width fed to cross-attention K/V
    embed_dim: int = 512      # ITC projection size

    @property
    def decoder_layers(self) -> int:  # QA decoder = copies of the fusion layers
        return self.layers - self.fusion_layer


#: Built-in numbers for the published backbones (spec sections 1.1, 3.1, 4.1). The model package's
#: architecture JSON is authoritative when available (:func:`dims_from_config`); these let the
#: analytic counter and its tests run without it.
BACKBONES: dict[str, tuple[VisionDims, TextDims]] = {
    "umt_b": (VisionDims(width=768, depth=12, heads=12, mlp_hidden=3072),
              TextDims(hidden=768, layers=12, fusion_layer=9, intermediate=3072, encoder_width=768,
                       embed_dim=512)),
    "umt_l": (VisionDims(width=1024, depth=24, heads=16, mlp_hidden=4096),
              TextDims(hidden=1024, layers=24, fusion_layer=19, intermediate=4096, encoder_width=1024,
                       embed_dim=768)),
}
BACKBONE_LABEL = {"umt_b": "UMT-B/16", "umt_l": "UMT-L/16"}


# ----------------------------------------------------------------------------------------------
# Analytic vision-encoder count
# ----------------------------------------------------------------------------------------------

@dataclass
class VisionCost:
    """Cost of one encoder forward (batch ``batch``) under a fixed token schedule."""

    tokens_per_layer: list[int]        # entering block 0..depth-1, then final
    removed: list[int]                 # tokens removed at each block
    paper_by_op: dict[str, int]
    true_by_op: dict[str, int]
    batch: int = 1

    @property
    def paper(self) -> int:
        return sum(self.paper_by_op.values())

    @property
    def true(self) -> int:
        return sum(self.true_by_op.values())

    @property
    def gflops_paper(self) -> float:
        return self.paper / 1e9

    @property
    def gflops_true(self) -> float:
        return self.true / 1e9


def _as_counts(schedule: Sequence, num_tokens: int, depth: int) -> list[int]:
    entries = parse_schedule(list(schedule) if schedule is not None else None, depth)
    counts = [num_tokens]
    for e in entries:
        counts.append(counts[-1] - tokens_to_remove(e, counts[-1]))
    return counts


def vision_cost(dims: VisionDims, num_frames: int, schedule: Optional[Sequence] = None, *,
                token_counts: Optional[Sequence[int]] = None, match_dim: Optional[int] = None,
                saliency: bool = True, batch: int = 1) -> VisionCost:
    """Analytic cost of the UMT vision encoder.

    Either ``schedule`` (a merge.r list, bipartite clamp rule) or explicit ``token_counts``
    (entering block 0, then after each block; e.g. ``ReductionState.token_counts``) fixes the
    token count per block. At a block that removes tokens, a bipartite matcher pays the
    similarity matmul ``ceil(T/2) x floor(T/2) x match_dim`` (``match_dim``: the metric's width --
    the hidden width C for vid-TLDR, which matches on the hidden state; ``head_dim`` for a reducer
    matching on head-mean keys; 0 for one that does not match, e.g. random drop), and, when
    ``saliency``, vid-TLDR's entropy score over the ``T x T`` head-mean attention (true FLOPs only).
    """
    C, H = dims.width, dims.heads
    n0 = dims.num_tokens(num_frames)
    if token_counts is None:
        counts = _as_counts(schedule, n0, dims.depth)
    else:
        counts = [int(c) for c in token_counts]
        if len(counts) != dims.depth + 1 or counts[0] != n0:
            raise ConfigError(f"token_counts must have depth+1 = {dims.depth + 1} entries starting at "
                              f"{n0} tokens, got {counts}")
    if match_dim is None:
        match_dim = C
    L = Ledger()
    B = batch
    k_patch = dims.in_chans * dims.tubelet_size * dims.patch_size ** 2
    L.linear(B * n0, k_patch, C, cat="conv")          # Conv3d patch embedding (+ bias)
    L.elementwise("add", B * n0 * C)                   # + sinusoid position embedding
    sized = False                                      # proportional attention starts after a merge
    removed = []
    for i in range(dims.depth):
        t_in, t_out = counts[i], counts[i + 1]
        rows = B * t_in
        L.layer_norm(rows * C)                                           # norm1
        L.linear(rows, C, 3 * C, bias_cols=2 * C)                        # qkv (q and v biases only)
        L.elementwise("scale", rows * C)                                 # q * scale
        L.matmul(B * H, t_in, dims.head_dim, t_in)                       # q . k^T
        scores = B * H * t_in * t_in
        if sized:
            L.elementwise("add", scores, cat="size_bias")                # + log(size_j)
        L.elementwise("softmax", scores)
        L.matmul(B * H, t_in, t_in, dims.head_dim)                       # A . v
        L.linear(rows, C, C)                                             # proj
        L.elementwise("add", rows * C)                                   # residual 1
        r = t_in - t_out
        removed.append(r)
        if r:
            if saliency:
                L.elementwise("head_mean", scores, cat="saliency")
                L.elementwise("neg_entropy", B * t_in * t_in, cat="saliency")
                L.flops_only("saliency", B * 10 * t_in)                 # min-max, mean, sharpen: O(T)
            if match_dim:
                a, b = (t_in + 1) // 2, t_in // 2
                L.elementwise("l2_normalise", rows * C, cat="match_other")
                L.matmul(B, a, match_dim, b, cat="match")                # m_A . m_B^T
                L.elementwise("cosine", B * a * b, cat="match_other")
            # size-weighted average: x*s, src*saliency, scatter-add, divide by merged size
            L.flops_only("merge", B * (t_in + 2 * r + t_out) * (C + 1))
            sized = True
        rows = B * t_out
        L.layer_norm(rows * C)                                           # norm2
        L.linear(rows, C, dims.mlp_hidden)                               # fc1
        L.elementwise("gelu", rows * dims.mlp_hidden)
        L.linear(rows, dims.mlp_hidden, C)                               # fc2
        L.elementwise("add", rows * C)                                   # residual 2
    L.layer_norm(B * counts[-1] * C)                                     # final norm
    if dims.pool_norm:
        L.flops_only("pool", B * counts[-1] * C)                         # mean over tokens
        L.layer_norm(B * C)                                              # pool_norm
    return VisionCost(tokens_per_layer=counts, removed=removed, paper_by_op=dict(L.paper),
                      true_by_op=dict(L.true), batch=batch)


def match_dim_for(merge_name: str, dims: VisionDims, needs: Optional[str] = None) -> int:
    """Width of the similarity matmul a reducer pays when it removes tokens.

    vid-TLDR matches on the block's hidden state (width C). A reducer that asks the attention for
    head-mean keys (``needs == "keys"``, ToMe's metric) matches on ``head_dim``; one that asks for
    neither (random drop, none) has no similarity matmul.
    """
    if merge_name == "vidtldr":
        return dims.width
    if needs == "keys":
        return dims.head_dim
    if merge_name == "tome":
        # ToMe matches on keys unless its implementation says otherwise (needs() is the authority
        # once a reducer instance exists; see reducer_match_dim).
        return dims.head_dim
    return 0


# ----------------------------------------------------------------------------------------------
# Costs the paper leaves out: text encoder, ITM re-ranking, QA decoder
# ----------------------------------------------------------------------------------------------

def _bert_layer(L: Ledger, B: int, n_q: int, text: TextDims, n_kv_self: Optional[int] = None,
                cross_tokens: int = 0, cross_width: int = 0):
    """One post-LN BERT layer over ``B`` sequences of ``n_q`` tokens; self-attention keys =
    ``n_kv_self`` (defaults to ``n_q``; a causal decoder still computes the full square);
    optional cross-attention to ``cross_tokens`` tokens of width ``cross_width``."""
    Hd = text.hidden
    n_kv = n_q if n_kv_self is None else n_kv_self
    rows = B * n_q
    L.linear(rows, Hd, Hd)                                 # query
    L.linear(B * n_kv, Hd, 2 * Hd)                         # key, value
    L.matmul(B, n_q, Hd, n_kv)                             # q.k^T over all heads
    L.elementwise("scale", B * n_q * n_kv)                 # BERT scales the scores
    L.elementwise("add", B * n_q * n_kv, cat="mask")       # additive padding mask
    L.elementwise("softmax", B * n_q * n_kv)
    L.matmul(B, n_q, n_kv, Hd)                             # A.v
    L.linear(rows, Hd, Hd)                                 # output dense
    L.elementwise("add", rows * Hd)
    L.layer_norm(rows * Hd)
    if cross_tokens:
        L.linear(rows, Hd, Hd)                             # cross query
        L.linear(B * cross_tokens, cross_width, 2 * Hd)    # cross key, value (from vision tokens)
        L.matmul(B, n_q, Hd, cross_tokens)
        L.elementwise("scale", B * n_q * cross_tokens)
        L.elementwise("add", B * n_q * cross_tokens, cat="mask")
        L.elementwise("softmax", B * n_q * cross_tokens)
        L.matmul(B, n_q, cross_tokens, Hd)
        L.linear(rows, Hd, Hd)
        L.elementwise("add", rows * Hd)
        L.layer_norm(rows * Hd)
    L.linear(rows, Hd, text.intermediate)
    L.elementwise("gelu", rows * text.intermediate)
    L.linear(rows, text.intermediate, Hd)
    L.elementwise("add", rows * Hd)
    L.layer_norm(rows * Hd)


def _bert_embeddings(L: Ledger, B: int, n: int, text: TextDims):
    L.elementwise("add", 2 * B * n * text.hidden)          # word + type + position (lookups are free)
    L.layer_norm(B * n * text.hidden)


def text_query_cost(text: TextDims, max_txt_l: int) -> Ledger:
    """One caption through the text-mode encoder (layers below ``fusion_layer``, padded to
    ``max_txt_l``) and the ITC projection of its [CLS] token."""
    L = Ledger()
    _bert_embeddings(L, 1, max_txt_l, text)
    for _ in range(text.fusion_layer):
        _bert_layer(L, 1, max_txt_l, text)
    L.linear(1, text.hidden, text.embed_dim)               # text_proj
    return L


def itm_pair_cost(text: TextDims, max_txt_l: int, vision_tokens: int) -> Ledger:
    """One (text, video) pair through the fusion layers with cross-attention to all
    ``vision_tokens`` final vision tokens, plus the ITM head on [CLS]. The official code recomputes
    the cross-attention keys/values of the video for every pair, and so does this count."""
    L = Ledger()
    for _ in range(text.layers - text.fusion_layer):
        _bert_layer(L, 1, max_txt_l, text, cross_tokens=vision_tokens, cross_width=text.encoder_width)
    L.linear(1, text.hidden, 2)                            # itm_head
    return L


def itm_rerank_cost(text: TextDims, max_txt_l: int, vision_tokens: int, k_test: int) -> Ledger:
    """ITM re-ranking of ``k_test`` candidates for one query (either direction costs the same)."""
    return Ledger().merged(itm_pair_cost(text, max_txt_l, vision_tokens), times=k_test)


def qa_cost(text: TextDims, vision_tokens: int, k_test: int = 128, max_q_len: int = 25,
            max_a_len: int = 5) -> Ledger:
    """One question: the multi-modal question encoder (all layers, cross-attention to the vision
    tokens in the fusion layers), the decoder's first-token pass with the full-vocabulary LM head,
    and the re-scoring of ``k_test`` candidate answers (LM head at every answer position, as the
    official ``rank_answer`` computes it)."""
    L = Ledger()
    Hd = text.hidden
    _bert_embeddings(L, 1, max_q_len, text)
    for i in range(text.layers):
        cross = vision_tokens if i >= text.fusion_layer else 0
        _bert_layer(L, 1, max_q_len, text, cross_tokens=cross, cross_width=text.encoder_width)

    def decoder(batch: int, n: int):
        _bert_embeddings(L, batch, n, text)
        for _ in range(text.decoder_layers):
            _bert_layer(L, batch, n, text, cross_tokens=max_q_len, cross_width=Hd)
        rows = batch * n
        L.linear(rows, Hd, Hd)                                 # prediction transform dense
        L.elementwise("gelu", rows * Hd)
        L.layer_norm(rows * Hd)
        L.linear(rows, Hd, text.vocab)                         # tied LM decoder
        L.elementwise("softmax", rows * text.vocab)            # (log-)softmax over the vocabulary

    decoder(1, 1)              # start token -> first-answer-token distribution
    decoder(k_test, max_a_len)  # candidates re-scored
    return L


# ----------------------------------------------------------------------------------------------
# Published reference numbers (paper_numbers.md sections 2, 3; spec section 2.9)
# ----------------------------------------------------------------------------------------------

#: Recounted GFLOPs (1 decimal) of every published schedule, keyed like VIDTLDR_PRESETS.
PUBLISHED_GFLOPS: dict[tuple[str, str], float] = {
    ("msrvtt", "umt_b"): 178.0, ("msrvtt", "umt_l"): 543.4,
    ("msvd", "umt_b"): 181.3, ("msvd", "umt_l"): 528.6,
    ("anet", "umt_b"): 227.6, ("anet", "umt_l"): 563.1,
    ("didemo", "umt_b"): 212.8, ("didemo", "umt_l"): 559.0,
    ("lsmdc", "umt_b"): 206.2, ("lsmdc", "umt_l"): 583.7,
    ("ssv2_label", "umt_b"): 212.9, ("ssv2_label", "umt_l"): 610.9,
    ("ssv2_template", "umt_b"): 203.7, ("ssv2_template", "umt_l"): 615.7,
    ("msrvtt_qa", "umt_b"): 188.5, ("msrvtt_qa", "umt_l"): 569.8,
    ("msvd_qa", "umt_b"): 188.5, ("msvd_qa", "umt_l"): 569.8,
}
#: No-reduction baselines by (backbone, frames).
PUBLISHED_BASELINES: dict[tuple[str, int], float] = {
    ("umt_b", 12): 303.3, ("umt_l", 12): 984.6, ("umt_b", 4): 78.5, ("umt_l", 4): 267.8,
}
#: vid-TLDR GFLOPs printed in the paper's Figure 1 (UMT-B); two differ from their recount.
FIGURE1_GFLOPS: dict[str, float] = {
    "msrvtt": 178.0, "msvd": 182.2, "anet": 227.6, "didemo": 183.6, "lsmdc": 206.2,
    "ssv2_label": 212.9, "ssv2_template": 203.7, "msrvtt_qa": 188.5, "msvd_qa": 188.5,
}
#: ToMe GFLOPs printed in Figure 1 (UMT-B).
FIGURE1_TOME_GFLOPS: dict[str, float] = {
    "msrvtt": 231.4, "msvd": 218.7, "anet": 236.8, "didemo": 223.9, "lsmdc": 223.2,
    "ssv2_label": 232.2, "ssv2_template": 241.4, "msrvtt_qa": 241.4, "msvd_qa": 232.2,
}
DATASET_LABEL = {
    "msrvtt": "MSRVTT ret", "msvd": "MSVD ret", "anet": "ActivityNet ret", "didemo": "DiDeMo ret",
    "lsmdc": "LSMDC ret", "ssv2_label": "SSv2-label ret", "ssv2_template": "SSv2-template ret",
    "msrvtt_qa": "MSRVTT-QA", "msvd_qa": "MSVD-QA",
}
#: Text lengths and k_test of the fine-tuned configs (spec sections 3.4, 6, 7), used by the table
#: when no dataset config is composed.
DATASET_TEXT = {
    "msrvtt": dict(task="retrieval", max_txt_l=32, k_test=128),
    "msvd": dict(task="retrieval", max_txt_l=64, k_test=128),
    "anet": dict(task="retrieval", max_txt_l=150, k_test=128),
    "didemo": dict(task="retrieval", max_txt_l=64, k_test=128),
    "lsmdc": dict(task="retrieval", max_txt_l=96, k_test=128),
    "ssv2_label": dict(task="retrieval", max_txt_l=25, k_test=128),
    "ssv2_template": dict(task="retrieval", max_txt_l=25, k_test=128),
    "msrvtt_qa": dict(task="qa", max_q_len=25, max_a_len=5, k_test=128),
    "msvd_qa": dict(task="qa", max_q_len=25, max_a_len=5, k_test=128),
}


def round1(x: float) -> float:
    """Round to one decimal the way the official ``round(total / 1e9, 1)`` does."""
    return round(x, 1)
