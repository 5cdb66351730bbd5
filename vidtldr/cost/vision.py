"""Analytic FLOPs of the UMT vision encoder under a token-reduction schedule.

A pure function of architecture numbers, the per-block token counts and the reducer's
self-description (``need``, ``match_on``, ``tracks_sizes``; see :mod:`vidtldr.reduce.base`); never
of the reducer's name. At a block that removes tokens a reducer pays:

* what its ``need`` asks the attention for (true FLOPs only): ``neg_entropy`` = the head mean of the
  attention map and ``sum_j p ln p`` over it plus O(T) for vid-TLDR's normalisation; ``attn`` = the
  head mean of the map; ``keys`` = the head mean of the keys; ``update`` = the L2 norm of each
  token's attention update (C wide) plus its sqrt and the same O(T) normalisation;
* with ``match_on`` set, the similarity ``rows x cols x width`` (width C for ``hidden``, head_dim
  for ``keys``; rows x cols from the reducer's ``similarity_shape``, ToMe's halves
  ``ceil(T/2) x floor(T/2)`` by default; counted by fvcore too, so part of the paper convention),
  the L2 normalisation of the metric and one elementwise pass over the similarities;
* its own scoring and selection (``selection_flops``: e.g. attention received, greedy max-min
  distances, energy scores), true FLOPs only;
* with ``tracks_sizes``, the size-weighted average of the merged tokens, and ``log(size)`` added to
  the attention logits of every later block. A reducer without sizes only gathers survivors (free).

An input-level reducer (``input_level``) removes tokens after the patch embedding and before block
0: the embedding runs on every tubelet, the blocks on the survivors, and its decision costs
``input_flops``. A composition (``merge=A+B``) is described by its parts (see
:mod:`vidtldr.reduce.chain`).

Cross-checked against fvcore's trace of the real module by ``vidtldr.analysis.flops.trace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from vidtldr.cost.ledger import FVCORE_LN_PER_ELEM, Ledger
from vidtldr.errors import ConfigError
from vidtldr.reduce.schedule import parse_schedule, tokens_to_remove


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
    norms_in_paper: bool = True  # False: the family's published count leaves layer norms out (VideoMAE)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def num_tokens(self, num_frames: int) -> int:
        per_frame = (self.img_size // self.patch_size) ** 2
        return (num_frames // self.tubelet_size) * per_frame


def vision_dims(cfg) -> VisionDims:
    """:class:`VisionDims` of a ``vidtldr.models.config.UMTConfig``."""
    v = cfg.vision
    return VisionDims(width=v.width, depth=v.depth, heads=v.num_heads, mlp_hidden=int(v.width * v.mlp_ratio),
                      patch_size=v.patch_size, tubelet_size=v.tubelet_size, img_size=v.img_size,
                      pool_norm=bool(v.add_pool_norm), norms_in_paper=bool(getattr(v, "norms_in_paper", True)))


def backbone_vision_dims(arch: str, task: str = "retrieval") -> VisionDims:
    """:class:`VisionDims` of a packaged architecture (``umt_b16``, ``umt_l16``, ``tiny``)."""
    from vidtldr.models.config import load_architecture

    return vision_dims(load_architecture(arch, task=task))


def bipartite_shape(num_tokens: int, removed: int) -> tuple[int, int]:
    """ToMe's halves: ``ceil(T/2) x floor(T/2)`` similarities."""
    return (num_tokens + 1) // 2, num_tokens // 2


def no_flops(dims: "VisionDims", num_tokens: int, removed: int) -> int:
    return 0


@dataclass(frozen=True)
class ReducerTraits:
    """The part of a reducer's self-description the cost depends on."""

    need: Optional[str] = None
    match_on: Optional[str] = None
    tracks_sizes: bool = False
    similarity_shape: Callable[[int, int], tuple[int, int]] = bipartite_shape
    selection_flops: Callable[["VisionDims", int, int], int] = no_flops
    input_flops: Callable[["VisionDims", int, int], int] = no_flops

    @classmethod
    def of(cls, reducer: Any) -> "ReducerTraits":
        """From a reducer class or instance (or anything with the three attributes; the shape and
        FLOP methods default to bipartite matching with nothing else to pay)."""
        input_flops = getattr(reducer, "input_flops", None)
        if isinstance(reducer, type) or input_flops is None:  # an instance method needs an instance
            input_flops = no_flops
        return cls(need=reducer.need, match_on=reducer.match_on, tracks_sizes=bool(reducer.tracks_sizes),
                   similarity_shape=getattr(reducer, "similarity_shape", bipartite_shape),
                   selection_flops=getattr(reducer, "selection_flops", no_flops), input_flops=input_flops)

    def match_width(self, dims: VisionDims) -> int:
        """Width of the similarity matmul: C on hidden states, head_dim on keys, 0 without one."""
        return {"hidden": dims.width, "keys": dims.head_dim, None: 0}[self.match_on]


NO_REDUCTION = ReducerTraits()


@dataclass
class VisionCost:
    """Cost of one encoder forward (batch ``batch``) under a fixed token schedule."""

    tokens_per_layer: list[int]        # entering block 0..depth-1, then final
    removed: list[int]                 # tokens removed at each block
    paper_by_op: dict[str, int]
    true_by_op: dict[str, int]
    batch: int = 1
    paper_per_block: list[int] = field(default_factory=list)  # blocks only (no embed / final norms)

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


def schedule_counts(schedule: Optional[Sequence], num_tokens: int, depth: int) -> list[int]:
    """Token count entering block 0, then after each block (the bipartite clamp rule)."""
    entries = parse_schedule(list(schedule) if schedule is not None else None, depth)
    counts = [num_tokens]
    for e in entries:
        counts.append(counts[-1] - tokens_to_remove(e, counts[-1]))
    return counts


def _reduction_cost(L: Ledger, dims: VisionDims, traits: ReducerTraits, B: int, t_in: int, t_out: int) -> None:
    """What a block that goes from ``t_in`` to ``t_out`` tokens pays for the reduction itself."""
    C, H = dims.width, dims.heads
    r = t_in - t_out
    if traits.need == "neg_entropy":
        L.elementwise("head_mean", B * H * t_in * t_in, cat="saliency")
        L.elementwise("neg_entropy", B * t_in * t_in, cat="saliency")
        L.flops_only("saliency", B * 10 * t_in)                        # min-max, mean, sharpen: O(T)
    elif traits.need == "attn":
        L.elementwise("head_mean", B * H * t_in * t_in, cat="saliency")
    elif traits.need == "keys":
        L.elementwise("head_mean", B * t_in * C, cat="match_other")    # H heads x head_dim per token
    elif traits.need == "update":
        L.elementwise("l2_norm", B * t_in * C, cat="saliency")
        L.flops_only("saliency", B * 11 * t_in)                        # sqrt, then as neg_entropy: O(T)
    width = traits.match_width(dims)
    if width:
        a, b = traits.similarity_shape(t_in, r)
        L.elementwise("l2_normalise", B * t_in * width, cat="match_other")
        L.matmul(B, a, width, b, cat="match")                          # m_A . m_B^T
        L.elementwise("cosine", B * a * b, cat="match_other")
    own = traits.selection_flops(dims, t_in, r)
    if own:
        L.flops_only("select", B * own)                                # scoring / selection
    if traits.tracks_sizes:
        # size-weighted average: x*s, src*saliency, scatter-add, divide by merged size
        L.flops_only("merge", B * (t_in + 2 * r + t_out) * (C + 1))


def vision_cost(dims: VisionDims, num_frames: int, schedule: Optional[Sequence] = None, *,
                reducer: Any = None, token_counts: Optional[Sequence[int]] = None, batch: int = 1) -> VisionCost:
    """Analytic cost of the UMT vision encoder.

    Either ``schedule`` (a merge.r list, bipartite clamp rule) or explicit ``token_counts``
    (entering block 0, then after each block; e.g. ``ReductionState.token_counts``) fixes the
    token count per block; a first count below the embedded tokens is an input-level removal. ``reducer`` (a reducer class or instance, or :class:`ReducerTraits`)
    says what removing tokens costs; it is required as soon as a block removes any.
    """
    C, H = dims.width, dims.heads
    n0 = dims.num_tokens(num_frames)
    if token_counts is None:
        counts = schedule_counts(schedule, n0, dims.depth)
    else:
        counts = [int(c) for c in token_counts]
        if len(counts) != dims.depth + 1 or not 0 < counts[0] <= n0:
            raise ConfigError(f"token_counts must have depth+1 = {dims.depth + 1} entries starting at "
                              f"{n0} tokens (fewer after an input-level reducer), got {counts}")
    reduces = counts[0] < n0 or any(counts[i + 1] < counts[i] for i in range(dims.depth))
    if reduces and reducer is None:
        raise ValueError("vision_cost: the schedule removes tokens, so pass the reducer that removes them")
    traits = NO_REDUCTION if reducer is None else (
        reducer if isinstance(reducer, ReducerTraits) else ReducerTraits.of(reducer))
    L = Ledger()
    B = batch
    k_patch = dims.in_chans * dims.tubelet_size * dims.patch_size ** 2
    L.linear(B * n0, k_patch, C, cat="conv")          # Conv3d patch embedding (+ bias)
    L.elementwise("add", B * n0 * C)                   # + sinusoid position embedding
    if counts[0] < n0:                                 # input-level reducer: decide, gather survivors
        L.flops_only("input_select", B * traits.input_flops(dims, n0, n0 - counts[0]))
    sized = False                                      # proportional attention starts after a merge
    removed, per_block = [], []
    for i in range(dims.depth):
        before = L.paper_total
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
        removed.append(t_in - t_out)
        if t_out < t_in:
            _reduction_cost(L, dims, traits, B, t_in, t_out)
            sized = sized or traits.tracks_sizes
        rows = B * t_out
        L.layer_norm(rows * C)                                           # norm2
        L.linear(rows, C, dims.mlp_hidden)                               # fc1
        L.elementwise("gelu", rows * dims.mlp_hidden)
        L.linear(rows, dims.mlp_hidden, C)                               # fc2
        L.elementwise("add", rows * C)                                   # residual 2
        per_block.append(L.paper_total - before)
    L.layer_norm(B * counts[-1] * C)                                     # final norm
    if dims.pool_norm:
        L.flops_only("pool", B * counts[-1] * C)                         # mean over tokens
        L.layer_norm(B * C)                                              # pool_norm
    paper = dict(L.paper)
    if not dims.norms_in_paper:  # the family's own convention (VideoMAE): multiply-adds of conv/linear/matmul
        paper.pop("layer_norm", None)  # norm1 on the tokens entering a block, norm2 on those leaving it
        per_block = [block - FVCORE_LN_PER_ELEM * C * B * (counts[i] + counts[i + 1])
                     for i, block in enumerate(per_block)]
    return VisionCost(tokens_per_layer=counts, removed=removed, paper_by_op=paper,
                      true_by_op=dict(L.true), batch=batch, paper_per_block=per_block)


def reducer_cost(dims: VisionDims, num_frames: int, reducer=None, batch: int = 1) -> VisionCost:
    """Cost of the encoder run with a ``vidtldr.reduce`` reducer instance (None = no reduction):
    its schedule fixes the token counts, its class attributes what the removal costs."""
    if reducer is None:
        return vision_cost(dims, num_frames, None, batch=batch)
    n0 = dims.num_tokens(num_frames)
    per_step = (dims.img_size // dims.patch_size) ** 2
    counts = [n0 - reducer.input_removed(n0, per_step) if hasattr(reducer, "input_removed") else n0]
    for layer in range(dims.depth):  # the reducer's own per-block rule (the identity removes nothing)
        counts.append(counts[-1] - reducer.tokens_removed(layer, counts[-1]))
    return vision_cost(dims, num_frames, token_counts=counts, reducer=reducer, batch=batch)
